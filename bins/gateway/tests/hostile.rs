//! Hostile clients: idle connections, slow-header clients and an unsigned flood at once do
//! not take the gateway down. A legitimate agent keeps working (slower, never refused),
//! the admin listener keeps answering, the connection cap bites and says so, and once the
//! attackers leave the gateway is ready again without a restart.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use support::{ADMIN_TOKEN, Stack, python_json};

const IDLE: usize = 2000;
const SLOWLORIS: usize = 300;

#[test]
fn floods_do_not_take_the_gateway_down() {
    // The test process holds thousands of sockets too.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let stack = Stack::start_with(|c| {
        *c = c.replace(
            "[limits]\n",
            "[limits]\nmax_agent_connections = 400\nmax_admin_connections = 16\nheader_read_timeout_ms = 2000\nbody_idle_timeout_ms = 2000\n",
        );
    });
    let gw = &stack.gateway;
    let grant = gw.request_reader("agent:x", "t", &[]);
    let env = gw.agent_env(ADMIN_TOKEN, grant["id"].as_str().unwrap());
    let addr: SocketAddr = format!("127.0.0.1:{}", gw.agent_port).parse().unwrap();
    let stop = Arc::new(AtomicBool::new(false));

    // 2,000 connections that never say anything.
    let idle = std::thread::spawn(move || {
        let mut held = Vec::new();
        let start = Instant::now();
        // Bounded: once the kernel's backlog is full, connects wait for their timeout.
        for _ in 0..IDLE {
            if start.elapsed() > Duration::from_secs(10) {
                break;
            }
            if let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
                held.push(s);
            }
        }
        held
    });
    // 300 that send a request head one byte at a time.
    let slow_stop = stop.clone();
    let slowloris = std::thread::spawn(move || {
        let mut conns: Vec<TcpStream> = (0..SLOWLORIS)
            .filter_map(|_| TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok())
            .collect();
        for c in &mut conns {
            let _ = c.write_all(b"GET /reports/q1/summary.txt HTTP/1.1\r\nHost: x\r\n");
        }
        let mut open_after = 0;
        let mut checked = false;
        let start = Instant::now();
        while !slow_stop.load(Ordering::Relaxed) {
            for c in &mut conns {
                let _ = c.write_all(b"X");
            }
            std::thread::sleep(Duration::from_millis(300));
            if start.elapsed() > Duration::from_secs(6) && !checked {
                // Still open after three header timeouts? A closed one reads EOF (or an
                // error, or the gateway's answer); an open one times out.
                checked = true;
                let mut buf = [0u8; 512];
                open_after = 0;
                for c in &mut conns {
                    let _ = c.set_read_timeout(Some(Duration::from_millis(5)));
                    if matches!(c.read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut)
                    {
                        open_after += 1;
                    }
                }
            }
        }
        open_after
    });
    // Two connections flooding unsigned requests.
    let flooded = Arc::new(AtomicU64::new(0));
    let floods: Vec<_> = (0..2)
        .map(|_| {
            let (stop, flooded) = (stop.clone(), flooded.clone());
            std::thread::spawn(move || {
                let req = b"GET /reports/q1/summary.txt HTTP/1.1\r\nHost: x\r\n\r\n";
                let mut buf = vec![0u8; 65536];
                while !stop.load(Ordering::Relaxed) {
                    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
                    else {
                        continue;
                    };
                    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                    for _ in 0..100 {
                        if s.write_all(req).is_err() || s.read(&mut buf).unwrap_or(0) == 0 {
                            break;
                        }
                        flooded.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();

    // Meanwhile: a legitimate agent, and the operator.
    std::thread::sleep(Duration::from_millis(1500));
    let agent = python_json(
        r#"
import boto3, json, time
from botocore.config import Config
s3 = boto3.client("s3", config=Config(retries={"max_attempts": 1}, read_timeout=120, connect_timeout=60))
times, ok = [], 0
for i in range(20):
    t = time.monotonic()
    body = s3.get_object(Bucket="reports", Key="q1/summary.txt")["Body"].read()
    times.append(time.monotonic() - t)
    ok += body == b"q1 numbers"
times.sort()
print(json.dumps({"ok": ok, "p50_ms": times[9] * 1000, "p99_ms": times[-1] * 1000}))
"#,
        &env,
        gw,
    );
    let (ready, _) = gw.admin_get("/readyz");
    stop.store(true, Ordering::Relaxed);
    let open_after = slowloris.join().unwrap();
    for f in floods {
        f.join().unwrap();
    }
    let held = idle.join().unwrap();
    eprintln!(
        "idle connections made: {}, unsigned requests answered: {}, agent: {agent}",
        held.len(),
        flooded.load(Ordering::Relaxed)
    );
    assert_eq!(agent["ok"], 20, "every agent request succeeded: {agent}");
    assert_eq!(ready, 200, "the admin listener answers during the flood");
    assert_eq!(
        open_after, 0,
        "slow-header clients are closed after the header timeout"
    );
    assert!(flooded.load(Ordering::Relaxed) > 100);
    drop(held);

    // The cap bit, and said so.
    assert!(gw.metric(r#"custody_connection_limit_waits_total{listener="agent"}"#) > 0);
    assert!(gw.server_log().contains("connection limit reached"));
    // Released: ready again without a restart, and the agent works.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(gw.admin_get("/readyz").0, 200);
    let again = python_json(
        r#"
import boto3, json
print(json.dumps(boto3.client("s3").get_object(Bucket="reports", Key="q1/summary.txt")["Body"].read().decode()))
"#,
        &env,
        gw,
    );
    assert_eq!(again, "q1 numbers");
}

#[test]
fn a_declared_body_that_never_comes_is_not_held_open() {
    let stack = Stack::start_with(|c| {
        *c = c.replace("[limits]\n", "[limits]\nbody_idle_timeout_ms = 1000\n");
    });
    let gw = &stack.gateway;
    let grant = gw.request(
        ADMIN_TOKEN,
        &[
            "--identity",
            "agent:x",
            "--task",
            "t",
            "--intent",
            "i",
            "--role",
            "writer",
            "--allow",
            "s3:PutObject",
            "--resource",
            "arn:aws:s3:::reports/*",
        ],
    );
    let id = grant["id"].as_str().unwrap();
    assert!(
        gw.cli(support::BOB_TOKEN, &["grant", "approve", id])
            .success()
    );
    let env = gw.agent_env(ADMIN_TOKEN, id);
    // A correctly signed upload (UNSIGNED-PAYLOAD, so the body streams) that declares
    // 10 GB and sends three bytes.
    let v = python_json(
        r#"
import os, json, socket, time, botocore.auth, botocore.awsrequest, botocore.credentials
ep = os.environ["AWS_ENDPOINT_URL"]
creds = botocore.credentials.Credentials(os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"])
req = botocore.awsrequest.AWSRequest(method="PUT", url=ep + "/reports/big.bin",
    headers={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"})
auth = botocore.auth.SigV4Auth(creds, "s3", "us-east-1")
auth.payload = lambda r: "UNSIGNED-PAYLOAD"
auth.add_auth(req)
host, port = ep.split("//")[1].split(":")
s = socket.create_connection((host, int(port)))
s.settimeout(30)
head = f"PUT /reports/big.bin HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: 10000000000\r\n"
for k, v in req.headers.items():
    head += f"{k}: {v}\r\n"
start = time.monotonic()
s.sendall(head.encode() + b"\r\nabc")
answer = b""
try:
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        answer += chunk
except socket.timeout:
    pass
print(json.dumps({"answer": answer.decode(errors="replace")[:3000], "seconds": time.monotonic() - start}))
"#,
        &env,
        gw,
    );
    let answer = v["answer"].as_str().unwrap();
    // Not held open until the client gives up (30 s): answered, with the reason.
    assert!(
        answer.starts_with("HTTP/1.1 4") || answer.starts_with("HTTP/1.1 5"),
        "{v}"
    );
    assert!(v["seconds"].as_f64().unwrap() < 25.0, "{v}");
    assert!(answer.contains("stalled"), "{v}");
}
