//! `switchboard-echo`: a bare tokio-tungstenite WebSocket echo server, the ceiling against which
//! Switchboard's ping and idle figures are read (load/compare.sh). No auth, no JSON, any path:
//! every text frame is sent straight back; pings are answered by tungstenite itself.

use std::time::Duration;

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_tungstenite::accept_async_with_config;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// A WebSocket server that echoes every text frame.
#[derive(Parser)]
#[command(name = "switchboard-echo", about)]
struct Args {
    /// Address to listen on (keep it on loopback).
    #[arg(long, default_value = "127.0.0.1:18500")]
    bind: String,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let listener = match listen(&args.bind) {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("switchboard-echo: cannot listen on {}: {error}", args.bind);
            std::process::exit(2);
        }
    };
    eprintln!("switchboard-echo listening on {}", args.bind);
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(echo(stream));
            }
            Err(error) => {
                // Out of file descriptors, most likely: wait for some to close rather than spin.
                eprintln!("switchboard-echo: accept failed: {error}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Listens on `address` with an accept queue of 4,096 (tokio's `bind` asks for 1,024): a burst of
/// connects that overflows the queue costs each dropped client a one-second SYN retry, which
/// showed as a one-second p99 on session opens.
fn listen(address: &str) -> std::io::Result<TcpListener> {
    let address: std::net::SocketAddr =
        address.parse().map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidInput, error))?;
    let socket = if address.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(4096)
}

/// Serves one connection until the client closes it.
async fn echo(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    // Small buffers, as in Switchboard's own sessions, so memory per idle connection compares
    // like with like: tungstenite's default read buffer is 128 KiB.
    let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
    let Ok(mut socket) = accept_async_with_config(stream, Some(config)).await else { return };
    while let Some(Ok(message)) = socket.next().await {
        if let Message::Text(text) = message
            && socket.send(Message::Text(text)).await.is_err()
        {
            break;
        }
    }
}
