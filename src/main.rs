//! The `switchboard` binary: read settings, start logging, build the application, serve.

use std::process::ExitCode;

use switchboard::config::{Command, Config};
use switchboard::services::ledger_check;
use switchboard::startup::{self, Application};
use switchboard::telemetry;

#[actix_web::main]
async fn main() -> ExitCode {
    let config = Config::from_env_and_args();
    telemetry::init(config.log_format);
    if let Some(Command::CheckLedger { repair, hold_age }) = config.command {
        return check_ledger(&config, repair, hold_age).await;
    }
    let app = match Application::build(config.clone()).await {
        Ok(app) => app,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let address = std::net::SocketAddr::new(config.bind.ip(), app.port());
    tracing::info!(%address, url = %format!("http://{address}"), "listening");
    match app.run_until_stopped().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "server failed");
            ExitCode::FAILURE
        }
    }
}

/// `switchboard check-ledger [--repair] [--hold-age MINUTES]`: the report on stdout; exit 0 when
/// consistent, 1 when damage remains, 2 when storage cannot be read.
async fn check_ledger(config: &Config, repair: bool, hold_age: u32) -> ExitCode {
    let report = match startup::open_store(config).await {
        // Not closed: the embedded store's close folds the write-ahead log into the database,
        // which would hold up a server running on the same file.
        Ok(store) => {
            let options =
                ledger_check::Options { repair, hold_age: time::Duration::minutes(i64::from(hold_age)) };
            ledger_check::check_ledger(store, options).await.map_err(startup::StartError::from)
        }
        Err(e) => Err(e),
    };
    match report {
        Ok(report) => {
            for line in report.lines() {
                println!("{line}");
            }
            if report.damaged() == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
