//! `idle` and `ramp`: many registered clients opened from a few threads
//! ([`open_many`]), of which only the sockets are kept.

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::args::{CLIENTS_PER_USER, Hold};
use crate::clock::{now_ns, sleep_until_ns};
use crate::conn::open_client;
use crate::procfs::{kernel_kib, open_files_limit};
use crate::stats::{RunResult, quantile_ms};
use crate::target::Target;

/// How long each step of one opened client took (ns), and when it was done.
pub(crate) struct Opening {
    pub(crate) total: u64,
    pub(crate) session_id: u64,
    pub(crate) handshake: u64,
    pub(crate) register: u64,
    pub(crate) done_at: u64,
}

/// What [`open_many`] got: the held sockets, the timings, the errors.
#[derive(Default)]
pub(crate) struct OpenedMany {
    pub(crate) sockets: Vec<TcpStream>,
    pub(crate) timings: Vec<Opening>,
    pub(crate) errors: BTreeMap<String, u64>,
}

/// Client `j` of idle and ramp: user, clientName.
pub(crate) fn hold_client(j: usize) -> (String, String) {
    (format!("u{}", j / CLIENTS_PER_USER), format!("c{j}"))
}

/// The tokens of every user the clients belong to, fetched before any
/// measurement (argon2 is slow on purpose, and a login is per user).
pub(crate) fn fetch_tokens(target: &Target, hold: &Hold) -> Result<(), String> {
    let users = hold.clients.div_ceil(CLIENTS_PER_USER);
    let next = AtomicU64::new(0);
    thread::scope(|scope| {
        let handles: Vec<_> = (0..hold.threads.min(users).max(1))
            .map(|_| {
                scope.spawn(|| -> Result<(), String> {
                    for _ in 0..users {
                        let u = next.fetch_add(1, Ordering::Relaxed) as usize;
                        if u >= users {
                            break;
                        }
                        target.token(&format!("u{u}"))?;
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().unwrap_or(Err("a login thread panicked".into())))
    })
}

/// Opens and registers `hold.clients` clients from `hold.threads` threads;
/// keeps only each one's socket (no WebSocket state, nobody reads it).
/// Stops at the first error or after `limit`.
pub(crate) fn open_many(target: &Target, hold: &Hold, first: usize, limit: Duration) -> OpenedMany {
    let next = AtomicU64::new(first as u64);
    let failed = AtomicBool::new(false);
    let deadline = Instant::now() + limit;
    let mut all = OpenedMany::default();
    thread::scope(|scope| {
        let handles: Vec<_> = (0..hold.threads.max(1))
            .map(|_| {
                thread::Builder::new()
                    .stack_size(256 * 1024)
                    .spawn_scoped(scope, || {
                        let mut mine = OpenedMany::default();
                        for _ in 0..hold.clients {
                            let j = next.fetch_add(1, Ordering::Relaxed) as usize;
                            if j >= hold.clients || failed.load(Ordering::Relaxed) {
                                break;
                            }
                            if Instant::now() >= deadline {
                                *mine
                                    .errors
                                    .entry("clients not open in time".into())
                                    .or_default() += 1;
                                failed.store(true, Ordering::Relaxed);
                                break;
                            }
                            let (user, client) = hold_client(j);
                            let opened = open_client(target, &user, &client).and_then(|o| {
                                let tcp =
                                    o.ws.get_ref()
                                        .tcp()
                                        .try_clone()
                                        .map_err(|e| format!("dup: {e}"))?;
                                Ok((o, tcp))
                            });
                            match opened {
                                Ok((o, tcp)) => {
                                    let ns = |d: Duration| d.as_nanos() as u64;
                                    mine.timings.push(Opening {
                                        total: ns(o.token
                                            + o.session_id
                                            + o.handshake
                                            + o.register),
                                        session_id: ns(o.session_id),
                                        handshake: ns(o.handshake),
                                        register: ns(o.register),
                                        done_at: now_ns(),
                                    });
                                    mine.sockets.push(tcp);
                                }
                                Err(e) => {
                                    *mine.errors.entry(e).or_default() += 1;
                                    failed.store(true, Ordering::Relaxed);
                                    break;
                                }
                            }
                        }
                        mine
                    })
            })
            .collect();
        for h in handles {
            match h {
                Ok(h) => {
                    let mine = h.join().unwrap_or_default();
                    all.sockets.extend(mine.sockets);
                    all.timings.extend(mine.timings);
                    for (k, n) in mine.errors {
                        *all.errors.entry(k).or_default() += n;
                    }
                }
                Err(e) => {
                    *all.errors
                        .entry(format!("cannot start a thread: {e}"))
                        .or_default() += 1;
                }
            }
        }
    });
    all
}

/// The server's thread count (/proc/PID/status).
pub(crate) fn server_threads(target: &Target) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", target.pid?)).ok()?;
    let line = status.lines().find(|l| l.starts_with("Threads:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Closes the held sockets (no close frame: the server sees the peer go)
/// and waits, at most 30 s, until the server's threads are back to
/// `threads_before`, so that the next run starts on a quiet server.
pub(crate) fn release(target: &Target, sockets: Vec<TcpStream>, threads_before: Option<f64>) {
    for s in &sockets {
        let _ = s.shutdown(std::net::Shutdown::Both);
    }
    drop(sockets);
    let Some(before) = threads_before else {
        return;
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline && server_threads(target).is_some_and(|t| t > before + 2.0) {
        thread::sleep(Duration::from_millis(50));
    }
}

/// K registered connections doing nothing: the server's RSS before and
/// after they are opened, and its CPU while they sit idle.
pub(crate) fn run_idle(target: &Target, hold: &Hold) -> Result<RunResult, String> {
    let mut hold = hold.clone();
    fetch_tokens(target, &hold)?;
    thread::sleep(Duration::from_millis(500));
    let threads0 = server_threads(target);
    let rss0 = target.server_rss_kib();
    let kernel0 = kernel_kib();
    let fds = || {
        let pid = target.pid?;
        Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
    };
    let fds0 = fds();
    let t0 = now_ns();
    // A first batch shows how many files the server keeps per connection;
    // K is capped so that neither process runs out of them (ulimit -n).
    let probe = hold.clients.min(100);
    let mut opened = open_many(
        target,
        &Hold {
            clients: probe,
            ..hold.clone()
        },
        0,
        Duration::from_secs(60),
    );
    let server_fds_per_conn = match (fds0, fds()) {
        (Some(a), Some(b)) if probe > 0 => (b.saturating_sub(a) as f64 / probe as f64).ceil(),
        _ => f64::NAN,
    };
    // The generator: one socket per connection, one HTTP socket per thread.
    let mut room = open_files_limit("self").map(|l| l.saturating_sub(hold.threads + 64));
    if let (Some(pid), Some(before), true) = (target.pid, fds0, server_fds_per_conn >= 1.0) {
        let server_room = open_files_limit(&pid.to_string())
            .map(|l| (l.saturating_sub(before + 64) as f64 / server_fds_per_conn) as usize);
        room = match (room, server_room) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    if let Some(room) = room
        && hold.clients > room
    {
        eprintln!(
            "edgeim-bench: open files limit (ulimit -n; the server keeps {server_fds_per_conn} \
             per connection): idle capped at {room} connections"
        );
        hold.clients = room;
    }
    if opened.errors.is_empty() && hold.clients > probe {
        let rest = open_many(target, &hold, probe, Duration::from_secs(600));
        opened.sockets.extend(rest.sockets);
        for (k, n) in rest.errors {
            *opened.errors.entry(k).or_default() += n;
        }
    }
    let open_secs = (now_ns() - t0) as f64 / 1e9;
    let n = opened.sockets.len();
    let mut errors = opened.errors;
    // Let the server settle after the last register, then measure.
    thread::sleep(Duration::from_millis(1000));
    let rss1 = target.server_rss_kib();
    let threads1 = server_threads(target);
    let cpu0 = target.cpu();
    let t1 = now_ns();
    sleep_until_ns(t1 + (hold.seconds * 1e9) as u64);
    let cpu1 = target.cpu();
    let secs = (now_ns() - t1) as f64 / 1e9;
    let rss2 = target.server_rss_kib();
    let kernel2 = kernel_kib();
    // Which connections did the server close while they sat idle?
    let mut closed = 0u64;
    for s in &opened.sockets {
        let mut b = [0u8; 1];
        let gone = match s.set_nonblocking(true).and_then(|()| s.peek(&mut b)) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
        };
        closed += u64::from(gone);
    }
    if closed > 0 {
        *errors
            .entry("connections closed while idle".into())
            .or_default() += closed;
    }
    release(target, opened.sockets, threads0);
    let diff = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => b - a,
        _ => f64::NAN,
    };
    let per_conn = |d: f64| if n > 0 { d / n as f64 } else { f64::NAN };
    // Machine-wide: the stacks are the server's (the generator's threads
    // do not grow with K), the slab holds both ends of every socket.
    let kernel = |pick: fn((f64, f64)) -> f64| per_conn(diff(kernel0.map(pick), kernel2.map(pick)));
    let figures = vec![
        ("held", n as f64),
        ("server_rss_kib_per_conn", per_conn(diff(rss0, rss2))),
        ("kernel_stack_kib_per_conn", kernel(|k| k.0)),
        ("kernel_slab_kib_per_conn", kernel(|k| k.1)),
        (
            "server_cpu_idle_pct",
            diff(cpu0.server, cpu1.server) * 100.0 / secs,
        ),
        (
            "client_cpu_idle_pct",
            diff(cpu0.client, cpu1.client) * 100.0 / secs,
        ),
        ("server_rss_before_kib", rss0.unwrap_or(f64::NAN)),
        ("server_rss_open_kib", rss1.unwrap_or(f64::NAN)),
        ("server_rss_end_kib", rss2.unwrap_or(f64::NAN)),
        (
            "server_threads_per_conn",
            per_conn(diff(threads0, threads1)),
        ),
        ("server_fds_per_conn", server_fds_per_conn),
        ("opened_per_s", n as f64 / open_secs),
    ];
    Ok(RunResult {
        figures,
        errors,
        delivered: n as u64,
    })
}

/// How many clients per second get from session id to registered, with a
/// token per user already in hand.
pub(crate) fn run_ramp(target: &Target, hold: &Hold) -> Result<RunResult, String> {
    fetch_tokens(target, hold)?;
    let threads0 = server_threads(target);
    let cpu0 = target.cpu();
    let t0 = now_ns();
    let opened = open_many(target, hold, 0, Duration::from_secs(300));
    let cpu1 = target.cpu();
    let n = opened.timings.len();
    let end = opened.timings.iter().map(|o| o.done_at).max().unwrap_or(t0);
    let secs = (end.saturating_sub(t0)) as f64 / 1e9;
    release(target, opened.sockets, threads0);
    let expected = hold.clients as u64;
    let sorted = |f: fn(&Opening) -> u64| {
        let mut v: Vec<u64> = opened.timings.iter().map(f).collect();
        v.sort_unstable();
        v
    };
    let total = sorted(|o| o.total);
    let diff = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => b - a,
        _ => f64::NAN,
    };
    let server_cpu = diff(cpu0.server, cpu1.server);
    let figures = vec![
        ("clients_per_s", n as f64 / secs),
        ("open_p50_ms", quantile_ms(&total, expected, 0.50)),
        ("open_p99_ms", quantile_ms(&total, expected, 0.99)),
        (
            "session_id_p50_ms",
            quantile_ms(&sorted(|o| o.session_id), expected, 0.50),
        ),
        (
            "handshake_p50_ms",
            quantile_ms(&sorted(|o| o.handshake), expected, 0.50),
        ),
        (
            "register_p50_ms",
            quantile_ms(&sorted(|o| o.register), expected, 0.50),
        ),
        (
            "server_cpu_us_per_client",
            server_cpu * 1e6 / n.max(1) as f64,
        ),
        ("server_cpu_pct", server_cpu * 100.0 / secs),
        (
            "client_cpu_pct",
            diff(cpu0.client, cpu1.client) * 100.0 / secs,
        ),
        ("clients", n as f64),
    ];
    Ok(RunResult {
        figures,
        errors: opened.errors,
        delivered: n as u64,
    })
}
