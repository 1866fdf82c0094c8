//! Building and running the server: storage, secrets, the first admin, routes, shutdown.

use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::middleware::{Compress, Logger, from_fn};
use actix_web::{App, HttpServer, web};

use crate::auth::jwt::JwtKeys;
use crate::auth::password::PasswordHasher;
use crate::auth::tokens;
use crate::config::Config;
use crate::http;
use crate::mail::Mailer;
use crate::metrics;
use crate::security;
use crate::store::mongo::MongoStore;
use crate::store::sqlite::SqliteStore;
use crate::store::{DynStore, Role, UserUpdate};
use crate::ws::hub::Realtime;

/// Everything handlers share.
pub struct AppState {
    /// Settings.
    pub config: Arc<Config>,
    /// Storage.
    pub store: DynStore,
    /// JWT keys.
    pub jwt: JwtKeys,
    /// Key that binds CSRF tokens to sessions.
    pub csrf_key: Vec<u8>,
    /// Bounded password hashing.
    pub hasher: PasswordHasher,
    /// Outgoing mail.
    pub mailer: Mailer,
    /// The WebSocket side: presence, credit and rate-limit actors, assistant, images.
    pub realtime: Realtime,
    /// The REST rate limit and the brute-force throttles.
    pub security: security::Security,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A file or socket problem.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Storage could not be opened.
    #[error("storage: {0}")]
    Store(#[from] crate::store::StoreError),
    /// A setting is unusable.
    #[error("{0}")]
    Config(String),
}

/// A built server, bound and ready to run.
pub struct Application {
    port: u16,
    server: Server,
    state: web::Data<AppState>,
}

impl Application {
    /// Opens storage, loads secrets, ensures the first admin and binds the listener.
    pub async fn build(mut config: Config) -> Result<Application, StartError> {
        std::fs::create_dir_all(&config.data_dir)?;
        let listener = TcpListener::bind(config.bind)?;
        let local = listener.local_addr()?;
        // Mailed links use the address actually bound (port 0 becomes the real port).
        config.public_url.get_or_insert_with(|| format!("http://{local}"));
        let store = open_store(&config).await?;
        let secret = match &config.jwt_secret {
            Some(secret) => secret.clone().into_bytes(),
            None => load_or_create_secret(&config.data_dir)?,
        };
        let concurrency = config.hash_concurrency.map(usize::from).unwrap_or_else(default_hash_concurrency);
        let state = web::Data::new(AppState {
            jwt: JwtKeys::new(&secret),
            csrf_key: tokens::hmac_token(&secret, "csrf").into_bytes(),
            hasher: PasswordHasher::new(concurrency).map_err(|e| StartError::Config(e.to_string()))?,
            mailer: Mailer::new(&config).map_err(StartError::Config)?,
            realtime: Realtime::start(&config, store.clone()),
            security: security::Security::start(&config),
            store,
            config: Arc::new(config),
        });
        ensure_admin(&state).await?;

        metrics::install();
        security::register_metrics();
        let port = local.port();
        let app_state = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(app_state.clone())
                // Innermost: the REST limit, then CORS, so a 429 still carries the CORS headers.
                .wrap(from_fn(security::rate_limit::limit_api))
                .wrap(from_fn(security::cors::cors))
                .wrap(Compress::default())
                .wrap(request_logger())
                // Around everything that can answer, so 404s, 429s and errors get the headers too.
                .wrap(from_fn(security::headers::security_headers))
                // Outermost, so it sees every status and the whole time.
                .wrap(from_fn(metrics::track_requests))
                .configure(http::routes)
                .configure(crate::pages::routes)
                .default_service(web::to(http::not_found))
        })
        .listen(listener)?
        .disable_signals()
        .shutdown_timeout(10)
        .run();
        Ok(Application { port, server, state })
    }

    /// The port actually bound (useful with port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGINT or SIGTERM, then stops gracefully.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let handle = self.server.handle();
        let state = self.state.clone();
        actix_web::rt::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down");
            close_sockets(&state).await;
            handle.stop(true).await;
        });
        self.server.await?;
        self.state.store.close().await;
        tracing::info!("stopped");
        Ok(())
    }

    /// Serves until the future is dropped or the server is stopped (for tests: no signal handling).
    pub async fn run(self) -> std::io::Result<()> {
        self.server.await
    }
}

