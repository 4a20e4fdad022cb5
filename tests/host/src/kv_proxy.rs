//! Key-value faults for `spin up`: a RESP proxy between Spin's Redis key-value store and a
//! throw-away `redis-server` that counts the store operations the plugin makes (`GET`, `SET`,
//! `DEL`, `EXISTS`, `INCRBY`, `KEYS`/`SCAN`) and fails the i-th one once, the same two ways the
//! wasmtime host's [`Kv`](crate::Kv) does:
//!
//! * store down: the command is not forwarded; Spin gets a Redis error (`error.other`);
//! * timeout: the command **is forwarded and applied**, the answer stalls, then Spin gets a Redis
//!   error instead of the reply — the ambiguous case of a lost reply.
//!
//! Connection set-up commands (`HELLO`, `CLIENT`, `SELECT`, `PING`, …) pass through uncounted.
//! Commands are handled one at a time per connection, in order (a pipelining client still gets
//! its replies in order).

use crate::kv::{KvFaultKind, KvOp};
use crate::redis::Redis;
use crate::support::say;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// A Redis with a fault-injecting proxy in front; both stop on drop.
pub struct FaultProxy {
    shared: Arc<Shared>,
    port: u16,
    // Dropped after the proxy's listener is told to stop.
    _redis: Redis,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    stop: AtomicBool,
}

#[derive(Default)]
struct State {
    /// Store operations so far.
    ops: u64,
    /// Every store operation, in order.
    log: Vec<KvOp>,
    /// The operation index to fail, and how.
    armed: Option<(u64, KvFaultKind)>,
    fired: Vec<(KvOp, KvFaultKind)>,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl FaultProxy {
    /// Starts `redis-server` and the proxy; `None` without `redis-server` (see
    /// [`redis_bin`](crate::redis::redis_bin)).
    pub fn start() -> Option<FaultProxy> {
        let redis = Redis::start()?;
        let listener =
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding the kv fault proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let upstream = redis.port();
        let shared = Arc::new(Shared::default());
        let accept = Arc::clone(&shared);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if accept.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let conn = Arc::clone(&accept);
                std::thread::spawn(move || {
                    if let Err(e) = relay(client, upstream, &conn) {
                        if !conn.stop.load(Ordering::SeqCst) {
                            say(&format!("kv fault proxy: connection ended: {e}"));
                        }
                    }
                });
            }
        });
        Some(FaultProxy {
            shared,
            port,
            _redis: redis,
        })
    }

    /// The Spin runtime config that serves key-value store `default` through the proxy.
    pub fn runtime_config(&self) -> String {
        format!(
            "[key_value_store.default]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:{}\"\n",
            self.port
        )
    }

    /// Store operations so far (the index [`FaultProxy::fail_op`] counts in).
    pub fn ops(&self) -> u64 {
        lock(&self.shared.state).ops
    }

    /// The operations after index `after`, in order.
    pub fn ops_since(&self, after: u64) -> Vec<KvOp> {
        lock(&self.shared.state)
            .log
            .iter()
            .filter(|o| o.index > after)
            .cloned()
            .collect()
    }

    /// Fails the `nth` store operation counted from now (1 = the very next one), once.
    pub fn fail_op(&self, nth: u64, kind: KvFaultKind) {
        let mut st = lock(&self.shared.state);
        st.armed = Some((st.ops + nth, kind));
    }

    /// Disarms the armed fault.
    pub fn clear_faults(&self) {
        lock(&self.shared.state).armed = None;
    }

    /// The operations failed so far, in order, and forgets them.
    pub fn take_fired(&self) -> Vec<(KvOp, KvFaultKind)> {
        std::mem::take(&mut lock(&self.shared.state).fired)
    }

    /// Removes every key (a fresh install), through Redis directly (not counted).
    pub fn wipe(&self) {
        let _ = self._redis.cmd(&["FLUSHALL"]);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port));
    }
}

/// The key-value operation a Redis command is, if it is one.
fn store_op(name: &str) -> Option<&'static str> {
    Some(match name {
        "GET" => "get",
        "SET" => "set",
        "DEL" | "UNLINK" => "delete",
        "EXISTS" => "exists",
        "INCRBY" | "INCR" => "increment",
        "KEYS" | "SCAN" => "list-keys",
        _ => return None,
    })
}

