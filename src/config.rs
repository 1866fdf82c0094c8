//! Settings from flags and environment variables (docs/API.md §1). `switchboard --help` lists them all.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use clap::builder::{BoolishValueParser, TypedValueParser};
use lettre::message::Mailbox;

use crate::mail::SmtpServer;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Every setting of the server.
#[derive(Debug, Clone, Parser)]
#[command(name = "switchboard", version, about = "Account, credit and realtime presence backend")]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "SWITCHBOARD_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,

    /// Directory of the embedded store, the generated JWT secret and the mail outbox.
    #[arg(long, env = "SWITCHBOARD_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// MongoDB connection string; when set, MongoDB replaces the embedded store.
    #[arg(long, env = "MONGODB_URI", hide_env_values = true)]
    pub mongodb_uri: Option<String>,

    /// MongoDB database name.
    #[arg(long, env = "MONGODB_DB", default_value = "switchboard")]
    pub mongodb_db: String,

    /// Redis URL (`redis://host:6379/0`); when set, several nodes act as one server: fan-out,
    /// presence, revocations, limits and the session cap go through Redis.
    #[arg(long, env = "REDIS_URL", hide_env_values = true, value_parser = REDIS_URL)]
    pub redis_url: Option<String>,

    /// This node's name in logs, metrics and presence (default: host name and process id).
    #[arg(long, env = "SWITCHBOARD_NODE_ID", value_parser = NODE_ID)]
    pub node_id: Option<String>,

    /// HS256 signing secret (at least 32 bytes); generated once and kept in the data dir when unset.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// Email of the first admin, created or promoted at start.
    #[arg(long, env = "SWITCHBOARD_ADMIN_EMAIL")]
    pub admin_email: Option<String>,

    /// Password of the first admin when it has to be created.
    #[arg(long, env = "SWITCHBOARD_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,

    /// Browser origins allowed for cookie-authenticated WebSockets and CORS (comma list).
    #[arg(long, env = "SWITCHBOARD_ALLOWED_ORIGINS", value_delimiter = ',', value_parser = parse_origin)]
    pub allowed_origins: Vec<String>,

    /// Reverse proxies (CIDR list) whose X-Forwarded-For is believed.
    #[arg(long, env = "SWITCHBOARD_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// Base URL for links in mail; defaults to http://<bind address>.
    #[arg(long, env = "SWITCHBOARD_PUBLIC_URL", value_parser = parse_origin)]
    pub public_url: Option<String>,

    /// SMTP server for password-reset mail, as lettre's connection URL: smtp://[user:password@]host[:port]
    /// (plain), smtp://…?tls=required (STARTTLS) or smtps://… (TLS); unset: write to <data-dir>/outbox/.
    #[arg(long, env = "SMTP_URL", hide_env_values = true, value_parser = SMTP_URL)]
    pub smtp_url: Option<SmtpServer>,

    /// Sender address of mail.
    #[arg(long, env = "SMTP_FROM", default_value = "Switchboard <no-reply@switchboard.local>",
        value_parser = SMTP_FROM)]
    pub smtp_from: Mailbox,

    /// The model catalogue: a TOML file of chat and image models, their upstreams and prices
    /// (docs/API.md §8); unset: the built-in models, priced by PRICE_CHAT_MESSAGE and PRICE_IMAGE.
    #[arg(long, env = "SWITCHBOARD_MODELS")]
    pub models: Option<std::path::PathBuf>,

    /// OpenAI-compatible chat completions base URL, without a models file; unset: the built-in echo assistant.
    #[arg(long, env = "ASSISTANT_URL")]
    pub assistant_url: Option<String>,

    /// Model name sent to the assistant.
    #[arg(long, env = "ASSISTANT_MODEL", default_value = "gpt-4o-mini")]
    pub assistant_model: String,

    /// API key sent to the assistant.
    #[arg(long, env = "ASSISTANT_API_KEY", hide_env_values = true)]
    pub assistant_api_key: Option<String>,

    /// OpenAI-compatible image generation base URL; unset: the built-in generator.
    #[arg(long, env = "IMAGE_URL")]
    pub image_url: Option<String>,

    /// Model name sent to the image generator.
    #[arg(long, env = "IMAGE_MODEL", default_value = "gpt-image-1")]
    pub image_model: String,

    /// API key sent to the image generator.
    #[arg(long, env = "IMAGE_API_KEY", hide_env_values = true)]
    pub image_api_key: Option<String>,

    /// Log format.
    #[arg(long, env = "SWITCHBOARD_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Mark cookies Secure (set when TLS ends at a proxy).
    #[arg(long, env = "SWITCHBOARD_SECURE_COOKIES", value_parser = BoolishValueParser::new(), default_value = "false",
        num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub secure_cookies: bool,

    /// Bearer token required to read /metrics; unset: open.
    #[arg(long, env = "METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,

    /// Credits charged per chat turn by the built-in catalogue (a models file sets its own prices).
    #[arg(long, env = "PRICE_CHAT_MESSAGE", default_value_t = 1, value_parser = clap::value_parser!(i64).range(0..=1_000_000))]
    pub price_chat_message: i64,

    /// Credits charged per image by the built-in catalogue (a models file sets its own prices).
    #[arg(long, env = "PRICE_IMAGE", default_value_t = 10, value_parser = clap::value_parser!(i64).range(0..=1_000_000))]
    pub price_image: i64,

    /// Credits of a new account.
    #[arg(long, env = "STARTING_CREDITS", default_value_t = 100, value_parser = clap::value_parser!(i64).range(0..=1_000_000_000))]
    pub starting_credits: i64,

    /// REST requests per minute per user (or per client IP when anonymous).
    #[arg(long, env = "RATE_LIMIT_PER_MINUTE", default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_limit_per_minute: u32,

    /// Failed logins of one account answered before delays start (1 s, doubling, at most 15 min).
    #[arg(long, env = "SWITCHBOARD_LOGIN_FAILURES_PER_ACCOUNT", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub login_failures_per_account: u32,

    /// Failed logins from one client IP answered before delays start (1 s, doubling, at most 15 min).
    #[arg(long, env = "SWITCHBOARD_LOGIN_FAILURES_PER_IP", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub login_failures_per_ip: u32,

    /// Failed password resets (bad tokens) from one client IP answered before delays start.
    #[arg(long, env = "SWITCHBOARD_RESET_FAILURES_PER_IP", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub reset_failures_per_ip: u32,

    /// Password-reset requests per hour for one email address.
    #[arg(long, env = "SWITCHBOARD_FORGOT_PER_EMAIL_PER_HOUR", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub forgot_per_email_per_hour: u32,

    /// Password-reset requests per hour from one client IP.
    #[arg(long, env = "SWITCHBOARD_FORGOT_PER_IP_PER_HOUR", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub forgot_per_ip_per_hour: u32,

    /// Registrations per hour from one client IP.
    #[arg(long, env = "SWITCHBOARD_REGISTRATIONS_PER_IP_PER_HOUR", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub registrations_per_ip_per_hour: u32,

    /// Paid WebSocket messages (chat.send, image.generate) per minute per user.
    #[arg(long, env = "WS_RATE_LIMIT_PER_MINUTE", default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..))]
    pub ws_rate_limit_per_minute: u32,

    /// Free WebSocket requests that touch storage (credits.get, chat.create, chat.list,
    /// chat.history) per minute per user; pings are never limited.
    #[arg(long, env = "SWITCHBOARD_WS_FREE_PER_MINUTE", default_value_t = 1200, value_parser = clap::value_parser!(u32).range(1..))]
    pub ws_free_per_minute: u32,

    /// Chats one user may keep; beyond it chat.create is refused with `quota_exceeded`.
    #[arg(long, env = "SWITCHBOARD_MAX_CHATS_PER_USER", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub max_chats_per_user: u32,

    /// Server WebSocket ping interval, milliseconds; three silent intervals close a connection.
    #[arg(long, env = "SWITCHBOARD_WS_HEARTBEAT_MS", default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub ws_heartbeat_ms: u64,

    /// Open WebSocket sessions allowed per user; the next upgrade gets 429.
    #[arg(long, env = "SWITCHBOARD_WS_MAX_SESSIONS", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub ws_max_sessions_per_user: u32,

    /// Open WebSockets per client IP on this node; the next upgrade gets 429.
    #[arg(long, env = "SWITCHBOARD_WS_MAX_PER_IP", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub ws_max_per_ip: u32,

    /// Open plain HTTP connections per client IP on this node (trusted proxies are not counted);
    /// a connection beyond gets 429 and is closed. WebSockets count under `--ws-max-per-ip`.
    #[arg(long, env = "SWITCHBOARD_HTTP_MAX_PER_IP", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub http_max_per_ip: u32,

    /// WebSocket upgrades per client IP per minute; beyond, 429 with Retry-After.
    #[arg(long, env = "SWITCHBOARD_WS_UPGRADES_PER_IP_PER_MINUTE", default_value_t = 600, value_parser = clap::value_parser!(u32).range(1..))]
    pub ws_upgrades_per_ip_per_minute: u32,

    /// Bytes queued for a WebSocket client before it counts as slow and is closed (4002).
    #[arg(long, env = "SWITCHBOARD_WS_OUTBOUND_BYTES", default_value_t = 1 << 20, value_parser = clap::value_parser!(u32).range(1024..=(1 << 30)))]
    pub ws_outbound_bytes: u32,

    /// Password hashes computed at once (default: the number of CPUs minus one, at least 1).
    #[arg(long, env = "SWITCHBOARD_HASH_CONCURRENCY", value_parser = clap::value_parser!(u16).range(1..))]
    pub hash_concurrency: Option<u16>,

    /// What to run: the server unless a command is named.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The commands besides the server (docs/API.md §7).
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Checks every user's ledger (no gaps in seq, each balance_after and held_after following
    /// from the one before, no negative balance, no hold left open longer than --hold-age, the
    /// cached balance equal to the newest entry's) and prints a report. Exit 0 when consistent
    /// (stale cached balances alone are reported, not damage), 1 when damage remains. Uses the
    /// server's settings; safe while a server runs on the store.
    CheckLedger {
        /// Rewrite stale cached balances, and settle holds left open (with what their stored
        /// reply or image was charged, else 0).
        #[arg(long)]
        repair: bool,
        /// Minutes after which a hold without its settle is damage: longer than any generation
        /// runs (a reply at most 10 minutes, an image 2), so at least 15.
        #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u32).range(15..=10_080))]
        hold_age: u32,
    },
}