/// Closes every WebSocket with 1001 and gives the writers a moment to send the close frames,
/// since a graceful HTTP stop would otherwise wait for the sockets to end by themselves.
async fn close_sockets(state: &AppState) {
    let sessions = state.realtime.presence.send(switchboard_actors::presence::ShutdownAll).await.unwrap_or(0);
    if sessions > 0 {
        tracing::info!(sessions, "closing WebSocket sessions");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// One hash per CPU but one: argon2id on every core starves the other requests (BENCHMARKS.md:
/// on 2 cores, GET /api/me p99 during a login storm was 13 ms with 2 hashes at once, 6 ms with 1).
fn default_hash_concurrency() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1))
}

async fn open_store(config: &Config) -> Result<DynStore, StartError> {
    Ok(match &config.mongodb_uri {
        Some(uri) => Arc::new(MongoStore::connect(uri, &config.mongodb_db).await?),
        None => Arc::new(SqliteStore::open(&config.data_dir)?),
    })
}

/// Access log without query strings, which can carry tokens (`/ws?token=`, reset links).
fn request_logger() -> Logger {
    Logger::new("%{method}xi %U %s %b %Dms").custom_request_replace("method", |req| req.method().to_string())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler cannot fail on unix");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// The generated JWT secret, created once with mode 0600 so tokens survive restarts.
fn load_or_create_secret(dir: &Path) -> Result<Vec<u8>, StartError> {
    let path = dir.join("jwt_secret");
    match std::fs::read_to_string(&path) {
        Ok(secret) if secret.trim().len() >= 32 => return Ok(secret.trim().as_bytes().to_vec()),
        Ok(_) => return Err(StartError::Config(format!("{} is shorter than 32 bytes", path.display()))),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
        Err(_) => {}
    }
    let secret = format!("{}{}", tokens::random_secret(), tokens::random_secret());
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    use std::io::Write;
    options.open(&path)?.write_all(secret.as_bytes())?;
    tracing::info!(path = %path.display(), "generated a JWT secret");
    Ok(secret.into_bytes())
}

/// Creates the admin from `SWITCHBOARD_ADMIN_EMAIL`/`_PASSWORD`, or promotes that account.
async fn ensure_admin(state: &AppState) -> Result<(), StartError> {
    let (Some(email), Some(password)) = (&state.config.admin_email, &state.config.admin_password) else {
        return Ok(());
    };
    let email = http::validate::normalise_email(email);
    if let Some(user) = state.store.user_by_email(&email).await? {
        // Registration is open and emails are not verified, so whoever registered this address
        // first must not become admin by it: the account must have the configured password.
        if !state.hasher.verify(password, Some(&user.password_hash)).await.unwrap_or(false) {
            return Err(StartError::Config(
                "SWITCHBOARD_ADMIN_EMAIL names an existing account whose password is not SWITCHBOARD_ADMIN_PASSWORD"
                    .into(),
            ));
        }
        if user.role != Role::Admin || !user.active {
            let update = UserUpdate { role: Some(Role::Admin), active: Some(true), ..Default::default() };
            state.store.update_user(&user.id, &update, crate::store::now()).await?;
            tracing::info!(event = "admin_promoted", user_id = %user.id, "promoted the configured admin");
        }
        return Ok(());
    }
    let request = http::auth::RegisterRequest {
        email: email.clone(),
        password: password.clone(),
        first_name: "Switchboard".into(),
        last_name: "Admin".into(),
    };
    validator::Validate::validate(&request).map_err(|e| {
        StartError::Config(format!("SWITCHBOARD_ADMIN_EMAIL/SWITCHBOARD_ADMIN_PASSWORD: {e}"))
    })?;
    match http::auth::create_user(state, &request, Role::Admin).await {
        Ok((user, _)) => {
            tracing::info!(event = "admin_created", user_id = %user.id, "created the configured admin")
        }
        // Another process created it at the same moment.
        Err(crate::error::ApiError::EmailTaken) => {}
        Err(e) => return Err(StartError::Config(format!("could not create the admin: {e}"))),
    }
    Ok(())
}
