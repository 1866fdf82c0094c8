//! The command line: one subcommand per scenario, the flags they share, and each one's defaults.

use clap::{Args, Parser, Subcommand};

/// Switchboard load generator: every scenario shows a progress line on stderr once a second and
/// ends with throughput, latency percentiles, errors by code and (with --server-pid) the
/// server's memory and CPU. See load/README.md.
#[derive(Parser)]
#[command(name = "switchboard-load")]
pub struct Cli {
    /// The scenario to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every WebSocket scenario takes; sessions, users and seconds default per scenario.
#[derive(Args, Clone)]
pub struct Common {
    /// Server base URL (http://host:port); a path after it replaces the WebSocket path. Several,
    /// comma-separated, for the nodes of a cluster: session i connects to node i mod n, and users
    /// are registered on the first.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Sessions (or concurrent loops); the default depends on the scenario (see its help).
    #[arg(long)]
    pub sessions: Option<usize>,
    /// Users the sessions are spread over, round robin; the default depends on the scenario.
    #[arg(long)]
    pub users: Option<usize>,
    /// Seconds to measure (for idle: to hold the sessions open).
    #[arg(long)]
    pub seconds: Option<u64>,
    /// PID of the server process: report its RSS (VmRSS) and CPU (% of one core) over the run.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Print one JSON object on stdout instead of the human lines.
    #[arg(long)]
    pub json: bool,
    /// Spread client sockets over source addresses 127.0.0.1..127.0.0.N, so more connections fit
    /// than one address's ephemeral ports allow (0: one address per 20,000 sessions).
    #[arg(long, default_value_t = 0)]
    pub source_addresses: usize,
}

/// The common flags with each scenario's defaults filled in.
#[derive(Clone)]
pub struct Settings {
    /// Server base URL as given.
    pub url: String,
    /// Sessions or concurrent loops.
    pub sessions: usize,
    /// Users to spread them over.
    pub users: usize,
    /// Seconds to measure.
    pub seconds: u64,
    /// Server PID for memory and CPU, if given.
    pub server_pid: Option<u32>,
    /// Source addresses (0: automatic).
    pub source_addresses: usize,
}

impl Common {
    /// Fills in what was not given; `users: None` means one user per session.
    pub fn settings(&self, sessions: usize, users: Option<usize>, seconds: u64) -> Settings {
        let sessions = self.sessions.unwrap_or(sessions).max(1);
        Settings {
            url: self.url.trim_end_matches('/').to_owned(),
            sessions,
            users: self.users.or(users).unwrap_or(sessions).max(1),
            seconds: self.seconds.unwrap_or(seconds),
            server_pid: self.server_pid,
            source_addresses: self.source_addresses,
        }
    }
}

/// The scenarios.
#[derive(Subcommand)]
pub enum Command {
    /// Logins per second and GET /api/me latency alone, under a login storm, and both together.
    RestAuth {
        /// Server base URL.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// Concurrent login loops.
        #[arg(long, default_value_t = 16)]
        logins: usize,
        /// Concurrent GET /api/me loops.
        #[arg(long, default_value_t = 16)]
        readers: usize,
        /// Seconds per phase.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// PID of the server process, for its memory and CPU.
        #[arg(long)]
        server_pid: Option<u32>,
        /// Print one JSON object instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Hold idle sessions and report server memory per session (defaults: 10,000 sessions,
    /// 20 users, held 10 s).
    #[command(alias = "ws-idle")]
    Idle {
        #[command(flatten)]
        common: Common,
        /// Bare WebSocket server (switchboard-echo): no registration, no token, no hello.
        #[arg(long)]
        raw: bool,
    },
    /// Authenticated connects per second: loops of open + hello + close (defaults: 50 loops,
    /// 10 users, 10 s).
    Connect {
        #[command(flatten)]
        common: Common,
        /// Bare WebSocket server: open + close without credentials or hello.
        #[arg(long)]
        raw: bool,
    },
    /// Ping round trips (defaults: 1,000 sessions, 20 users, 10 s, no pause: saturation).
    #[command(alias = "ws-ping")]
    Ping {
        #[command(flatten)]
        common: Common,
        /// Pause of each session between pings, ms (0: as fast as the replies come).
        #[arg(long, default_value_t = 0)]
        interval_ms: u64,
        /// Bare WebSocket server: any text frame is a ping and its echo the pong.
        #[arg(long)]
        raw: bool,
        /// Meanwhile, one more session sends this many invalid frames a second (bad JSON and
        /// unknown types, alternately) and reads the errors they earn: does a flooding client
        /// slow the others?
        #[arg(long, default_value_t = 0)]
        flood: u64,
    },
    /// Charged chat round trips, chat.send until its chat.done (defaults: 1,000 sessions, one
    /// user each, 10 s). Start the server with high --starting-credits and WS rate limits.
    #[command(alias = "ws-chat")]
    Chat {
        #[command(flatten)]
        common: Common,
        /// Pause of each session between messages, ms.
        #[arg(long, default_value_t = 0)]
        interval_ms: u64,
        /// Send every chat.send twice with the same idempotency_key and wait for both answers.
        /// The server charges the pair once (docs/API.md §5, idempotency); a server without keys
        /// answers the pair with invalid_message errors, which this counts.
        #[arg(long)]
        resend: bool,
    },
    /// Image round trips, image.generate until image.created (defaults: 100 sessions, one user
    /// each, 10 s).
    Image {
        #[command(flatten)]
        common: Common,
        /// Pause of each session between requests, ms.
        #[arg(long, default_value_t = 0)]
        interval_ms: u64,
        /// Width and height of each image, pixels (the server takes 256 to 1024).
        #[arg(long, default_value_t = 256)]
        size: u32,
    },
    /// Fan-out: one user with many sessions; one sends chat messages and every session counts
    /// the frames it receives (defaults: 1,000 sessions, 10 s). With --presence: an admin
    /// follows presence while --users users join and leave in a storm.
    Fanout {
        #[command(flatten)]
        common: Common,
        /// Measure the admin presence stream instead (events/s and their delay).
        #[arg(long)]
        presence: bool,
        /// Chat messages the sender keeps in flight.
        #[arg(long, default_value_t = 4)]
        in_flight: usize,
        /// Pause of the sender between messages (fan-out) or of each storm user between a
        /// leave and the next join (presence), ms.
        #[arg(long, default_value_t = 0)]
        interval_ms: u64,
        /// How long each storm session stays open, ms (presence).
        #[arg(long, default_value_t = 100)]
        hold_ms: u64,
        /// Admin email (presence).
        #[arg(long, default_value = "a@example.com")]
        admin_email: String,
        /// Admin password (presence).
        #[arg(long, default_value = "violet-harbour-lantern-42")]
        admin_password: String,
    },
    /// POST /api/login storm (defaults: 16 concurrent loops over 10 users, 10 s).
    Login {
        #[command(flatten)]
        common: Common,
    },
    /// A blend: most sessions ping, some chat, some idle, and a few login loops (defaults:
    /// 1,000 sessions, 50 users, 10 s).
    Mixed {
        #[command(flatten)]
        common: Common,
        /// Pause of each pinging session between pings, ms.
        #[arg(long, default_value_t = 1000)]
        interval_ms: u64,
        /// Share of sessions that chat, percent.
        #[arg(long, default_value_t = 10)]
        chat_percent: usize,
        /// Share of sessions that stay idle, percent.
        #[arg(long, default_value_t = 20)]
        idle_percent: usize,
        /// Pause of each chatting session between messages, ms.
        #[arg(long, default_value_t = 5000)]
        chat_interval_ms: u64,
        /// Concurrent login loops.
        #[arg(long, default_value_t = 2)]
        logins: usize,
    },
    /// Sessions that stop reading: each opens a chat, sends --messages chat messages of --words
    /// words (replies stream word by word) and never reads again; reports the server's memory
    /// and how many sessions it ended (defaults: 1,000 sessions, 100 users, 15 s). Start the
    /// server with high --starting-credits and WS rate limits.
    SlowReaders {
        #[command(flatten)]
        common: Common,
        /// Chat messages each session sends before it stops reading.
        #[arg(long, default_value_t = 20)]
        messages: usize,
        /// Words per message (the reply streams one delta per word).
        #[arg(long, default_value_t = 500)]
        words: usize,
    },
    /// CI check: ping saturation, then charged chat, on the same sessions and users (defaults:
    /// 200 sessions, 20 users, 5 s each); exits 1 when chat/ping is below --min-ratio.
    Guard {
        #[command(flatten)]
        common: Common,
        /// The lowest acceptable chat/ping throughput ratio.
        #[arg(long, default_value_t = 0.025)]
        min_ratio: f64,
    },
    /// Centrifugo: connects per second with an HMAC JWT (open + connect command + close).
    CentrifugoConnect {
        #[command(flatten)]
        centrifugo: CentrifugoArgs,
    },
    /// Centrifugo: round trips, each session publishing to its own channel until its own
    /// publication comes back.
    CentrifugoPing {
        #[command(flatten)]
        centrifugo: CentrifugoArgs,
    },
    /// Centrifugo: idle connections and the server's memory per connection.
    CentrifugoIdle {
        #[command(flatten)]
        centrifugo: CentrifugoArgs,
    },
}

impl Command {
    /// Whether the report should be one JSON object.
    pub fn wants_json(&self) -> bool {
        match self {
            Command::RestAuth { json, .. } => *json,
            Command::Idle { common, .. }
            | Command::Connect { common, .. }
            | Command::Ping { common, .. }
            | Command::Chat { common, .. }
            | Command::Image { common, .. }
            | Command::Fanout { common, .. }
            | Command::Login { common }
            | Command::Mixed { common, .. }
            | Command::SlowReaders { common, .. }
            | Command::Guard { common, .. } => common.json,
            Command::CentrifugoConnect { centrifugo }
            | Command::CentrifugoPing { centrifugo }
            | Command::CentrifugoIdle { centrifugo } => centrifugo.common.json,
        }
    }
}

/// Flags of the Centrifugo scenarios.
#[derive(clap::Args, Clone)]
pub struct CentrifugoArgs {
    #[command(flatten)]
    pub common: Common,
    /// Centrifugo's client.token.hmac_secret_key, to sign the connection JWTs with.
    #[arg(long, default_value = "switchboard-load-centrifugo-secret")]
    pub hmac_secret: String,
    /// Namespace whose channels clients may subscribe and publish to.
    #[arg(long, default_value = "load")]
    pub namespace: String,
    /// Pause of each session between publishes (centrifugo-ping), ms.
    #[arg(long, default_value_t = 0)]
    pub interval_ms: u64,
}
