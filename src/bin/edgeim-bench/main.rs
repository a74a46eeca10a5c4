//! `edgeim-bench`: the load generator behind `docs/BENCHMARKS.md`.
//!
//! It speaks the protocol like any client: HTTP app login → token → one-time
//! session id → WebSocket register → texts (2001), answered by the server
//! with 9001 and acknowledged by the receivers with 9101. Every simulated
//! client has its own connection and blocking thread (a `rate` sender has
//! two: a writer that sends on schedule, a reader for the answers). It
//! talks to loopback only, and every loop is bounded by a count and a
//! deadline.
//!
//! With `--spawn PATH` it starts its own server: a fresh temp data dir,
//! users `u0..uN` sharing one password, a config with port 0 and the
//! per-connection limits raised so that load is not refused. It reads the
//! server's CPU time and RSS from `/proc/PID` at the start and the end of
//! each measured window, and stops the server (SIGTERM) at the end.
//!
//! Scenarios are variants of [`Scenario`]; `pairs`, `rate` and `fanout`
//! are pacings of the same flow ([`run_flow`](flow::run_flow): fanout is
//! one sender whose texts each go to R receivers). `idle`
//! ([`run_idle`](hold::run_idle)) and `ramp` ([`run_ramp`](hold::run_ramp))
//! open many registered clients from a few threads
//! ([`open_many`](hold::open_many), over the timed login path
//! [`open_client`](conn::open_client)) and keep only their sockets. Each
//! `run_*` returns a [`RunResult`].
//!
//! Output: one JSON line per scenario on stdout (medians over `--runs`),
//! a table on stderr. Exit status 0 only if every run delivered messages
//! and saw no error (a non-200 HTTP answer or 9001, a close by the server,
//! an I/O error, a duplicate or reordered delivery); 2 for usage errors.
//!
//! The files: [`args`] (the command line), [`target`] (the server under
//! test), [`spawn`] (`--spawn`), [`conn`] (one registered connection and
//! its frames), [`flow`] and [`sender`] (pairs, rate, fanout), [`hold`]
//! (idle, ramp), [`probe`] (attacks while a polite pair texts),
//! [`stats`], [`report`](mod@report) (the output), [`procfs`] and
//! [`clock`].

mod args;
mod attacks;
mod clock;
mod compare;
mod conn;
mod cost;
mod endpoint;
mod flow;
mod hold;
mod mosquitto;
mod mqtt;
mod mqtt_conn;
mod probe;
mod procfs;
mod report;
mod sender;
mod spawn;
mod stats;
mod target;

use std::path::Path;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Duration;

use args::{Options, Scenario, parse_args};
use clock::epoch;
use mosquitto::Broker;
use procfs::clock_ticks;
use report::{report, report_probe};
use spawn::Spawned;
use stats::RunResult;
use target::{MqttTarget, Server, Target};

