//! A raw TCP "HTTP server" for what wiremock cannot do: stall or cut a body half-way, and
//! notice when the client goes away.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// What the raw server does after the response head.
#[derive(Clone)]
pub enum Script {
    /// Writes these body parts, then keeps the connection open without writing (a stall).
    ThenStall(Vec<String>),
    /// Writes these body parts, then closes the connection (a cut).
    ThenClose(Vec<String>),
    /// Writes `part` every `every` until a write fails; reports on the channel when it does.
    Forever { part: String, every: Duration },
}

/// A one-connection-at-a-time raw server.
pub struct RawServer {
    pub addr: SocketAddr,
    /// Receives a message when a `Forever` script notices the client closed the connection.
    pub closed: mpsc::UnboundedReceiver<()>,
}

impl RawServer {
    pub async fn start(content_type: &'static str, script: Script) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                let script = script.clone();
                let tx = tx.clone();
                tokio::spawn(serve(socket, content_type, script, tx));
            }
        });
        Self { addr, closed: rx }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

async fn serve(
    mut socket: TcpStream,
    content_type: &'static str,
    script: Script,
    closed: mpsc::UnboundedSender<()>,
) {
    // Read the request head and body (Content-Length) so the client is not reset early.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = socket.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = socket.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    return;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            break;
        }
    }
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    );
    if socket.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let write_chunk = |part: &str| {
        let mut out = format!("{:x}\r\n", part.len()).into_bytes();
        out.extend_from_slice(part.as_bytes());
        out.extend_from_slice(b"\r\n");
        out
    };
    match script {
        Script::ThenStall(parts) => {
            for p in parts {
                let _ = socket.write_all(&write_chunk(&p)).await;
            }
            let _ = socket.flush().await;
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        Script::ThenClose(parts) => {
            for p in parts {
                let _ = socket.write_all(&write_chunk(&p)).await;
            }
            let _ = socket.flush().await;
            // Dropping the socket without the terminating 0-length chunk cuts the body.
        }
        Script::Forever { part, every } => loop {
            if socket.write_all(&write_chunk(&part)).await.is_err() || socket.flush().await.is_err()
            {
                let _ = closed.send(());
                return;
            }
            tokio::time::sleep(every).await;
        },
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A port on 127.0.0.1 with nothing listening (bound, then released).
pub fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}
