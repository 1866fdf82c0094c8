//! Building and running the server: the wiring module. It reads the settings, opens storage,
//! loads secrets, builds the engines, seams and services into [`AppState`], ensures the first
//! admin, mounts the middleware and routes, and stops gracefully. Only `main.rs` imports it.

use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::{Compress, Logger, from_fn};
use actix_web::{App, HttpServer, web};

use crate::auth::jwt::JwtKeys;
use crate::auth::password::PasswordHasher;
use crate::auth::tokens;
use crate::catalogue::Catalogue;
use crate::config::Config;
use crate::mail::Mailer;
use crate::seams::Seams;
use crate::seams::redis::RedisLink;
use crate::seams::throttle::Backoff;
use crate::services::accounts::throttles::AuthThrottles;
use crate::services::accounts::{AccountSeams, AccountService, AccountSettings};
use crate::services::conversation::{ConversationService, Generations, Models};
use crate::services::credits::CreditService;
use crate::services::overview::OverviewService;
use crate::state::AppState;
use crate::store::DynStore;
use crate::store::mongo::MongoStore;
use crate::store::sqlite::SqliteStore;
use crate::ws::requests::Frames;
use crate::{http, metrics, pages, security};

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
        // The tokenizer's vocabulary loads in the background, so the first chat turn need not wait.
        tokio::task::spawn_blocking(crate::tokenizer::warm);
        // A bad models file stops start-up before anything is opened.
        let catalogue = Catalogue::from_config(&config).map_err(StartError::Config)?;
        // The upstreams' HTTP client needs the system's root certificates: say so now, not on a
        // user's first paid request.
        crate::openai::check_client().map_err(StartError::Config)?;
        // Named once: without SWITCHBOARD_NODE_ID the name is read from the host.
        config.node_id = Some(config.node_id());
        std::fs::create_dir_all(&config.data_dir).map_err(|e| unusable_data_dir(&config.data_dir, e))?;
        let listener = listen(config.bind)?;
        let local = listener.local_addr()?;
        // Mailed links use the address actually bound (port 0 becomes the real port).
        config.public_url.get_or_insert_with(|| format!("http://{local}"));
        let store = open_store(&config).await?;
        let secret = match &config.jwt_secret {
            Some(secret) => secret.clone().into_bytes(),
            None => load_or_create_secret(&config.data_dir).map_err(|e| match e {
                StartError::Io(e) => unusable_data_dir(&config.data_dir, e),
                other => other,
            })?,
        };
        let seams = match &config.redis_url {
            Some(url) => {
                Seams::redis(RedisLink::connect(url, config.node_id()).await.map_err(StartError::Config)?)
            }
            None => Seams::local(),
        };
        let state = web::Data::new(assemble(config, catalogue, store, &secret, &seams)?);
        if let Some(link) = seams.redis_link() {
            revalidate_after_resubscribing(&link, state.accounts.clone());
        }
        if let (Some(email), Some(password)) = (&state.config.admin_email, &state.config.admin_password) {
            state.accounts.ensure_admin(email, password).await.map_err(StartError::Config)?;
        }

        metrics::install();
        let port = local.port();
        let app_state = state.clone();
        let connection_cap = security::connections::ConnectionCap::new(
            state.config.http_max_per_ip as usize,
            &state.config.trusted_proxies,
        );
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
                // Before any handler: the per-IP connection cap and the deadline of every body.
                .wrap(from_fn(security::connections::guard_bodies))
                // Outermost, so it sees every status and the whole time.
                .wrap(from_fn(http::metrics::track_requests))
                .configure(http::routes)
                .configure(pages::routes)
                .default_service(web::to(http::not_found))
        })
        .on_connect(move |connection, data| connection_cap.count_connection(connection, data))
        .listen(listener)?
        .disable_signals()
        // A closed WebSocket (or any connection the server ends) is dropped at once: waiting
        // for the client to hang up first left sockets open for a second after their close.
        .client_disconnect_timeout(Duration::ZERO)
        // A client must send its request head within this time (else 408 and the connection
        // ends), so half-sent requests (slowloris) cannot hold connections for long.
        .client_request_timeout(REQUEST_HEAD_TIMEOUT)
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

/// Revocations cross nodes by publish and subscribe, which delivers at most once: whatever was
/// published while this node's subscription was down never arrives. So each time the
/// subscription is back, the node checks its open sockets against storage and closes those whose
/// credential was revoked meanwhile.
fn revalidate_after_resubscribing(link: &RedisLink, accounts: Arc<AccountService>) {
    let mut returns = link.resubscriptions();
    tokio::spawn(async move {
        while returns.changed().await.is_ok() {
            // Storage may be down too: a few tries, a little further apart each time.
            for pause in [0, 1, 2, 4, 8, 16] {
                tokio::time::sleep(Duration::from_secs(pause)).await;
                match accounts.revalidate_sockets().await {
                    Ok(_) => break,
                    Err(e) => {
                        tracing::error!(error = %e, "could not check the open sockets after resubscribing")
                    }
                }
            }
        }
    });
}