const USAGE: &str = "\
usage: edgeim-bench [--spawn PATH [--spawn MOSQUITTO] | --server URL --ws URL [--pid PID]
                     | --mqtt HOST:PORT [--pid PID]] [--password PW] [--runs K]
                    SCENARIO [options]

  --spawn PATH     start PATH (an edgeim binary) on a temp data dir with users
                   u0..uN and raised limits (probe: the defaults); stop it
                   at the end. A PATH whose file name says mosquitto starts
                   that broker instead, on a free loopback port with a config
                   of its own (persistence off). Given twice, one of each:
                   the runs alternate edgeim, mosquitto, edgeim, ... and a
                   last table gives both medians and the ratio per figure
  --server URL     an already running server (default http://127.0.0.1:8080);
                   it needs users u0..uN with --password and raised rate limits
  --ws URL         its WebSocket URL (default ws://127.0.0.1:8081/websocket)
  --mqtt HOST:PORT an already running MQTT broker (loopback) instead of edgeim
                   (pairs, rate, fanout only)
  --pid PID        the running server's pid, to read its CPU, context
                   switches, disk writes and RSS
  --password PW    the users' password (default bench-password)
  --runs K         repeat the scenario K times, report medians (default 1)

scenarios:
  pairs [--pairs 50] [--seconds 10] [--window 20] [--size 120]
        N sender->receiver pairs; each sender keeps at most WINDOW texts
        waiting for their 9001; receivers answer each text with 9101
  rate  [--rate 10000] [--seconds 10] [--pairs 50] [--size 120]
        a fixed total rate spread over N senders; latency from the
        scheduled send time (no coordinated omission)
  fanout [--recipients 100] [--seconds 5] [--window 5] [--size 120]
        one sender, each text to R online recipients (to = u1,...,uR); a
        text holds its place in the window until its 9001 and R receipts
  pairs, rate, fanout: [--drain 5] seconds to wait for outstanding answers;
        [--batched] write up to a window of texts, then flush once, instead
        of one frame per write call (each text, each 9101 on its own), the
        default, as browsers, phones and the terminal client send.
        Per delivered text: server CPU, context switches, disk bytes and
        (edgeim) store commits and fsyncs. Over MQTT (QoS 1): a sender
        publishes to bench/u{its receiver}, the broker's PUBACK stands for
        the 9001, the receiver's PUBACK for the 9101
  idle  [--connections 10000] [--seconds 5] [--threads 8]
        K registered connections that do nothing; server RSS per
        connection and CPU while idle (the sockets are only held)
  ramp  [--clients 2000] [--threads 8]
        how fast clients get session id -> handshake -> register (one
        token per user, fetched before the clock starts)
  probe [--seconds 3]
        a polite pair (u0 texts u1 every 10 ms, u1 answers each with 9101)
        through a baseline window, then 13 attacks of SECONDS each: slow,
        silent and oversized HTTP, a pipelining non-reader, trickled
        handshakes, a slow WebSocket reader, absurd Content-Lengths; floods
        of empty texts, pings, garbage, wrong passwords, session ids. A
        spawned server keeps the default limits. Per attack: the pair's
        round trip (send -> receipt) against the targets (quiet: p50 < 10
        ms and p99 < 100 ms; floods: p50 < 25 ms), texts sent, acknowledged
        and lost, /healthz after it. Exits 1 only if an attack broke the
        server (not alive, or an acknowledged text lost): missed latency
        targets are reported, not failed (shared, noisy machines miss them)

CI smoke run: edgeim-bench --spawn target/debug/edgeim pairs --pairs 2 --seconds 1
";

/// The longest a worker blocks in a read before it looks at the clock
/// again. Answers wake it sooner; this only bounds how late it notices the
/// end of a run, and each wake-up costs the generator CPU that the server
/// would use (150 threads at 20 ms cost 7% of a core here).
const POLL: Duration = Duration::from_millis(100);

fn main() -> ExitCode {
    epoch();
    let opts = match parse_args() {
        Ok(Some(o)) => o,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("edgeim-bench: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&opts) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("edgeim-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One server under test, and what started it (nothing: it was running).
enum Side {
    Edgeim {
        target: Target,
        spawned: Option<Spawned>,
    },
    Mqtt {
        target: MqttTarget,
        broker: Option<Broker>,
    },
}

impl Side {
    fn server(&self) -> Server<'_> {
        match self {
            Side::Edgeim { target, .. } => Server::Edgeim(target),
            Side::Mqtt { target, .. } => Server::Mqtt(target),
        }
    }

    /// (warnings and errors logged, the last of them), if we started it.
    fn log_summary(&self) -> Option<(u64, Vec<String>)> {
        match self {
            Side::Edgeim { spawned, .. } => spawned.as_ref().map(Spawned::log_summary),
            Side::Mqtt { broker, .. } => broker.as_ref().map(Broker::log_summary),
        }
    }

    /// Stops it if we started it: Some(how that went).
    fn stop(self) -> Option<Result<(), String>> {
        match self {
            Side::Edgeim { spawned, .. } => spawned.map(Spawned::stop),
            Side::Mqtt { broker, .. } => broker.map(Broker::stop),
        }
    }
}

fn spawn_edgeim(opts: &Options, path: &Path, ticks: f64) -> Result<Side, String> {
    let s = Spawned::start(
        path,
        opts.scenario.users(),
        &opts.password,
        opts.scenario.raised_limits(),
    )?;
    eprintln!(
        "edgeim-bench: spawned {} (pid {}), ready in {:.1} ms, {} users",
        path.display(),
        s.child.id(),
        s.ready_ms,
        opts.scenario.users()
    );
    let target = Target::new(&s.http, &s.ws, Some(s.child.id()), &opts.password, ticks)?;
    Ok(Side::Edgeim {
        target,
        spawned: Some(s),
    })
}

fn spawn_broker(path: &Path, ticks: f64) -> Result<Side, String> {
    let b = Broker::start(path)?;
    eprintln!(
        "edgeim-bench: spawned {} (pid {}) on {}, ready in {:.1} ms",
        path.display(),
        b.child.id(),
        b.addr,
        b.ready_ms
    );
    let target = MqttTarget::new(&b.addr, Some(b.child.id()), ticks, "mosquitto")?;
    Ok(Side::Mqtt {
        target,
        broker: Some(b),
    })
}

fn run(opts: &Options) -> Result<bool, String> {
    let ticks = clock_ticks();
    // Idle measures the server's RSS, and a server keeps memory after
    // connections close (freed heap and thread stacks stay mapped): each
    // idle run gets a fresh server.
    let fresh_each_run = matches!(opts.scenario, Scenario::Idle(_));
    // The servers under test: edgeim, an MQTT broker, or one of each
    // (then the runs alternate, A B A B, so both see the same machine).
    let mut sides = Vec::new();
    if let Some(path) = &opts.spawn {
        sides.push(spawn_edgeim(opts, path, ticks)?);
    } else if opts.mqtt.is_none() && opts.spawn_mosquitto.is_none() {
        let target = Target::new(&opts.server, &opts.ws, opts.pid, &opts.password, ticks)?;
        sides.push(Side::Edgeim {
            target,
            spawned: None,
        });
    }
    if let Some(path) = &opts.spawn_mosquitto {
        sides.push(spawn_broker(path, ticks)?);
    }
    if let Some(addr) = &opts.mqtt {
        let target = MqttTarget::new(addr, opts.pid, ticks, "mqtt")?;
        sides.push(Side::Mqtt {
            target,
            broker: None,
        });
    }
    if let Scenario::Probe(p) = &opts.scenario {
        let Some(side) = sides.pop() else {
            return Err("probe needs a server".into());
        };
        let Side::Edgeim { target, .. } = &side else {
            return Err("probe runs against edgeim only".into());
        };
        let found = probe::run_probe(target, p);
        let server_log = side.log_summary();
        let exit = side.stop();
        return Ok(report_probe(
            opts,
            &found?,
            server_log.as_ref(),
            exit.as_ref(),
        ));
    }
    let mut results: Vec<Vec<RunResult>> = sides.iter().map(|_| Vec::new()).collect();
    let mut warnings = (0u64, Vec::new());
    let mut exit_error = None;
    for i in 0..opts.runs {
        for (k, side) in sides.iter_mut().enumerate() {
            if i > 0
                && fresh_each_run
                && let (Some(path), Side::Edgeim { .. }) = (&opts.spawn, &*side)
            {
                let fresh = spawn_edgeim(opts, path, ticks)?;
                let old = std::mem::replace(side, fresh);
                if let Some((w, tail)) = old.log_summary() {
                    warnings.0 += w;
                    warnings.1 = tail;
                }
                if let Some(Err(e)) = old.stop() {
                    exit_error.get_or_insert(e);
                }
            }
            let r = opts.scenario.run_once(side.server())?;
            eprintln!(
                "edgeim-bench: {} on {} run {}/{}: {} delivered, {} errors",
                opts.scenario.name(),
                side.server().name(),
                i + 1,
                opts.runs,
                r.delivered,
                r.errors.values().sum::<u64>()
            );
            results[k].push(r);
        }
    }
    let names: Vec<&'static str> = sides.iter().map(|s| s.server().name()).collect();
    let mut ok = true;
    for (k, side) in sides.into_iter().enumerate() {
        let server_log = side.log_summary().map(|(w, tail)| {
            (
                w + warnings.0,
                if w > 0 { tail } else { warnings.1.clone() },
            )
        });
        let exit = side.stop().map(|r| match exit_error.take() {
            Some(e) => Err(e),
            None => r,
        });
        ok &= report(
            opts,
            names[k],
            &results[k],
            server_log.as_ref(),
            exit.as_ref(),
        );
    }
    if let ([a, b], [ra, rb]) = (names.as_slice(), results.as_slice()) {
        compare::report_compare(opts, (a, ra), (b, rb));
    }
    Ok(ok)
}

impl Scenario {
    /// One run of the scenario against `server`.
    fn run_once(&self, server: Server<'_>) -> Result<RunResult, String> {
        match (self, server) {
            (Scenario::Pairs(f) | Scenario::Rate(f) | Scenario::Fanout(f), _) => {
                flow::run_flow(server, f)
            }
            (Scenario::Idle(h), Server::Edgeim(t)) => hold::run_idle(t, h),
            (Scenario::Ramp(h), Server::Edgeim(t)) => hold::run_ramp(t, h),
            (Scenario::Probe(_), _) => Err("probe runs through probe::run_probe".into()),
            _ => Err(format!("{} runs against edgeim only", self.name())),
        }
    }
}

/// The mutex's data, even if a thread panicked holding it.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