impl Config {
    /// Parses flags and environment; on a bad setting prints one line naming it and exits with 2.
    pub fn from_env_and_args() -> Config {
        match Config::try_parse() {
            Ok(config) => match config.check() {
                Ok(()) => config,
                Err(line) => {
                    eprintln!("error: {line}");
                    std::process::exit(2);
                }
            },
            Err(e) if !e.use_stderr() => e.exit(),
            Err(e) => {
                let rendered = e.to_string();
                let line = rendered.lines().next().unwrap_or("invalid configuration");
                eprintln!("{line}");
                std::process::exit(2);
            }
        }
    }

    /// Checks that settings agree with each other; the error names the setting.
    pub fn check(&self) -> Result<(), String> {
        if let Some(secret) = &self.jwt_secret
            && secret.len() < 32
        {
            return Err("JWT_SECRET must be at least 32 bytes".into());
        }
        if self.admin_email.is_some() != self.admin_password.is_some() {
            return Err("SWITCHBOARD_ADMIN_EMAIL and SWITCHBOARD_ADMIN_PASSWORD must be set together".into());
        }
        if let Some(uri) = &self.mongodb_uri
            && !(uri.starts_with("mongodb://") || uri.starts_with("mongodb+srv://"))
        {
            return Err("MONGODB_URI must start with mongodb:// or mongodb+srv://".into());
        }
        if self.redis_url.is_some() {
            // Several nodes are one server only on one store and one token key.
            if self.mongodb_uri.is_none() {
                return Err("REDIS_URL needs MONGODB_URI: the nodes must share one store".into());
            }
            if self.jwt_secret.is_none() {
                return Err("REDIS_URL needs JWT_SECRET: every node must check the others' tokens".into());
            }
        }
        for (name, url) in [("ASSISTANT_URL", &self.assistant_url), ("IMAGE_URL", &self.image_url)] {
            if let Some(url) = url
                && parse_origin(url).is_err()
            {
                return Err(format!("{name} must be an http:// or https:// URL"));
            }
        }
        Ok(())
    }

