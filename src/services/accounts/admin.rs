//! What admins do to accounts: list and search users, change a user's role or activity (ending
//! their sessions), and the configured first admin created or promoted at start.

use super::{AccountError, AccountService, NewAccount, Principal, rules};
use crate::services::text::Name;
use crate::store::{AdminKept, Role, User, UserUpdate};

/// A change an admin asks for; `None` leaves a field as it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct AccountChange {
    /// New role.
    pub role: Option<Role>,
    /// Activate or deactivate.
    pub active: Option<bool>,
}

impl AccountService {
    /// Users whose email or names contain `query`, oldest account first, with the number of matches.
    pub async fn list_users(
        &self,
        query: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<User>, i64), AccountError> {
        Ok(self.store.list_users(query, limit, offset).await?)
    }

    /// The user `id`.
    pub async fn user(&self, id: &str) -> Result<User, AccountError> {
        self.store.user_by_id(id).await?.ok_or(AccountError::NotFound)
    }

    /// Changes a user's role or activity. Only a real change counts; a role change or a
    /// deactivation ends every session of the user and closes their sockets, and a deactivation
    /// voids their reset tokens. An admin cannot demote or deactivate themselves.
    pub async fn change_account(
        &self,
        admin: &Principal,
        id: &str,
        change: AccountChange,
        client_ip: std::net::IpAddr,
    ) -> Result<User, AccountError> {
        // Refusing these keeps at least one admin able to act, and an admin from locking themselves out.
        if id == admin.user.id && change.role == Some(Role::User) {
            return Err(AccountError::Conflict("You cannot remove your own admin role; ask another admin"));
        }
        if id == admin.user.id && change.active == Some(false) {
            return Err(AccountError::Conflict("You cannot deactivate your own account; ask another admin"));
        }
        let before = self.user(id).await?;
        let role_changed = change.role.filter(|role| *role != before.role);
        let active_changed = change.active.filter(|active| *active != before.active);
        let user = if role_changed.is_some() || active_changed.is_some() {
            let update = UserUpdate { role: role_changed, active: active_changed, ..Default::default() };
            let removes_an_admin = before.role == Role::Admin
                && before.active
                && (role_changed == Some(Role::User) || active_changed == Some(false));
            let now = crate::store::now();
            if removes_an_admin {
                // Two admins removing each other at once: the store lets one through.
                match self.store.update_user_keeping_an_admin(&before.id, &update, now).await? {
                    AdminKept::Updated(user) => *user,
                    AdminKept::NotFound => return Err(AccountError::NotFound),
                    AdminKept::LastAdmin => {
                        return Err(AccountError::Conflict(
                            "This is the last active admin; promote another admin first",
                        ));
                    }
                }
            } else {
                self.store.update_user(&before.id, &update, now).await?.ok_or(AccountError::NotFound)?
            }
        } else {
            before.clone()
        };
        let admin_id = &admin.user.id;
        if let Some(role) = role_changed {
            tracing::info!(event = "admin_role_changed", admin_id = %admin_id, user_id = %user.id,
                client_ip = %client_ip, from = before.role.as_str(), to = role.as_str(), "admin changed a user's role");
        }
        if let Some(active) = active_changed {
            tracing::info!(event = "admin_active_changed", admin_id = %admin_id, user_id = %user.id,
                client_ip = %client_ip, active, "admin changed whether a user is active");
        }
        if active_changed == Some(false) {
            // A reset link mailed before the deactivation must not act on the account later.
            self.store.void_reset_tokens(&user.id).await?;
        }
        // Sessions end after the store changed, so a request racing this one already sees the new
        // role or flag: every credential check reads both from the store.
        let reason = match (active_changed, role_changed) {
            (Some(false), _) => Some("account_disabled"),
            (_, Some(_)) => Some("role_changed"),
            _ => None,
        };
        if let Some(reason) = reason {
            self.end_all_sessions(&user.id, reason).await?;
        }
        Ok(user)
    }

    /// Creates the configured admin, or promotes that account if its password is the configured
    /// one: registration is open and emails are not verified, so whoever registered the address
    /// first must not become admin by it. The error is one line naming the settings.
    pub async fn ensure_admin(&self, email: &str, password: &str) -> Result<(), String> {
        let email = rules::normalise_email(email);
        let settings = "SWITCHBOARD_ADMIN_EMAIL/SWITCHBOARD_ADMIN_PASSWORD";
        let store_error = |e: crate::store::StoreError| format!("{settings}: {e}");
        if let Some(user) = self.store.user_by_email(&email).await.map_err(store_error)? {
            if !self.hasher.verify(password, Some(&user.password_hash)).await.unwrap_or(false) {
                return Err(
                    "SWITCHBOARD_ADMIN_EMAIL names an existing account whose password is not SWITCHBOARD_ADMIN_PASSWORD"
                        .into(),
                );
            }
            if user.role != Role::Admin || !user.active {
                let update = UserUpdate { role: Some(Role::Admin), active: Some(true), ..Default::default() };
                self.store.update_user(&user.id, &update, crate::store::now()).await.map_err(store_error)?;
                tracing::info!(event = "admin_promoted", user_id = %user.id, "promoted the configured admin");
            }
            return Ok(());
        }
        for (field, check) in
            [(email.as_str(), rules::email as fn(&str) -> _), (password, rules::new_password)]
        {
            if let Err(e) = check(field) {
                return Err(format!("{settings}: {}", e.message.unwrap_or_default()));
            }
        }
        let account = NewAccount {
            email,
            password: password.to_owned(),
            first_name: Name::parse("Switchboard").map_err(|e| e.to_string())?,
            last_name: Name::parse("Admin").map_err(|e| e.to_string())?,
        };
        match self.create_user(account, Role::Admin).await {
            Ok((user, _)) => {
                tracing::info!(event = "admin_created", user_id = %user.id, "created the configured admin");
                Ok(())
            }
            // Another process created it at the same moment.
            Err(AccountError::EmailTaken) => Ok(()),
            Err(e) => Err(format!("could not create the admin: {e}")),
        }
    }
}