/// Relays one client connection, command by command.
fn relay(client: TcpStream, upstream: u16, shared: &Shared) -> std::io::Result<()> {
    let server = TcpStream::connect((Ipv4Addr::LOCALHOST, upstream))?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let mut from_client = BufReader::new(client.try_clone()?);
    let mut to_client = client;
    let mut from_server = BufReader::new(server.try_clone()?);
    let mut to_server = server;
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        let Some((raw, args)) = read_command(&mut from_client)? else {
            return Ok(());
        };
        let name = args
            .first()
            .map(|a| String::from_utf8_lossy(a).to_ascii_uppercase())
            .unwrap_or_default();
        let fault = store_op(&name).and_then(|op| {
            let mut st = lock(&shared.state);
            st.ops += 1;
            let entry = KvOp {
                index: st.ops,
                op,
                key: args
                    .get(1)
                    .map(|k| String::from_utf8_lossy(k).into_owned())
                    .unwrap_or_default(),
            };
            st.log.push(entry.clone());
            match st.armed {
                Some((at, kind)) if at == entry.index => {
                    st.armed = None;
                    st.fired.push((entry, kind));
                    Some(kind)
                }
                _ => None,
            }
        });
        match fault {
            Some(KvFaultKind::StoreDown) => {
                to_client.write_all(b"-ERR injected fault: store down\r\n")?;
            }
            Some(KvFaultKind::Timeout(stall)) => {
                to_server.write_all(&raw)?;
                let _applied = read_reply(&mut from_server)?;
                std::thread::sleep(stall.min(Duration::from_secs(5)));
                to_client.write_all(b"-ERR injected fault: timeout after applying\r\n")?;
            }
            None => {
                to_server.write_all(&raw)?;
                let reply = read_reply(&mut from_server)?;
                to_client.write_all(&reply)?;
            }
        }
    }
}

fn bad(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string())
}

/// Reads one line including its CRLF; `None` at end of stream.
fn read_line(r: &mut BufReader<TcpStream>, raw: &mut Vec<u8>) -> std::io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    if r.read_until(b'\n', &mut line)? == 0 {
        return Ok(None);
    }
    raw.extend_from_slice(&line);
    while matches!(line.last(), Some(b'\n' | b'\r')) {
        line.pop();
    }
    Ok(Some(line))
}

fn read_exact(
    r: &mut BufReader<TcpStream>,
    n: usize,
    raw: &mut Vec<u8>,
) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; n + 2];
    std::io::Read::read_exact(r, &mut buf)?;
    raw.extend_from_slice(&buf);
    buf.truncate(n);
    Ok(buf)
}

fn number(line: &[u8]) -> std::io::Result<i64> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("a RESP length is not a number"))
}

/// A client command as read: its raw bytes (to forward) and its arguments.
type Command = (Vec<u8>, Vec<Vec<u8>>);

/// Reads one client command (a RESP array of bulk strings, or an inline command). `None` at end
/// of stream.
fn read_command(r: &mut BufReader<TcpStream>) -> std::io::Result<Option<Command>> {
    let mut raw = Vec::new();
    let Some(head) = read_line(r, &mut raw)? else {
        return Ok(None);
    };
    if head.first() != Some(&b'*') {
        let args = head
            .split(|b| *b == b' ')
            .filter(|a| !a.is_empty())
            .map(<[u8]>::to_vec)
            .collect();
        return Ok(Some((raw, args)));
    }
    let n = number(&head[1..])?;
    let mut args = Vec::new();
    for _ in 0..n.max(0) {
        let line = read_line(r, &mut raw)?.ok_or_else(|| bad("command cut short"))?;
        if line.first() != Some(&b'$') {
            return Err(bad("a command argument is not a bulk string"));
        }
        let len = usize::try_from(number(&line[1..])?).map_err(|_| bad("negative length"))?;
        args.push(read_exact(r, len, &mut raw)?);
    }
    Ok(Some((raw, args)))
}

/// Reads one whole reply (RESP2, and the RESP3 types), returning its raw bytes.
fn read_reply(r: &mut BufReader<TcpStream>) -> std::io::Result<Vec<u8>> {
    let mut raw = Vec::new();
    let mut pending: u64 = 1;
    while pending > 0 {
        pending -= 1;
        let line = read_line(r, &mut raw)?.ok_or_else(|| bad("reply cut short"))?;
        let (kind, rest) = line.split_first().ok_or_else(|| bad("empty reply line"))?;
        match kind {
            b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => {}
            b'$' | b'!' | b'=' => {
                let len = number(rest)?;
                if len >= 0 {
                    read_exact(r, len as usize, &mut raw)?;
                }
            }
            b'*' | b'~' | b'>' => {
                let n = number(rest)?;
                pending += n.max(0) as u64;
            }
            b'%' | b'|' => {
                let n = number(rest)?;
                pending += 2 * n.max(0) as u64;
                if *kind == b'|' {
                    // An attribute precedes the actual reply.
                    pending += 1;
                }
            }
            _ => return Err(bad("unknown RESP reply type")),
        }
    }
    Ok(raw)
}