    /// This node's name: the setting, else the host name and the process id.
    pub fn node_id(&self) -> String {
        self.node_id.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| {
                    h.trim().chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').collect::<String>()
                })
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "node".into());
            format!("{host}-{}", std::process::id())
        })
    }

    /// The base URL for links in mail.
    pub fn public_url(&self) -> String {
        self.public_url.clone().unwrap_or_else(|| format!("http://{}", self.bind))
    }
}

/// A value parser whose errors are one line, `SETTING: problem`, that never repeats the value
/// (clap's own message would quote it, and `SMTP_URL` may hold a password, `SMTP_FROM` a line
/// break that would cut the line before the setting's name).
#[derive(Clone)]
struct Named<T> {
    setting: &'static str,
    parse: fn(&str) -> Result<T, String>,
}

impl<T: Clone + Send + Sync + 'static> TypedValueParser for Named<T> {
    type Value = T;

    fn parse_ref(
        &self,
        _: &clap::Command,
        _: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<T, clap::Error> {
        let refuse = |problem: String| {
            let line = format!("{}: {}\n", self.setting, problem.replace(['\r', '\n'], " "));
            clap::Error::raw(clap::error::ErrorKind::ValueValidation, line)
        };
        let value = value.to_str().ok_or_else(|| refuse("is not UTF-8".into()))?;
        (self.parse)(value.trim()).map_err(refuse)
    }
}

