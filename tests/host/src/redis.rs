//! A throw-away Redis for scale-out: Debian's `redis-server` on a free loopback port, no
//! persistence, in its own process group, killed on drop. A minimal RESP client reads what the
//! plugin stored (key counts for the boundedness checks).

use crate::support::{
    free_port, has_exited, on_path, say, skip_or_fail, stop_group, tail, wait_until, TestDir,
};
use std::fs::File;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Ipv4Addr, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// `redis-server` on `PATH`, found once; `None` after one SKIP line (a failure when `CI` is set).
pub fn redis_bin() -> Option<PathBuf> {
    static BIN: OnceLock<Option<PathBuf>> = OnceLock::new();
    BIN.get_or_init(|| {
        let found = on_path("redis-server");
        if found.is_none() {
            skip_or_fail(
                "SKIP scale-out tier: no redis-server on PATH (Debian: apt-get install redis-server)",
            );
        }
        found
    })
    .clone()
}

/// A RESP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`.
    Simple(String),
    /// `-ERR …`.
    Error(String),
    /// `:n`.
    Int(i64),
    /// `$n …` (`None` for `$-1`).
    Bulk(Option<Vec<u8>>),
    /// `*n …`.
    Array(Vec<Reply>),
}

/// A running `redis-server`.
pub struct Redis {
    child: Child,
    port: u16,
    log: PathBuf,
    dir: TestDir,
}

impl Redis {
    /// Starts one; `None` when there is no `redis-server` (see [`redis_bin`]).
    pub fn start() -> Option<Redis> {
        let bin = redis_bin()?;
        let dir = TestDir::new("redis-");
        let log = dir.path().join("redis.log");
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port();
            let out = File::options()
                .create(true)
                .append(true)
                .open(&log)
                .expect("opening redis.log");
            let err = out.try_clone().expect("cloning the log handle");
            let mut child = Command::new(&bin)
                .args(["--save", "", "--appendonly", "no", "--port"])
                .arg(port.to_string())
                .args(["--bind", "127.0.0.1", "--dir"])
                .arg(dir.path())
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
            let ready = wait_until(Duration::from_secs(15), || has_exited(&child) || ping(port));
            if ready && !has_exited(&child) {
                return Some(Redis {
                    child,
                    port,
                    log,
                    dir,
                });
            }
            stop_group(&mut child, Duration::from_secs(1));
            last = tail(&log, 3000);
        }
        panic!("redis-server did not come up; its log:\n{last}");
    }

    /// The port it listens on (loopback).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The Spin runtime config that serves key-value store `default` from this Redis.
    pub fn runtime_config(&self) -> String {
        format!(
            "[key_value_store.default]\ntype = \"redis\"\nurl = \"{}\"\n",
            self.url()
        )
    }

    /// Runs one command.
    pub fn cmd(&self, args: &[&str]) -> Reply {
        command(self.port, args).unwrap_or_else(|e| panic!("redis {args:?}: {e}"))
    }

    /// Every key (`KEYS *`: fine for a test store of a few hundred keys).
    pub fn keys(&self) -> Vec<String> {
        match self.cmd(&["KEYS", "*"]) {
            Reply::Array(items) => items
                .into_iter()
                .filter_map(|r| match r {
                    Reply::Bulk(Some(b)) => Some(String::from_utf8_lossy(&b).into_owned()),
                    _ => None,
                })
                .collect(),
            other => panic!("KEYS answered {other:?}"),
        }
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        match self.cmd(&["GET", key]) {
            Reply::Bulk(b) => b,
            other => panic!("GET answered {other:?}"),
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        stop_group(&mut self.child, Duration::from_secs(2));
        if std::thread::panicking() {
            say(&format!(
                "redis log: {} (dir {})",
                self.log.display(),
                self.dir.path().display()
            ));
        }
    }
}

fn ping(port: u16) -> bool {
    matches!(command(port, &["PING"]), Ok(Reply::Simple(s)) if s == "PONG")
}

fn command(port: u16, args: &[&str]) -> std::io::Result<Reply> {
    let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    (&stream).write_all(&out)?;
    let mut reader = BufReader::new(stream);
    read_reply(&mut reader, 0)
}

fn read_reply(r: &mut BufReader<TcpStream>, depth: usize) -> std::io::Result<Reply> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    if depth > 4 {
        return Err(bad("nested too deep"));
    }
    let mut line = String::new();
    r.read_line(&mut line)?;
    let line = line.trim_end_matches(['\r', '\n']);
    let (kind, rest) = line.split_at(line.len().min(1));
    let num = || rest.parse::<i64>().map_err(|_| bad("bad number"));
    Ok(match kind {
        "+" => Reply::Simple(rest.to_string()),
        "-" => Reply::Error(rest.to_string()),
        ":" => Reply::Int(num()?),
        "$" => {
            let n = num()?;
            if n < 0 {
                Reply::Bulk(None)
            } else {
                let mut buf = vec![0; usize::try_from(n).map_err(|_| bad("size"))? + 2];
                r.read_exact(&mut buf)?;
                buf.truncate(buf.len() - 2);
                Reply::Bulk(Some(buf))
            }
        }
        "*" => {
            let n = num()?;
            if !(0..=100_000).contains(&n) {
                return Ok(Reply::Array(Vec::new()));
            }
            let mut items = Vec::new();
            for _ in 0..n {
                items.push(read_reply(r, depth + 1)?);
            }
            Reply::Array(items)
        }
        _ => return Err(bad("unknown reply")),
    })
}
