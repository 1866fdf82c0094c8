//! The `switchboard` binary: read settings, start logging, build the application, serve.

use switchboard::config::Config;
use switchboard::startup::Application;
use switchboard::telemetry;

#[actix_web::main]
async fn main() -> std::process::ExitCode {
    let config = Config::from_env_and_args();
    telemetry::init(config.log_format);
    let app = match Application::build(config.clone()).await {
        Ok(app) => app,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let address = std::net::SocketAddr::new(config.bind.ip(), app.port());
    tracing::info!(%address, url = %format!("http://{address}"), "listening");
    match app.run_until_stopped().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "server failed");
            std::process::ExitCode::FAILURE
        }
    }
}