/// `SMTP_URL`, read by lettre's own URL support.
const SMTP_URL: Named<SmtpServer> = Named { setting: "SMTP_URL", parse: SmtpServer::from_url };

/// `REDIS_URL`, read by the Redis client's own URL support.
const REDIS_URL: Named<String> = Named {
    setting: "REDIS_URL",
    parse: |value| {
        if !(value.starts_with("redis://") || value.starts_with("redis-cluster://")) {
            return Err("must start with redis:// or redis-cluster://".into());
        }
        match fred::types::config::Config::from_url(value) {
            Ok(_) => Ok(value.to_owned()),
            Err(e) => Err(format!("not a Redis URL ({})", e.details())),
        }
    },
};

/// `SWITCHBOARD_NODE_ID`: it names Redis keys and channels, so a short plain name.
const NODE_ID: Named<String> = Named {
    setting: "SWITCHBOARD_NODE_ID",
    parse: |value| {
        let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
        if (1..=64).contains(&value.len()) && value.chars().all(plain) {
            Ok(value.to_owned())
        } else {
            Err("use 1 to 64 letters, digits, '.', '-' or '_'".into())
        }
    },
};

/// `SMTP_FROM`: `Name <address>` or a bare address.
const SMTP_FROM: Named<Mailbox> = Named {
    setting: "SMTP_FROM",
    parse: |value| value.parse::<Mailbox>().map_err(|e| format!("not a mail address ({e})")),
};

/// Accepts an http(s) URL without a trailing slash.
fn parse_origin(value: &str) -> Result<String, String> {
    let value = value.trim().trim_end_matches('/');
    let rest = value.strip_prefix("http://").or_else(|| value.strip_prefix("https://"));
    match rest {
        Some(host) if !host.is_empty() && !host.contains(char::is_whitespace) => Ok(value.to_owned()),
        _ => Err(format!("'{value}' is not an http:// or https:// URL")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_contract() {
        let c = Config::try_parse_from(["switchboard"]).unwrap();
        assert_eq!(c.bind.to_string(), "127.0.0.1:8080");
        assert_eq!((c.price_chat_message, c.price_image, c.starting_credits), (1, 10, 100));
        assert_eq!((c.rate_limit_per_minute, c.ws_rate_limit_per_minute), (60, 60));
        assert_eq!(c.public_url(), "http://127.0.0.1:8080");
    }

    #[test]
    fn bad_settings_are_refused_with_their_name() {
        let err = Config::try_parse_from(["switchboard", "--bind", "nowhere"]).unwrap_err().to_string();
        assert!(err.contains("--bind"), "{err}");
        let c = Config::try_parse_from(["switchboard", "--jwt-secret", "short"]).unwrap();
        assert!(c.check().unwrap_err().contains("JWT_SECRET"));
        assert!(Config::try_parse_from(["switchboard", "--allowed-origins", "ftp://x"]).is_err());
        for (flag, value) in [("--redis-url", "http://x"), ("--node-id", "a b"), ("--node-id", "")] {
            let err = Config::try_parse_from(["switchboard", flag, value]).unwrap_err().to_string();
            assert!(err.contains("REDIS_URL") || err.contains("SWITCHBOARD_NODE_ID"), "{flag}: {err}");
        }
        let c = Config::try_parse_from(["switchboard", "--redis-url", "redis://127.0.0.1:6379/0"]).unwrap();
        assert_eq!(c.redis_url.as_deref(), Some("redis://127.0.0.1:6379/0"));
    }
}