/// The engines, seams and services the settings ask for, in one [`AppState`].
fn assemble(
    config: Config,
    catalogue: Catalogue,
    store: DynStore,
    secret: &[u8],
    seams: &Seams,
) -> Result<AppState, StartError> {
    let concurrency = config.hash_concurrency.map(usize::from).unwrap_or_else(default_hash_concurrency);
    let hasher = PasswordHasher::new(concurrency).map_err(|e| StartError::Config(e.to_string()))?;
    let mailer =
        Mailer::new(config.smtp_from.clone(), config.smtp_url.clone(), config.data_dir.join("outbox"));
    let heartbeat = Duration::from_millis(config.ws_heartbeat_ms);
    let realtime = seams.realtime(config.ws_max_sessions_per_user as usize, heartbeat);

    let (minute, hour) = (Duration::from_secs(60), Duration::from_secs(3600));
    let failures = |scope, free: u32| seams.throttle(scope, Backoff::standard(free));
    let throttles = AuthThrottles {
        login_account: failures("login_account", config.login_failures_per_account),
        login_ip: failures("login_ip", config.login_failures_per_ip),
        reset_ip: failures("reset_ip", config.reset_failures_per_ip),
        forgot_email: seams.limiter("forgot_email", config.forgot_per_email_per_hour, hour),
        forgot_ip: seams.limiter("forgot_ip", config.forgot_per_ip_per_hour, hour),
        register_ip: seams.limiter("register_ip", config.registrations_per_ip_per_hour, hour),
    };
    let settings =
        AccountSettings { starting_credits: config.starting_credits, public_url: config.public_url() };
    let accounts = AccountService::new(
        store.clone(),
        hasher,
        JwtKeys::new(secret),
        mailer,
        AccountSeams { bus: realtime.bus.clone(), presence: realtime.presence.clone() },
        throttles,
        settings,
    );
    let notify = Arc::new(Frames::unrequested(realtime.bus.clone()));
    let credits = Arc::new(CreditService::new(store.clone(), notify));
    let generations = Generations::default();
    let running = generations.clone();
    let stops = seams.stops(Arc::new(move |user_id: &str, message_id: &str| {
        running.stop(user_id, message_id);
    }));
    let conversation = ConversationService::new(
        store.clone(),
        credits.clone(),
        Models::new(catalogue),
        seams.limiter("ws", config.ws_rate_limit_per_minute, minute),
        i64::from(config.max_chats_per_user),
        generations,
        stops,
    );
    let overview = OverviewService::new(
        store.clone(),
        credits.clone(),
        realtime.presence.clone(),
        conversation.generations().clone(),
    );
    Ok(AppState {
        node: config.node_id().into(),
        csrf_key: tokens::hmac_token(secret, "csrf").into_bytes(),
        accounts: Arc::new(accounts),
        credits,
        conversation: Arc::new(conversation),
        overview: Arc::new(overview),
        realtime,
        rest_limit: seams.limiter("rest", config.rate_limit_per_minute, minute),
        ws_free_limit: seams.limiter("ws_free", config.ws_free_per_minute, minute),
        redis: seams.redis_link(),
        ws_upgrade_limit: seams.limiter("ws_upgrade_ip", config.ws_upgrades_per_ip_per_minute, minute),
        ws_ip_cap: crate::security::ip_cap::IpCap::new(config.ws_max_per_ip as usize),
        store,
        config: Arc::new(config),
    })
}

/// The listening socket, with room for a burst of connections: the standard library's backlog
/// of 128 made a reconnect storm wait a second for retransmitted SYNs.
fn listen(address: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket =
        if address.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)?.into_std()
}

/// How long a client may take to send a request's head.
const REQUEST_HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections the kernel may hold before they are accepted (capped by `net.core.somaxconn`).
const LISTEN_BACKLOG: u32 = 4096;

/// Closes every WebSocket with 1001 and gives the writers a moment to send the close frames,
/// since a graceful HTTP stop would otherwise wait for the sockets to end by themselves.
async fn close_sockets(state: &AppState) {
    let sessions = state.realtime.presence.close_all().await;
    if sessions > 0 {
        tracing::info!(sessions, "closing WebSocket sessions");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// One hash per CPU but one: argon2id on every core starves the other requests (BENCHMARKS.md:
/// on 2 cores, GET /api/me p99 during a login storm was 13 ms with 2 hashes at once, 6 ms with 1).
fn default_hash_concurrency() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1))
}

/// The store the settings name: MongoDB when `MONGODB_URI` is set, else SQLite in the data dir.
pub async fn open_store(config: &Config) -> Result<DynStore, StartError> {
    Ok(match &config.mongodb_uri {
        Some(uri) => Arc::new(MongoStore::connect(uri, &config.mongodb_db).await?),
        None => {
            Arc::new(SqliteStore::open(&config.data_dir).map_err(|e| unusable_data_dir(&config.data_dir, e))?)
        }
    })
}

/// The one line that says the data dir cannot be used, and why.
fn unusable_data_dir(dir: &Path, cause: impl std::fmt::Display) -> StartError {
    StartError::Config(format!("data dir {} is unusable: {cause}", dir.display()))
}

/// Access log without query strings, which can carry tokens (`/ws?token=`, reset links). `/ws`
/// is left out: its line would come only when the socket closes, and the pending line would be
/// held for the socket's whole life; sessions log their own opening and closing instead.
fn request_logger() -> Logger {
    Logger::new("%{method}xi %U %s %b %Dms")
        .custom_request_replace("method", |req| req.method().to_string())
        .exclude("/ws")
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
