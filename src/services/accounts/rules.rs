//! The rules for account fields, shared by the REST bodies (through `#[validate(custom(...))]`)
//! and the admin bootstrap. Names are bounded text (`services::text::Name`), parsed where they
//! are read.

use std::borrow::Cow;

use validator::ValidationError;

use crate::auth::password;

fn problem(code: &'static str, message: &'static str) -> ValidationError {
    ValidationError::new(code).with_message(Cow::Borrowed(message))
}

/// 8 to 128 characters (never truncated) and not one of the 10,000 most common passwords.
pub fn new_password(value: &str) -> Result<(), ValidationError> {
    let count = value.chars().count();
    if !(8..=128).contains(&count) {
        return Err(problem("length", "must be 8 to 128 characters"));
    }
    if password::is_common(value) {
        return Err(problem("common_password", "is too common; choose another"));
    }
    Ok(())
}

/// An email address of at most 254 characters (normalised by [`normalise_email`]).
pub fn email(value: &str) -> Result<(), ValidationError> {
    let trimmed = value.trim();
    if trimmed.len() > 254 || !validator::ValidateEmail::validate_email(&trimmed) {
        return Err(problem("email", "must be a valid email address"));
    }
    Ok(())
}

/// Login passwords: any string up to 1024 bytes (old accounts may predate today's rules).
pub fn login_password(value: &str) -> Result<(), ValidationError> {
    if value.is_empty() || value.len() > 1024 {
        return Err(problem("length", "must be 1 to 1024 bytes"));
    }
    Ok(())
}

/// Emails are compared trimmed and lower-cased.
pub fn normalise_email(value: &str) -> String {
    value.trim().to_lowercase()
}
