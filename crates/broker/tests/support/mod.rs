//! A recording loopback HTTP relay in front of moto.
//!
//! Moto ignores some AssumeRole parameters (session policy, SourceIdentity, tags), so the
//! tests assert them on the wire: the relay keeps every request exactly as the SDK sent it
//! (head and body bytes), then forwards it to moto or answers it from a script (to inject
//! throttling, delays or errors moto cannot produce).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    dead_code,
    reason = "tests fail loudly"
)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request as it arrived on the wire.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Request line and headers, verbatim.
    pub head: String,
    /// Body bytes, verbatim.
    pub body: Vec<u8>,
}

impl Recorded {
    /// The body decoded as an `application/x-www-form-urlencoded` query (STS's protocol).
    pub fn form(&self) -> BTreeMap<String, String> {
        let body = String::from_utf8(self.body.clone()).expect("utf-8 body");
        body.split('&')
            .filter(|p| !p.is_empty())
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (form_decode(k), form_decode(v))
            })
            .collect()
    }

    /// Whether this is an AssumeRole call.
    pub fn is_assume_role(&self) -> bool {
        self.form().get("Action").map(String::as_str) == Some("AssumeRole")
    }

    /// A header's value (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

/// What the relay does with a request.
#[derive(Debug, Clone)]
pub enum Action {
    /// Forward to moto.
    Forward,
    /// Wait, then forward to moto.
    ForwardAfter(Duration),
    /// Answer with this status and XML body without asking moto.
    Respond(u16, String),
}

/// Decides per request (given the request and its 0-based index among all requests).
pub type Script = Arc<dyn Fn(&Recorded, usize) -> Action + Send + Sync>;

/// A running relay; stops when dropped.
pub struct Relay {
    port: u16,
    recorded: Arc<Mutex<Vec<Recorded>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Relay {
    /// A relay forwarding everything to `127.0.0.1:upstream_port`.
    pub async fn start(upstream_port: u16) -> Relay {
        Self::scripted(upstream_port, Arc::new(|_, _| Action::Forward)).await
    }

    /// A relay following `script`.
    pub async fn scripted(upstream_port: u16, script: Script) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let rec = Arc::clone(&recorded);
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let rec = Arc::clone(&rec);
                let script = Arc::clone(&script);
                tokio::spawn(async move {
                    let _ = serve(client, upstream_port, rec, script).await;
                });
            }
        });
        Relay {
            port,
            recorded,
            task,
        }
    }

    /// The relay's endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.recorded.lock().unwrap().clone()
    }

    /// The AssumeRole calls so far, as decoded form parameters.
    pub fn assume_role_calls(&self) -> Vec<BTreeMap<String, String>> {
        self.requests()
            .iter()
            .filter(|r| r.is_assume_role())
            .map(Recorded::form)
            .collect()
    }
}

/// An STS query-protocol error body.
pub fn sts_error(code: &str, message: &str) -> String {
    format!(
        "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>relay-1</RequestId></ErrorResponse>"
    )
}

/// Serve one client connection: one request, one response, then close.
async fn serve(
    mut client: TcpStream,
    upstream_port: u16,
    recorded: Arc<Mutex<Vec<Recorded>>>,
    script: Script,
) -> std::io::Result<()> {
    let Some((head, body)) = read_message(&mut client, true).await? else {
        return Ok(());
    };
    let request = Recorded {
        head: String::from_utf8_lossy(&head).into_owned(),
        body,
    };
    let index = {
        let mut rec = recorded.lock().unwrap();
        rec.push(request.clone());
        rec.len() - 1
    };
    let response = match script(&request, index) {
        Action::Respond(status, body) => format!(
            "HTTP/1.1 {status} Scripted\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
        action => {
            if let Action::ForwardAfter(delay) = action {
                tokio::time::sleep(delay).await;
            }
            let mut upstream = TcpStream::connect(("127.0.0.1", upstream_port)).await?;
            upstream.write_all(&head).await?;
            upstream.write_all(&request.body).await?;
            let Some((head, body)) = read_message(&mut upstream, false).await? else {
                return Ok(());
            };
            // One exchange per connection keeps the relay simple: tell the client so.
            let head = String::from_utf8_lossy(&head);
            let mut out = String::new();
            for (i, line) in head.split("\r\n").enumerate() {
                if i > 0 && line.to_ascii_lowercase().starts_with("connection:") {
                    continue;
                }
                if !line.is_empty() {
                    out.push_str(line);
                    out.push_str("\r\n");
                }
            }
            out.push_str("Connection: close\r\n\r\n");
            let mut bytes = out.into_bytes();
            bytes.extend_from_slice(&body);
            bytes
        }
    };
    client.write_all(&response).await?;
    client.shutdown().await?;
    Ok(())
}

/// Read one HTTP/1.x message: head (through the blank line) and body (by Content-Length,
/// or to end of stream for a response without one).
async fn read_message(
    stream: &mut (impl AsyncRead + Unpin),
    is_request: bool,
) -> std::io::Result<Option<(Vec<u8>, Vec<u8>)>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = buf[..head_end].to_vec();
    let mut body = buf[head_end..].to_vec();
    let head_text = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let length = head_text
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    match length {
        Some(len) => {
            while body.len() < len {
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        }
        None if is_request => {}
        None => {
            stream.read_to_end(&mut body).await?;
        }
    }
    Ok(Some((head, body)))
}

fn form_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
}
