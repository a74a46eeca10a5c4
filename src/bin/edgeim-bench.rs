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
//! are pacings of the same flow ([`run_flow`]: fanout is one sender whose
//! texts each go to R receivers). `idle` ([`run_idle`]) and `ramp`
//! ([`run_ramp`]) open many registered clients from a few threads
//! ([`open_many`], over the timed login path [`open_client`]) and keep only
//! their sockets. Each `run_*` returns a [`RunResult`].
//!
//! Output: one JSON line per scenario on stdout (medians over `--runs`),
//! a table on stderr. Exit status 0 only if every run delivered messages
//! and saw no error (a non-200 HTTP answer or 9001, a close by the server,
//! an I/O error, a duplicate or reordered delivery); 2 for usage errors.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, unbounded};
use serde::Deserialize;
use serde_json::{Value, json};
use tungstenite::protocol::Role;
use tungstenite::{Message, WebSocket};

const USAGE: &str = "\
usage: edgeim-bench [--spawn PATH | --server URL --ws URL [--pid PID]] [--password PW]
                    [--runs K] SCENARIO [options]

  --spawn PATH     start PATH (an edgeim binary) on a temp data dir with users
                   u0..uN and raised limits; stop it at the end
  --server URL     an already running server (default http://127.0.0.1:8080);
                   it needs users u0..uN with --password and raised rate limits
  --ws URL         its WebSocket URL (default ws://127.0.0.1:8081/websocket)
  --pid PID        the running server's pid, to read its CPU and RSS
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
  pairs, rate, fanout: [--drain 5] seconds to wait for outstanding answers
  idle  [--connections 10000] [--seconds 5] [--threads 8]
        K registered connections that do nothing; server RSS per
        connection and CPU while idle (the sockets are only held)
  ramp  [--clients 2000] [--threads 8]
        how fast clients get session id -> handshake -> register (one
        token per user, fetched before the clock starts)

CI smoke run: edgeim-bench --spawn target/debug/edgeim pairs --pairs 2 --seconds 1
";

/// One HTTP request, the register answer, a handshake: how long each may take.
const WAIT: Duration = Duration::from_secs(10);
/// The longest a worker blocks in a read before it looks at the clock
/// again. Answers wake it sooner; this only bounds how late it notices the
/// end of a run, and each wake-up costs the generator CPU that the server
/// would use (150 threads at 20 ms cost 7% of a core here).
const POLL: Duration = Duration::from_millis(100);
/// The clientName of every benchmark connection (the same across runs, so a
/// rerun replaces the client instead of making the server track new ones).
const CLIENT_NAME: &str = "bench";
/// Digits of the send time (ns since the generator started) that start
/// every text body, so a receiver can time the delivery.
const STAMP_DIGITS: usize = 20;
/// Upper bound on texts sent in one run, whatever the server's speed.
const MAX_MESSAGES: u64 = 20_000_000;
/// Upper bound on loop iterations of one worker (each one reads or sends).
const MAX_ITERATIONS: u64 = 200_000_000;
const ACK_BODY: &str = r#"{\"code\":200,\"status\":\"SUCCESS\",\"msg\":\"received\"}"#;

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

// ---------------------------------------------------------------- options

struct Options {
    spawn: Option<PathBuf>,
    server: String,
    ws: String,
    pid: Option<u32>,
    password: String,
    runs: usize,
    scenario: Scenario,
}

/// How a flow's senders pace themselves.
#[derive(Clone, Copy, Debug)]
enum Pacing {
    /// Closed loop: at most this many texts waiting for their 9001.
    Window(usize),
    /// Open loop: this many texts per second in total, on a fixed schedule.
    Rate(f64),
}

/// N senders, each sending every text to its own `recipients` receivers.
#[derive(Clone, Debug)]
struct Flow {
    pairs: usize,
    /// Receivers per sender: 1 for pairs and rate, R for fanout.
    recipients: usize,
    seconds: f64,
    size: usize,
    pacing: Pacing,
    drain: f64,
}

/// Many registered connections, opened from a few threads (idle, ramp).
#[derive(Clone, Debug)]
struct Hold {
    clients: usize,
    threads: usize,
    /// How long idle holds them (ramp: 0).
    seconds: f64,
}

enum Scenario {
    Pairs(Flow),
    Rate(Flow),
    Fanout(Flow),
    Idle(Hold),
    Ramp(Hold),
}

/// Clients per user in idle and ramp (each has its own clientName); the
/// spawned server's max_clients_per_user is raised to this.
const CLIENTS_PER_USER: usize = 250;

impl Scenario {
    fn name(&self) -> &'static str {
        match self {
            Scenario::Pairs(_) => "pairs",
            Scenario::Rate(_) => "rate",
            Scenario::Fanout(_) => "fanout",
            Scenario::Idle(_) => "idle",
            Scenario::Ramp(_) => "ramp",
        }
    }

    /// How many users (u0..uN) the scenario logs in as.
    fn users(&self) -> usize {
        match self {
            Scenario::Pairs(f) | Scenario::Rate(f) | Scenario::Fanout(f) => {
                f.pairs * (1 + f.recipients)
            }
            Scenario::Idle(h) | Scenario::Ramp(h) => h.clients.div_ceil(CLIENTS_PER_USER),
        }
    }

    /// The scenario's parameters, as they appear in the JSON line.
    fn params(&self) -> Vec<(&'static str, Value)> {
        match self {
            Scenario::Idle(h) => vec![
                ("connections", json!(h.clients)),
                ("seconds", json!(h.seconds)),
                ("threads", json!(h.threads)),
            ],
            Scenario::Ramp(h) => vec![("clients", json!(h.clients)), ("threads", json!(h.threads))],
            Scenario::Pairs(f) | Scenario::Rate(f) | Scenario::Fanout(f) => {
                let mut p = if f.recipients > 1 {
                    vec![("recipients", json!(f.recipients))]
                } else {
                    vec![("pairs", json!(f.pairs))]
                };
                p.extend([("seconds", json!(f.seconds)), ("size", json!(f.size))]);
                match f.pacing {
                    Pacing::Window(w) => p.push(("window", json!(w))),
                    Pacing::Rate(r) => p.push(("rate", json!(r))),
                }
                p
            }
        }
    }

    fn run_once(&self, target: &Target) -> Result<RunResult, String> {
        match self {
            Scenario::Pairs(f) | Scenario::Rate(f) | Scenario::Fanout(f) => run_flow(target, f),
            Scenario::Idle(h) => run_idle(target, h),
            Scenario::Ramp(h) => run_ramp(target, h),
        }
    }
}

/// The numeric options; which apply depends on the scenario.
const OPTION_KEYS: [&str; 10] = [
    "pairs",
    "seconds",
    "window",
    "size",
    "rate",
    "drain",
    "recipients",
    "connections",
    "clients",
    "threads",
];
/// The spawned server's limits.max_recipients, and fanout's ceiling.
const MAX_RECIPIENTS: usize = 1000;

fn parse_args() -> Result<Option<Options>, String> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_env();
    let mut spawn = None;
    let mut server = None;
    let mut ws = None;
    let mut pid = None;
    let mut password = "bench-password".to_string();
    let mut runs = 1usize;
    let mut scenario: Option<String> = None;
    let mut flow_opts: HashMap<&'static str, f64> = HashMap::new();
    let err = |e: lexopt::Error| e.to_string();
    while let Some(arg) = p.next().map_err(err)? {
        match arg {
            Short('h') | Long("help") => return Ok(None),
            Long("spawn") => spawn = Some(PathBuf::from(p.value().map_err(err)?)),
            Long("server") => server = Some(p.value().map_err(err)?.string().map_err(err)?),
            Long("ws") => ws = Some(p.value().map_err(err)?.string().map_err(err)?),
            Long("pid") => pid = Some(p.value().map_err(err)?.parse().map_err(err)?),
            Long("password") => password = p.value().map_err(err)?.string().map_err(err)?,
            Long("runs") => runs = p.value().map_err(err)?.parse().map_err(err)?,
            Long(name) if OPTION_KEYS.contains(&name) => {
                let key = OPTION_KEYS
                    .iter()
                    .copied()
                    .find(|k| *k == name)
                    .unwrap_or_default();
                let v: f64 = p.value().map_err(err)?.parse().map_err(err)?;
                if !(v.is_finite() && v > 0.0) {
                    return Err(format!("--{key} must be a number greater than 0"));
                }
                flow_opts.insert(key, v);
            }
            Value(v) if scenario.is_none() => scenario = Some(v.string().map_err(err)?),
            _ => return Err(arg.unexpected().to_string()),
        }
    }
    if spawn.is_some() && (server.is_some() || ws.is_some() || pid.is_some()) {
        return Err("--spawn starts its own server: leave out --server, --ws and --pid".into());
    }
    if !(1..=1000).contains(&runs) {
        return Err("--runs must be between 1 and 1000".into());
    }
    let get = |k: &str, default: f64| flow_opts.get(k).copied().unwrap_or(default);
    let whole = |k: &str, default: f64, max: f64| -> Result<usize, String> {
        let v = get(k, default);
        if v.fract() != 0.0 || v > max {
            return Err(format!("--{k} must be a whole number up to {max}"));
        }
        Ok(v as usize)
    };
    let name = scenario.ok_or("no scenario given")?;
    let allowed: &[&str] = match name.as_str() {
        "pairs" => &["pairs", "seconds", "window", "size", "drain"],
        "rate" => &["rate", "seconds", "pairs", "size", "drain"],
        "fanout" => &["recipients", "seconds", "window", "size", "drain"],
        "idle" => &["connections", "seconds", "threads"],
        "ramp" => &["clients", "threads"],
        other => return Err(format!("unknown scenario {other:?}")),
    };
    if let Some(k) = flow_opts.keys().find(|k| !allowed.contains(k)) {
        return Err(format!("--{k} does not apply to {name}"));
    }
    let flow = |pairs: usize, recipients: usize, seconds: f64, pacing: Pacing| {
        Ok::<Flow, String>(Flow {
            pairs,
            recipients,
            seconds: get("seconds", seconds).min(3600.0),
            size: whole("size", 120.0, 60_000.0)?,
            pacing,
            drain: get("drain", 5.0).min(60.0),
        })
    };
    let window = || whole("window", 20.0, 100_000.0).map(Pacing::Window);
    let scenario = match name.as_str() {
        "pairs" => Scenario::Pairs(flow(whole("pairs", 50.0, 5_000.0)?, 1, 10.0, window()?)?),
        "rate" => Scenario::Rate(flow(
            whole("pairs", 50.0, 5_000.0)?,
            1,
            10.0,
            Pacing::Rate(get("rate", 10_000.0)),
        )?),
        "fanout" => Scenario::Fanout(flow(
            1,
            whole("recipients", 100.0, MAX_RECIPIENTS as f64)?,
            5.0,
            Pacing::Window(whole("window", 5.0, 100_000.0)?),
        )?),
        "idle" => Scenario::Idle(Hold {
            clients: whole("connections", 10_000.0, 1_000_000.0)?,
            threads: whole("threads", 8.0, 256.0)?,
            seconds: get("seconds", 5.0).min(3600.0),
        }),
        _ => Scenario::Ramp(Hold {
            clients: whole("clients", 2_000.0, 1_000_000.0)?,
            threads: whole("threads", 8.0, 256.0)?,
            seconds: 0.0,
        }),
    };
    Ok(Some(Options {
        spawn,
        server: server.unwrap_or_else(|| "http://127.0.0.1:8080".into()),
        ws: ws.unwrap_or_else(|| "ws://127.0.0.1:8081/websocket".into()),
        pid,
        password,
        runs,
        scenario,
    }))
}

// ---------------------------------------------------------------- driver

fn run(opts: &Options) -> Result<bool, String> {
    let ticks = clock_ticks();
    // Idle measures the server's RSS, and a server keeps memory after
    // connections close (freed heap and thread stacks stay mapped): each
    // idle run gets a fresh server.
    let fresh_each_run = matches!(opts.scenario, Scenario::Idle(_));
    let spawn = |path: &Path| -> Result<(Spawned, Target), String> {
        let s = Spawned::start(path, opts.scenario.users(), &opts.password)?;
        eprintln!(
            "edgeim-bench: spawned {} (pid {}), ready in {:.1} ms, {} users",
            path.display(),
            s.child.id(),
            s.ready_ms,
            opts.scenario.users()
        );
        let t = Target::new(&s.http, &s.ws, Some(s.child.id()), &opts.password, ticks)?;
        Ok((s, t))
    };
    let mut spawned = None;
    let mut target = match &opts.spawn {
        Some(path) => {
            let (s, t) = spawn(path)?;
            spawned = Some(s);
            t
        }
        None => Target::new(&opts.server, &opts.ws, opts.pid, &opts.password, ticks)?,
    };
    let mut results = Vec::new();
    let mut warnings = (0u64, Vec::new());
    let mut exit_error = None;
    for i in 0..opts.runs {
        if i > 0
            && fresh_each_run
            && let (Some(path), Some(old)) = (&opts.spawn, spawned.take())
        {
            let (w, tail) = old.log_summary();
            warnings.0 += w;
            warnings.1 = tail;
            if let Err(e) = old.stop() {
                exit_error.get_or_insert(e);
            }
            let (s, t) = spawn(path)?;
            spawned = Some(s);
            target = t;
        }
        let r = opts.scenario.run_once(&target)?;
        eprintln!(
            "edgeim-bench: {} run {}/{}: {} delivered, {} errors",
            opts.scenario.name(),
            i + 1,
            opts.runs,
            r.delivered,
            r.errors.values().sum::<u64>()
        );
        results.push(r);
    }
    let server_log = spawned.as_ref().map(|s| {
        let (w, tail) = s.log_summary();
        (w + warnings.0, if w > 0 { tail } else { warnings.1 })
    });
    let exit = spawned.map(Spawned::stop).map(|r| match exit_error {
        Some(e) => Err(e),
        None => r,
    });
    let ok = report(opts, &results, server_log.as_ref(), exit.as_ref());
    Ok(ok)
}

/// Prints the JSON line and the table; true if every run passed.
fn report(
    opts: &Options,
    results: &[RunResult],
    server_log: Option<&(u64, Vec<String>)>,
    exit: Option<&Result<(), String>>,
) -> bool {
    let s = &opts.scenario;
    // In this order: scenario, its parameters, figures, errors.
    let mut line: Vec<(String, Value)> = vec![
        ("scenario".into(), json!(s.name())),
        ("runs".into(), json!(results.len())),
    ];
    for (k, v) in s.params() {
        line.push((k.into(), v));
    }
    let keys: Vec<&'static str> = results
        .first()
        .map(|r| r.figures.iter().map(|(k, _)| *k).collect())
        .unwrap_or_default();
    let medians: Vec<f64> = keys
        .iter()
        .map(|k| median(results.iter().filter_map(|r| r.get(k))))
        .collect();
    for (k, m) in keys.iter().zip(&medians) {
        line.push(((*k).into(), rounded(*m)));
    }
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for r in results {
        for (k, n) in &r.errors {
            *errors.entry(k.clone()).or_default() += n;
        }
    }
    let n_errors: u64 = errors.values().sum();
    line.push(("errors".into(), json!(n_errors)));
    if !errors.is_empty() {
        line.push(("error_kinds".into(), json!(errors)));
    }
    if let Some((warnings, _)) = server_log {
        line.push(("server_warnings".into(), json!(warnings)));
    }
    let fields: Vec<String> = line
        .iter()
        .map(|(k, v)| format!("{}:{v}", Value::from(k.as_str())))
        .collect();
    println!("{{{}}}", fields.join(","));

    let params: Vec<String> = s.params().iter().map(|(k, v)| format!("{k}={v}")).collect();
    eprintln!(
        "\n{} ({}), {} run(s), medians:",
        s.name(),
        params.join(" "),
        results.len()
    );
    let mut head = format!("  {:<24} {:>12}", "figure", "median");
    for i in 0..results.len() {
        head.push_str(&format!(" {:>12}", format!("run {}", i + 1)));
    }
    eprintln!("{head}");
    for (k, m) in keys.iter().zip(&medians) {
        let mut row = format!("  {:<24} {:>12}", k, show(k, *m));
        for r in results {
            row.push_str(&format!(" {:>12}", show(k, r.get(k).unwrap_or(f64::NAN))));
        }
        eprintln!("{row}");
    }
    eprintln!("  (ms figures: >drain = not answered within --drain; cpu_pct: % of one core)");
    for (k, n) in &errors {
        eprintln!("  error x{n}: {k}");
    }
    if let Some((warnings, tail)) = server_log
        && *warnings > 0
    {
        eprintln!("  server logged {warnings} warnings/errors; last ones:");
        for l in tail {
            eprintln!("    {l}");
        }
    }
    let mut ok = true;
    if n_errors > 0 {
        eprintln!("edgeim-bench: FAIL: {n_errors} errors");
        ok = false;
    }
    if results.iter().any(|r| r.delivered == 0) {
        eprintln!("edgeim-bench: FAIL: a run delivered no message");
        ok = false;
    }
    if let Some(Err(e)) = exit {
        eprintln!("edgeim-bench: FAIL: {e}");
        ok = false;
    }
    ok
}

/// The median of the measured values (NaN = not measured is left out).
fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    // An even count averages the middle two, unless one is unanswered.
    if n % 2 == 1 || v[n / 2].is_infinite() {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// JSON value of a figure: three decimals; not measured or unanswered = null.
fn rounded(v: f64) -> Value {
    if v.is_finite() {
        json!((v * 1000.0).round() / 1000.0)
    } else {
        Value::Null
    }
}

fn show(key: &str, v: f64) -> String {
    if v.is_nan() {
        return "n/a".into();
    }
    if v.is_infinite() {
        return ">drain".into();
    }
    if key.ends_with("_ms") {
        format!("{v:.3}")
    } else if key.contains("_us_per_") || key.ends_with("_pct") || key.ends_with("_per_conn") {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

// ---------------------------------------------------------------- results

/// One run's figures, in the order they are reported.
struct RunResult {
    figures: Vec<(&'static str, f64)>,
    errors: BTreeMap<String, u64>,
    delivered: u64,
}

impl RunResult {
    fn get(&self, key: &str) -> Option<f64> {
        self.figures
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
    }
}

/// What one worker thread saw. Times are ns since [`epoch`].
#[derive(Default)]
struct Stats {
    sent: u64,
    sent_in_window: u64,
    acked: u64,
    acked_in_window: u64,
    delivered: u64,
    delivered_in_window: u64,
    receipts: u64,
    ack_latency: Vec<u64>,
    delivery_latency: Vec<u64>,
    /// How late the generator itself sent each text (rate only).
    send_lag: Vec<u64>,
    /// (sender, seq, latency) of each delivery (fanout only: to find the
    /// last recipient of each text).
    deliveries: Vec<(usize, u64, u64)>,
    errors: BTreeMap<String, u64>,
}

impl Stats {
    fn error(&mut self, what: impl Into<String>) {
        let mut what: String = what.into();
        if what.len() > 160 {
            let mut cut = 160;
            while !what.is_char_boundary(cut) {
                cut -= 1;
            }
            what.truncate(cut);
        }
        *self.errors.entry(what).or_default() += 1;
    }

    fn merge(&mut self, o: Stats) {
        self.sent += o.sent;
        self.sent_in_window += o.sent_in_window;
        self.acked += o.acked;
        self.acked_in_window += o.acked_in_window;
        self.delivered += o.delivered;
        self.delivered_in_window += o.delivered_in_window;
        self.receipts += o.receipts;
        self.ack_latency.extend(o.ack_latency);
        self.delivery_latency.extend(o.delivery_latency);
        self.send_lag.extend(o.send_lag);
        self.deliveries.extend(o.deliveries);
        for (k, n) in o.errors {
            *self.errors.entry(k).or_default() += n;
        }
    }
}

/// The q-quantile in ms of `expected` samples of which `sorted` arrived;
/// the missing ones count as slower than any (so losses cannot improve a
/// percentile): infinite when the rank falls among them.
fn quantile_ms(sorted: &[u64], expected: u64, q: f64) -> f64 {
    if expected == 0 {
        return f64::NAN;
    }
    let rank = ((q * expected as f64).ceil() as u64).max(1) - 1;
    match sorted.get(rank as usize) {
        Some(ns) => *ns as f64 / 1e6,
        None => f64::INFINITY,
    }
}

// ---------------------------------------------------------------- time

/// The generator's clock: every timestamp is ns since this instant.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ns() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

fn sleep_until_ns(ns: u64) {
    let when = epoch() + Duration::from_nanos(ns);
    thread::sleep(when.saturating_duration_since(Instant::now()));
}

// ---------------------------------------------------------------- /proc

/// The kernel's clock ticks per second for /proc times (`getconf CLK_TCK`;
/// 100 when getconf is missing, which is right on every Linux we target).
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// utime+stime of a process in seconds (`pid` "self" for the generator).
fn cpu_seconds(pid: &str, ticks: f64) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces: fields start after its ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Field 3 (state) is f[0]; utime is field 14, stime field 15.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / ticks)
}

/// VmRSS of a process in KiB.
fn rss_kib(pid: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU seconds of the server and of the generator at one moment.
struct CpuSample {
    server: Option<f64>,
    client: Option<f64>,
}

// ---------------------------------------------------------------- target

/// The server under test, and the tokens of the users logged in so far
/// (logins are slow on purpose: argon2; a token serves every run).
struct Target {
    http_host: String,
    http_prefix: String,
    ws_url: String,
    /// host:port of `ws_url`.
    ws_host: String,
    pid: Option<u32>,
    password: String,
    ticks: f64,
    tokens: Mutex<HashMap<String, String>>,
}

impl Target {
    fn new(
        server: &str,
        ws: &str,
        pid: Option<u32>,
        password: &str,
        ticks: f64,
    ) -> Result<Target, String> {
        let parsed = edgeim::client::HttpServer::parse(server).map_err(|e| e.to_string())?;
        let (http_host, http_prefix) = (parsed.host, parsed.prefix);
        let ws_host = ws
            .strip_prefix("ws://")
            .ok_or_else(|| format!("bad --ws URL {ws:?}: it must start with ws://"))?;
        let ws_host = ws_host.split('/').next().unwrap_or_default();
        let ws_host = if ws_host.ends_with(']') || !ws_host.contains(':') {
            format!("{ws_host}:80")
        } else {
            ws_host.to_string()
        };
        for host in [http_host.as_str(), ws_host.as_str()] {
            if !is_loopback(host) {
                return Err(format!(
                    "{host}: the load generator talks to loopback addresses only"
                ));
            }
        }
        Ok(Target {
            http_host,
            http_prefix,
            ws_url: ws.to_string(),
            ws_host,
            pid,
            password: password.to_string(),
            ticks,
            tokens: Mutex::new(HashMap::new()),
        })
    }

    fn cpu(&self) -> CpuSample {
        CpuSample {
            server: self
                .pid
                .and_then(|p| cpu_seconds(&p.to_string(), self.ticks)),
            client: cpu_seconds("self", self.ticks),
        }
    }

    fn server_rss_kib(&self) -> Option<f64> {
        self.pid.and_then(|p| rss_kib(&p.to_string()))
    }

    fn http(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> Result<(u16, Value), String> {
        http(
            &self.http_host,
            &format!("{}{path}", self.http_prefix),
            method,
            token,
            body,
        )
    }

    /// An app token for `user`, logging in the first time.
    fn token(&self, user: &str) -> Result<String, String> {
        if let Some(t) = lock(&self.tokens).get(user) {
            return Ok(t.clone());
        }
        let body = json!({"username": user, "password": self.password}).to_string();
        let (status, answer) = self.http("POST", "/app/login", None, Some(&body))?;
        let token = match answer["token"].as_str() {
            Some(t) if status == 200 => t.to_string(),
            _ => return Err(format!("login as {user}: HTTP {status} {answer}")),
        };
        lock(&self.tokens).insert(user.to_string(), token.clone());
        Ok(token)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn is_loopback(host_port: &str) -> bool {
    let host = match host_port.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => h,
        _ => host_port,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// One HTTP/1.1 request over a fresh connection: (status, JSON body or Null).
fn http(
    host: &str,
    path: &str,
    method: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Result<(u16, Value), String> {
    let server = edgeim::client::HttpServer {
        host: host.to_string(),
        prefix: String::new(),
    };
    let mut rq = server.request(method, path).token(token).timeout(WAIT);
    if let Some(b) = body {
        rq = rq.header("Content-Type", "application/json").body(b);
    }
    let answer = rq.send().map_err(|e| e.to_string())?;
    Ok((answer.status, answer.json()))
}

// ---------------------------------------------------------------- spawned server

/// A server started by `--spawn`, on its own temp data dir.
struct Spawned {
    child: Child,
    dir: PathBuf,
    http: String,
    ws: String,
    ready_ms: f64,
    log: Arc<Mutex<ServerLog>>,
}

/// Warnings and errors the server logged (its stderr is drained by a thread).
#[derive(Default)]
struct ServerLog {
    warnings: u64,
    tail: VecDeque<String>,
}

enum Listening {
    Http(String),
    Ws(String),
}

impl Spawned {
    fn start(binary: &Path, users: usize, password: &str) -> Result<Spawned, String> {
        let dir = std::env::temp_dir().join(format!("edgeim-bench-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let started = Self::start_in(binary, users, password, &dir);
        if started.is_err() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        started
    }

    fn start_in(
        binary: &Path,
        users: usize,
        password: &str,
        dir: &Path,
    ) -> Result<Spawned, String> {
        // One hash for all: the same password with the same salt verifies
        // the same way, and argon2 is slow on purpose.
        let hash = edgeim::users::hash_password(password);
        let users_text: String = (0..users).map(|i| format!("u{i}:{hash}\n")).collect();
        write_private(&edgeim::users::path_in(dir), &users_text)?;
        let dir_toml = serde_json::to_string(&dir.to_string_lossy()).unwrap_or_default();
        let config = format!(
            "data_dir = {dir_toml}\nlog_level = \"info\"\n\
             [http]\nlisten = \"127.0.0.1:0\"\n\
             [websocket]\nlisten = \"127.0.0.1:0\"\n\
             [limits]\nmax_clients_per_user = {CLIENTS_PER_USER}\n\
             max_recipients = {MAX_RECIPIENTS}\nrate_per_s = 1000000000.0\n\
             rate_burst = 1000000000.0\nsession_ids_per_s = 1000000.0\n\
             offline_per_user = 1000000\n"
        );
        let config_path = dir.join("bench.toml");
        write_private(&config_path, &config)?;
        let t0 = Instant::now();
        let mut child = Command::new(binary)
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .env("EDGEIM_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let log = Arc::new(Mutex::new(ServerLog::default()));
        let (tx, rx) = unbounded();
        if let Some(stderr) = child.stderr.take() {
            let log = Arc::clone(&log);
            let drained = thread::Builder::new()
                .name("server-log".into())
                .spawn(move || drain_log(stderr, &tx, &log));
            if let Err(e) = drained {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("cannot start a thread: {e}"));
            }
        }
        let (mut http, mut ws) = (None, None);
        while http.is_none() || ws.is_none() {
            match rx.recv_timeout(WAIT.saturating_sub(t0.elapsed())) {
                Ok(Listening::Http(a)) => http = Some(format!("http://{a}")),
                Ok(Listening::Ws(u)) => ws = Some(u),
                Err(_) => {
                    let _ = child.kill();
                    let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
                    let tail: Vec<String> = lock(&log).tail.iter().cloned().collect();
                    return Err(format!(
                        "{} did not report its addresses within {WAIT:?} ({status}); its last lines:\n{}",
                        binary.display(),
                        tail.join("\n")
                    ));
                }
            }
        }
        Ok(Spawned {
            ready_ms: t0.elapsed().as_secs_f64() * 1e3,
            child,
            dir: dir.to_path_buf(),
            http: http.unwrap_or_default(),
            ws: ws.unwrap_or_default(),
            log,
        })
    }

    /// (warnings and errors logged, the last of them).
    fn log_summary(&self) -> (u64, Vec<String>) {
        let l = lock(&self.log);
        let tail = l.tail.iter().filter(|s| is_warning(s)).cloned().collect();
        (l.warnings, tail)
    }

    /// SIGTERM, then a bounded wait; Err if it did not exit 0 in time.
    fn stop(mut self) -> Result<(), String> {
        self.terminate()
    }

    fn terminate(&mut self) -> Result<(), String> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill")
            .args(["-TERM", &pid])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        for _ in 0..1000 {
            match self.child.try_wait() {
                Ok(Some(s)) if s.success() => return Ok(()),
                Ok(Some(s)) => return Err(format!("the server exited with {s} on SIGTERM")),
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
                _ => break,
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        Err("the server did not exit within 5 s of SIGTERM: killed".into())
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.terminate();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn write_private(path: &Path, text: &str) -> Result<(), String> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    opts.open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn is_warning(line: &str) -> bool {
    line.split_whitespace()
        .take(3)
        .any(|w| w == "WARN" || w == "ERROR")
}

/// Reads the server's stderr to its end: reports the two listening lines,
/// counts warnings and errors, keeps the last lines for error reports.
fn drain_log(stderr: impl Read, tx: &Sender<Listening>, log: &Mutex<ServerLog>) {
    let reader = BufReader::new(stderr);
    for line in reader.lines().map_while(Result::ok) {
        if let Some((_, a)) = line.split_once("http listening on ") {
            let _ = tx.send(Listening::Http(a.trim().to_string()));
        } else if let Some((_, u)) = line.split_once("websocket listening on ") {
            let _ = tx.send(Listening::Ws(u.trim().to_string()));
        }
        let mut l = lock(log);
        if is_warning(&line) {
            l.warnings += 1;
        }
        if l.tail.len() >= 20 {
            l.tail.pop_front();
        }
        l.tail.push_back(line);
    }
}

// ---------------------------------------------------------------- clients

/// The parts of a server frame the generator looks at.
#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(borrow, default)]
    id: Cow<'a, str>,
    #[serde(rename = "type")]
    kind: i64,
    #[serde(borrow, default)]
    from: Cow<'a, str>,
    #[serde(borrow, default)]
    body: Cow<'a, str>,
}

#[derive(Deserialize)]
struct StatusBody<'a> {
    code: i64,
    #[serde(borrow, default)]
    status: Cow<'a, str>,
    #[serde(borrow, default)]
    msg: Cow<'a, str>,
}

/// (code, "code STATUS: msg") of a 9001's body.
fn status_of(body: &str) -> (i64, String) {
    match serde_json::from_str::<StatusBody>(body) {
        Ok(s) => (s.code, format!("{} {}: {}", s.code, s.status, s.msg)),
        Err(_) => (0, format!("unreadable status body {body:?}")),
    }
}

/// The socket under a client's WebSocket. Until [`split`] its writes go
/// straight to the socket. After it they go to the writer thread, which is
/// then the only one writing: tungstenite has no thread-safe split, and its
/// `read` itself writes Pong and Close replies (the server does the same:
/// docs/ARCHITECTURE.md).
struct Stream {
    tcp: TcpStream,
    forward: Option<Sender<Vec<u8>>>,
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.tcp.read(buf)
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &self.forward {
            None => self.tcp.write(buf),
            Some(tx) => tx
                .send(buf.to_vec())
                .map(|()| buf.len())
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "writer gone")),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &self.forward {
            None => self.tcp.flush(),
            Some(_) => Ok(()),
        }
    }
}

type Ws = WebSocket<Stream>;

/// The writing side of a split connection: its own WebSocket context over
/// a clone of the socket, and the bytes the reading side wants written.
struct WriteHalf {
    ws: WebSocket<TcpStream>,
    from_reader: Receiver<Vec<u8>>,
}

/// From now on `ws` only reads; everything it writes goes through the
/// returned half. Nothing is lost: `ws` keeps its read buffer.
fn split(ws: &mut Ws) -> Result<WriteHalf, String> {
    let tcp = ws.get_ref().tcp.try_clone().map_err(|e| e.to_string())?;
    let (tx, rx) = unbounded();
    ws.get_mut().forward = Some(tx);
    Ok(WriteHalf {
        ws: WebSocket::from_raw_socket(tcp, Role::Client, None),
        from_reader: rx,
    })
}

/// How long each step of getting a registered client took.
struct Opened {
    ws: Ws,
    token: Duration,
    session_id: Duration,
    handshake: Duration,
    register: Duration,
}

/// Logs in (or reuses the token), gets a session id, opens the WebSocket
/// and registers `user` as `client`. Reads then time out after [`POLL`].
fn open_client(target: &Target, user: &str, client: &str) -> Result<Opened, String> {
    let t0 = Instant::now();
    let token = target.token(user)?;
    let t1 = Instant::now();
    let path = format!("/app/websocket/client/login/{client}");
    let (status, answer) = target.http("GET", &path, Some(&token), None)?;
    let session_id = match answer["sessionId"].as_str() {
        Some(s) if status == 200 => s.to_string(),
        _ => return Err(format!("session id for {user}: HTTP {status} {answer}")),
    };
    let t2 = Instant::now();
    let connect_err = |e: &dyn std::fmt::Display| format!("connect {}: {e}", target.ws_url);
    let tcp = TcpStream::connect(&target.ws_host).map_err(|e| connect_err(&e))?;
    tcp.set_nodelay(true)
        .and_then(|()| tcp.set_read_timeout(Some(WAIT)))
        .and_then(|()| tcp.set_write_timeout(Some(WAIT)))
        .map_err(|e| connect_err(&e))?;
    let stream = Stream { tcp, forward: None };
    let (mut ws, _) =
        tungstenite::client(target.ws_url.as_str(), stream).map_err(|e| connect_err(&e))?;
    let t3 = Instant::now();
    let reg = json!({"id": "register", "type": 1000, "isSystem": false, "from": user,
        "to": "SYSTEM", "body": json!({"sessionId": session_id}).to_string()});
    ws.send(Message::text(reg.to_string()))
        .map_err(|e| format!("register {user}: {e}"))?;
    // Bounded: the socket's read timeout ends a silent wait.
    for _ in 0..1000 {
        match ws.read() {
            Ok(Message::Text(t)) => {
                let Ok(f) = serde_json::from_str::<Frame>(&t) else {
                    continue;
                };
                if f.kind == 9001 && f.id == "register" {
                    let (code, why) = status_of(&f.body);
                    if code != 200 {
                        return Err(format!("register {user}: {why}"));
                    }
                    set_read_timeout(&ws, POLL);
                    let t4 = Instant::now();
                    return Ok(Opened {
                        ws,
                        token: t1 - t0,
                        session_id: t2 - t1,
                        handshake: t3 - t2,
                        register: t4 - t3,
                    });
                }
            }
            Ok(Message::Close(f)) => return Err(format!("register {user}: closed {f:?}")),
            Ok(_) => {}
            Err(e) => return Err(format!("register {user}: {e}")),
        }
    }
    Err(format!("register {user}: no answer"))
}

fn is_timeout(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(io) if matches!(
        io.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    ))
}

/// The kernel rounds socket timeouts up to whole jiffies (about 8 ms here
/// at HZ=250): good for noticing a deadline, useless for pacing sends.
fn set_read_timeout(ws: &Ws, d: Duration) {
    let _ = ws
        .get_ref()
        .tcp
        .set_read_timeout(Some(d.max(Duration::from_millis(1))));
}

/// Close 1000, then a short bounded wait for the server's close.
fn close(mut ws: Ws) {
    if ws.close(None).is_err() {
        return;
    }
    set_read_timeout(&ws, POLL);
    let deadline = Instant::now() + Duration::from_millis(500);
    for _ in 0..10_000 {
        if Instant::now() >= deadline {
            break;
        }
        match ws.read() {
            Ok(_) => {}
            Err(e) if is_timeout(&e) => {}
            Err(_) => break,
        }
    }
}

/// A text's id: run tag, sender index, sequence number.
fn text_id(tag: &str, sender: usize, seq: u64) -> String {
    format!("{tag}.{sender}.{seq}")
}

/// (sender, seq) of a text id of this run.
fn parse_text_id(tag: &str, id: &str) -> Option<(usize, u64)> {
    let rest = id.strip_prefix(tag)?.strip_prefix('.')?;
    let (s, q) = rest.split_once('.')?;
    Some((s.parse().ok()?, q.parse().ok()?))
}

/// A 9101 acknowledging `id` from `sender`.
fn ack_frame(id: &str, me: &str, sender: &str) -> String {
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    format!(
        r#"{{"id":{},"type":9101,"isSystem":false,"from":{},"to":{},"body":"{ACK_BODY}"}}"#,
        q(id),
        q(me),
        q(sender)
    )
}

// ---------------------------------------------------------------- the flow

/// What every worker of one run shares.
struct RunShared {
    tag: String,
    flow: Flow,
    /// Texts answered 9001 SUCCESS so far.
    acked: AtomicU64,
    /// Texts of this run received so far.
    delivered: AtomicU64,
    /// Tells the receivers to finish.
    stop: AtomicBool,
}

/// The measured window, in ns since [`epoch`].
#[derive(Clone, Copy)]
struct Window {
    start: u64,
    end: u64,
}

enum Part {
    Sender { index: usize, to: String },
    Receiver,
}

/// One run of `flow`: connect everyone, release them together, measure
/// the window, drain, collect.
fn run_flow(target: &Target, flow: &Flow) -> Result<RunResult, String> {
    let shared = Arc::new(RunShared {
        tag: uuid::Uuid::new_v4().simple().to_string()[..10].to_string(),
        flow: flow.clone(),
        acked: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let group = 1 + flow.recipients;
    let n = flow.pairs * group;
    let (ready_tx, ready_rx) = unbounded::<Result<(), String>>();
    let (go_tx, go_rx) = unbounded::<Option<Window>>();
    thread::scope(|scope| {
        let mut senders = Vec::new();
        let mut receivers = Vec::new();
        let mut spawn_error = None;
        for i in 0..n {
            let user = format!("u{i}");
            let role = if i % group == 0 {
                let to: Vec<String> = (1..group).map(|k| format!("u{}", i + k)).collect();
                Part::Sender {
                    index: i / group,
                    to: to.join(","),
                }
            } else {
                Part::Receiver
            };
            let is_sender = matches!(role, Part::Sender { .. });
            let (ready_tx, go_rx, shared) = (ready_tx.clone(), go_rx.clone(), Arc::clone(&shared));
            let spawned = thread::Builder::new()
                .name(user.clone())
                .stack_size(256 * 1024)
                .spawn_scoped(scope, move || {
                    worker(target, &user, role, &shared, &ready_tx, &go_rx)
                });
            match spawned {
                Ok(h) if is_sender => senders.push(h),
                Ok(h) => receivers.push(h),
                Err(e) => {
                    spawn_error = Some(format!("cannot start thread {i}: {e}"));
                    break;
                }
            }
        }
        let started = senders.len() + receivers.len();
        let mut failure = spawn_error.take();
        let setup_deadline = Instant::now() + Duration::from_secs(120);
        for _ in 0..started {
            match ready_rx.recv_timeout(setup_deadline.saturating_duration_since(Instant::now())) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    failure.get_or_insert(e);
                }
                Err(_) => {
                    failure.get_or_insert("clients not ready within 120 s".into());
                    break;
                }
            }
        }
        if let Some(e) = failure {
            for _ in 0..started {
                let _ = go_tx.send(None);
            }
            shared.stop.store(true, Ordering::Relaxed);
            return Err(e);
        }
        let start = now_ns() + 20_000_000;
        let window = Window {
            start,
            end: start + (flow.seconds * 1e9) as u64,
        };
        for _ in 0..started {
            let _ = go_tx.send(Some(window));
        }
        sleep_until_ns(window.start);
        let cpu0 = target.cpu();
        let rss0 = target.server_rss_kib();
        sleep_until_ns(window.end);
        let cpu1 = target.cpu();
        let rss1 = target.server_rss_kib();
        let mut total = Stats::default();
        for h in senders.drain(..) {
            total.merge(h.join().unwrap_or_default());
        }
        // The receivers go on until everything acknowledged has arrived,
        // or the drain time is up.
        let drain_end = Instant::now() + Duration::from_secs_f64(flow.drain);
        while Instant::now() < drain_end
            && shared.delivered.load(Ordering::Relaxed)
                < shared.acked.load(Ordering::Relaxed) * flow.recipients as u64
        {
            thread::sleep(Duration::from_millis(5));
        }
        shared.stop.store(true, Ordering::Relaxed);
        for h in receivers.drain(..) {
            total.merge(h.join().unwrap_or_default());
        }
        Ok(flow_figures(flow, window, total, &cpu0, &cpu1, rss0, rss1))
    })
}

/// One worker thread: connect, report ready, wait for the start, play its role.
fn worker(
    target: &Target,
    user: &str,
    role: Part,
    shared: &RunShared,
    ready: &Sender<Result<(), String>>,
    go: &Receiver<Option<Window>>,
) -> Stats {
    let ws = match open_client(target, user, CLIENT_NAME) {
        Ok(o) => o.ws,
        Err(e) => {
            let _ = ready.send(Err(e));
            return Stats::default();
        }
    };
    let _ = ready.send(Ok(()));
    let Ok(Some(window)) = go.recv_timeout(Duration::from_secs(300)) else {
        close(ws);
        return Stats::default();
    };
    match (role, shared.flow.pacing) {
        (Part::Sender { index, to }, Pacing::Window(w)) => {
            window_sender(ws, user, &to, index, shared, window, w)
        }
        (Part::Sender { index, to }, Pacing::Rate(r)) => {
            rate_sender(ws, user, &to, index, shared, window, r)
        }
        (Part::Receiver, _) => receiver(ws, user, shared, window),
    }
}

/// When text `seq` of sender `index` is due, for an open-loop flow.
/// When text `seq` of sender `index` is due, for an open-loop flow.
struct Schedule {
    offset: f64,
    period: f64,
    count: u64,
}

impl Schedule {
    fn new(flow: &Flow, rate: f64, index: usize, window: Window) -> Schedule {
        // Senders take turns: sender i sends at (i + k * pairs) / rate.
        let period = flow.pairs as f64 * 1e9 / rate;
        let offset = index as f64 * 1e9 / rate;
        let span = (window.end - window.start) as f64;
        let count = if offset >= span {
            0
        } else {
            ((span - offset) / period).ceil() as u64
        };
        Schedule {
            offset: window.start as f64 + offset,
            period,
            count: count.min(MAX_MESSAGES / flow.pairs as u64),
        }
    }

    fn due(&self, seq: u64) -> u64 {
        (self.offset + seq as f64 * self.period) as u64
    }
}

/// A sender's texts: when each was sent (closed loop) or due (open loop),
/// and which got their 9001.
struct Outbox {
    index: usize,
    stamp: Vec<u64>,
    answered: Vec<bool>,
    n_answered: u64,
    /// Fanout: receipts (9101) per text, and texts that have their 9001
    /// and every receipt. A fanout text stays in the window until then,
    /// so that the receipts the sender is owed stay within the server's
    /// send queue (window x recipients).
    receipts: Vec<u32>,
    n_complete: u64,
    recipients: usize,
}

impl Outbox {
    fn new(index: usize, recipients: usize) -> Outbox {
        Outbox {
            index,
            stamp: Vec::new(),
            answered: Vec::new(),
            n_answered: 0,
            receipts: Vec::new(),
            n_complete: 0,
            recipients,
        }
    }

    fn push(&mut self, stamp: u64) {
        self.stamp.push(stamp);
        self.answered.push(false);
        self.receipts.push(0);
    }

    /// Texts of the first `sent` that still hold a place in the window.
    fn in_flight(&self, sent: u64) -> u64 {
        if self.recipients > 1 {
            sent - self.n_complete
        } else {
            sent - self.n_answered
        }
    }

    /// Counts text `n` complete once it has its 9001 and all receipts.
    fn check_complete(&mut self, n: usize) {
        if self.answered[n] && self.receipts[n] as usize == self.recipients {
            self.n_complete += 1;
        }
    }

    /// One frame on a sender's connection: a 9001 for one of its texts, a
    /// forwarded receipt, or a text left over from an earlier run (which
    /// it acknowledges). Err: the connection is unusable.
    fn on_frame(
        &mut self,
        ws: &mut Ws,
        me: &str,
        text: &str,
        st: &mut Stats,
        shared: &RunShared,
        window: Window,
    ) -> Result<(), ()> {
        let Ok(f) = serde_json::from_str::<Frame>(text) else {
            st.error("sender: unreadable frame");
            return Ok(());
        };
        match f.kind {
            9001 => {
                let known = parse_text_id(&shared.tag, &f.id)
                    .filter(|(i, _)| *i == self.index)
                    .map(|(_, n)| n as usize)
                    .filter(|n| self.answered.get(*n) == Some(&false));
                let Some(n) = known else {
                    st.error(format!("9001 for an unknown or answered id {:?}", f.id));
                    return Ok(());
                };
                self.answered[n] = true;
                self.n_answered += 1;
                let (code, why) = status_of(&f.body);
                if code != 200 {
                    // No receipts will come: free its place.
                    self.n_complete += 1;
                    st.error(format!("9001 {why}"));
                    return Ok(());
                }
                self.check_complete(n);
                let now = now_ns();
                st.acked += 1;
                if now <= window.end {
                    st.acked_in_window += 1;
                }
                st.ack_latency.push(now.saturating_sub(self.stamp[n]));
                shared.acked.fetch_add(1, Ordering::Relaxed);
            }
            9101 => {
                st.receipts += 1;
                let n = parse_text_id(&shared.tag, &f.id)
                    .filter(|(i, _)| *i == self.index)
                    .map(|(_, n)| n as usize)
                    .filter(|n| *n < self.receipts.len());
                if let Some(n) = n {
                    self.receipts[n] += 1;
                    self.check_complete(n);
                }
            }
            2001 => {
                // Left over from an earlier run: acknowledge it so it stops.
                if let Err(e) = ws.send(Message::text(ack_frame(&f.id, me, &f.from))) {
                    st.error(format!("sender send: {e}"));
                    return Err(());
                }
            }
            other => st.error(format!("sender got type {other}")),
        }
        Ok(())
    }
}

enum Next {
    Text(tungstenite::Utf8Bytes),
    Idle,
    Gone,
}

/// The next text frame, `Idle` after a read timeout, `Gone` (recorded as
/// an error) when the server closed or the socket failed.
fn next_text(ws: &mut Ws, st: &mut Stats, who: &str) -> Next {
    match ws.read() {
        Ok(Message::Text(t)) => Next::Text(t),
        Ok(Message::Close(f)) => {
            st.error(format!("{who} closed by the server: {f:?}"));
            Next::Gone
        }
        Ok(_) => Next::Idle,
        Err(e) if is_timeout(&e) => Next::Idle,
        Err(e) => {
            st.error(format!("{who} read: {e}"));
            Next::Gone
        }
    }
}

/// Closed loop, one thread: send while fewer than `limit` texts wait for
/// their 9001, otherwise block in read (the answers wake it).
fn window_sender(
    mut ws: Ws,
    me: &str,
    to: &str,
    index: usize,
    shared: &RunShared,
    window: Window,
    limit: usize,
) -> Stats {
    let flow = &shared.flow;
    let mut st = Stats::default();
    let mut out = Outbox::new(index, flow.recipients);
    let pad = "x".repeat(flow.size.saturating_sub(STAMP_DIGITS));
    let hard_end = window.end + (flow.drain * 1e9) as u64;
    let cap = MAX_MESSAGES / flow.pairs as u64;
    let mut seq = 0u64;
    sleep_until_ns(window.start);
    for _ in 0..MAX_ITERATIONS {
        let now = now_ns();
        if now >= hard_end {
            break;
        }
        let sending = now < window.end && seq < cap;
        let mut wrote = false;
        while sending && seq < cap && out.in_flight(seq) < limit as u64 {
            let t = now_ns();
            if let Err(e) = send_text(&mut ws, me, to, &shared.tag, index, seq, t, &pad) {
                st.error(format!("sender send: {e}"));
                return finish(ws, st);
            }
            out.push(t);
            st.sent += 1;
            st.sent_in_window += 1;
            seq += 1;
            wrote = true;
        }
        if wrote && let Err(e) = ws.flush() {
            st.error(format!("sender send: {e}"));
            return finish(ws, st);
        }
        if !sending && out.n_answered == seq {
            break;
        }
        match next_text(&mut ws, &mut st, "sender") {
            Next::Text(t) => {
                if out
                    .on_frame(&mut ws, me, &t, &mut st, shared, window)
                    .is_err()
                {
                    return st;
                }
            }
            Next::Idle => {}
            Next::Gone => return st,
        }
    }
    if seq > out.n_answered {
        let n = seq - out.n_answered;
        st.error(format!("{n} texts without a 9001 after the drain time"));
    }
    finish(ws, st)
}

/// Open loop, two threads: a writer sends each text at its due time
/// (waiting on a channel, which wakes on time, unlike a socket timeout)
/// while this thread reads the answers.
fn rate_sender(
    mut ws: Ws,
    me: &str,
    to: &str,
    index: usize,
    shared: &RunShared,
    window: Window,
    rate: f64,
) -> Stats {
    let flow = &shared.flow;
    let mut st = Stats::default();
    let schedule = Schedule::new(flow, rate, index, window);
    let mut out = Outbox::new(index, 1);
    for k in 0..schedule.count {
        out.push(schedule.due(k));
    }
    let half = match split(&mut ws) {
        Ok(h) => h,
        Err(e) => {
            st.error(format!("split: {e}"));
            return st;
        }
    };
    let sent = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    let hard_end = window.end + (flow.drain * 1e9) as u64;
    thread::scope(|scope| {
        let writer = thread::Builder::new()
            .name(format!("{me}-w"))
            .stack_size(128 * 1024)
            .spawn_scoped(scope, || {
                let pace = Pace {
                    me,
                    to,
                    index,
                    shared,
                    window,
                    schedule: &schedule,
                    sent: &sent,
                    done: &done,
                };
                paced_writer(half, &pace)
            });
        let writer = match writer {
            Ok(w) => w,
            Err(e) => {
                st.error(format!("cannot start a writer thread: {e}"));
                return st;
            }
        };
        sleep_until_ns(window.start);
        for _ in 0..MAX_ITERATIONS {
            if now_ns() >= hard_end
                || (done.load(Ordering::Acquire) && out.n_answered >= sent.load(Ordering::Acquire))
            {
                break;
            }
            match next_text(&mut ws, &mut st, "sender") {
                Next::Text(t) => {
                    if out
                        .on_frame(&mut ws, me, &t, &mut st, shared, window)
                        .is_err()
                    {
                        break;
                    }
                }
                Next::Idle => {}
                Next::Gone => break,
            }
        }
        let unanswered = sent.load(Ordering::Acquire).saturating_sub(out.n_answered);
        if unanswered > 0 {
            st.error(format!(
                "{unanswered} texts without a 9001 after the drain time"
            ));
        }
        // The close goes out through the writer, which ends when `ws` is dropped.
        close(ws);
        st.merge(writer.join().unwrap_or_default());
        st
    })
}

/// What the paced writer needs to know.
struct Pace<'a> {
    me: &'a str,
    to: &'a str,
    index: usize,
    shared: &'a RunShared,
    window: Window,
    schedule: &'a Schedule,
    /// Texts written so far.
    sent: &'a AtomicU64,
    /// Set when the writer will send no more texts.
    done: &'a AtomicBool,
}

/// Sends every text of the schedule at its due time (late ones at once:
/// their latency still counts from the due time), and writes what the
/// reading side hands over (Pong, Close) until that side is dropped.
fn paced_writer(mut half: WriteHalf, p: &Pace) -> Stats {
    let mut st = Stats::default();
    let pad = "x".repeat(p.shared.flow.size.saturating_sub(STAMP_DIGITS));
    let hard_end = p.window.end + (p.shared.flow.drain * 1e9) as u64 + 2_000_000_000;
    let s = p.schedule;
    let mut seq = 0u64;
    let mut failed = false;
    for _ in 0..MAX_ITERATIONS {
        if !failed {
            let mut wrote = false;
            while seq < s.count && s.due(seq) <= now_ns() {
                let due = s.due(seq);
                let t = now_ns();
                let tag = &p.shared.tag;
                if let Err(e) = send_text(&mut half.ws, p.me, p.to, tag, p.index, seq, due, &pad) {
                    st.error(format!("sender send: {e}"));
                    failed = true;
                    break;
                }
                st.send_lag.push(t.saturating_sub(due));
                st.sent += 1;
                if t <= p.window.end {
                    st.sent_in_window += 1;
                }
                seq += 1;
                wrote = true;
            }
            if wrote && let Err(e) = half.ws.flush() {
                st.error(format!("sender send: {e}"));
                failed = true;
            }
            p.sent.store(seq, Ordering::Release);
            if failed || seq >= s.count {
                p.done.store(true, Ordering::Release);
            }
        }
        let wait = if !failed && seq < s.count {
            Duration::from_nanos(s.due(seq).saturating_sub(now_ns())).min(POLL)
        } else {
            POLL
        };
        match half.from_reader.recv_timeout(wait) {
            Ok(bytes) => {
                if half.ws.get_mut().write_all(&bytes).is_err() {
                    failed = true;
                    p.done.store(true, Ordering::Release);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if now_ns() >= hard_end {
            break;
        }
    }
    p.done.store(true, Ordering::Release);
    st
}

fn finish(ws: Ws, st: Stats) -> Stats {
    close(ws);
    st
}

/// Writes (does not flush) text `seq`; its body starts with `stamp`.
#[allow(clippy::too_many_arguments)] // the parts of one frame, kept flat for speed
fn send_text<S: Read + Write>(
    ws: &mut WebSocket<S>,
    me: &str,
    to: &str,
    tag: &str,
    index: usize,
    seq: u64,
    stamp: u64,
    pad: &str,
) -> Result<(), tungstenite::Error> {
    let id = text_id(tag, index, seq);
    let frame = format!(
        r#"{{"id":"{id}","type":2001,"isSystem":false,"from":"{me}","to":"{to}","body":"{stamp:0w$}{pad}"}}"#,
        w = STAMP_DIGITS
    );
    ws.write(Message::text(frame))
}

fn receiver(mut ws: Ws, me: &str, shared: &RunShared, window: Window) -> Stats {
    let mut st = Stats::default();
    let hard_end = window.end + (2.0 * shared.flow.drain * 1e9) as u64 + 1_000_000_000;
    // The last seq seen from each sender: delivery is in order, once.
    let mut last: HashMap<usize, u64> = HashMap::new();
    sleep_until_ns(window.start);
    for _ in 0..MAX_ITERATIONS {
        if shared.stop.load(Ordering::Relaxed) || now_ns() >= hard_end {
            break;
        }
        let text = match ws.read() {
            Ok(Message::Text(t)) => t,
            Ok(Message::Close(f)) => {
                st.error(format!("receiver closed by the server: {f:?}"));
                return st;
            }
            Ok(_) => continue,
            Err(e) if is_timeout(&e) => continue,
            Err(e) => {
                st.error(format!("receiver read: {e}"));
                return st;
            }
        };
        let now = now_ns();
        let Ok(f) = serde_json::from_str::<Frame>(&text) else {
            st.error("receiver: unreadable frame");
            continue;
        };
        match f.kind {
            2001 => {
                if let Some((sender, seq)) = parse_text_id(&shared.tag, &f.id) {
                    if last.get(&sender).is_some_and(|l| seq <= *l) {
                        st.error("a text delivered twice or out of order");
                    }
                    last.insert(sender, seq);
                    match f
                        .body
                        .get(..STAMP_DIGITS)
                        .and_then(|s| s.parse::<u64>().ok())
                    {
                        Some(t) => {
                            st.delivery_latency.push(now.saturating_sub(t));
                            if shared.flow.recipients > 1 {
                                st.deliveries.push((sender, seq, now.saturating_sub(t)));
                            }
                        }
                        None => st.error("a text without its time stamp"),
                    }
                    st.delivered += 1;
                    if now <= window.end {
                        st.delivered_in_window += 1;
                    }
                    shared.delivered.fetch_add(1, Ordering::Relaxed);
                }
                if let Err(e) = ws.send(Message::text(ack_frame(&f.id, me, &f.from))) {
                    st.error(format!("receiver send: {e}"));
                    return finish(ws, st);
                }
            }
            9001 => {
                let (code, why) = status_of(&f.body);
                if code != 200 {
                    st.error(format!("9001 to a receipt: {why}"));
                }
            }
            other => st.error(format!("receiver got type {other}")),
        }
    }
    finish(ws, st)
}

fn flow_figures(
    flow: &Flow,
    window: Window,
    mut t: Stats,
    cpu0: &CpuSample,
    cpu1: &CpuSample,
    rss0: Option<f64>,
    rss1: Option<f64>,
) -> RunResult {
    let secs = (window.end - window.start) as f64 / 1e9;
    t.ack_latency.sort_unstable();
    t.delivery_latency.sort_unstable();
    t.send_lag.sort_unstable();
    let diff = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => b - a,
        _ => f64::NAN,
    };
    let server_cpu = diff(cpu0.server, cpu1.server);
    let client_cpu = diff(cpu0.client, cpu1.client);
    let per_s = |n: u64| n as f64 / secs;
    let per_msg_us = if t.delivered_in_window > 0 {
        server_cpu * 1e6 / t.delivered_in_window as f64
    } else {
        f64::NAN
    };
    if flow.recipients > 1 {
        // The time until the last recipient had a text; texts that did not
        // reach every recipient count as unanswered.
        let mut per_text: HashMap<(usize, u64), (usize, u64)> = HashMap::new();
        for (sender, seq, ns) in &t.deliveries {
            let e = per_text.entry((*sender, *seq)).or_default();
            e.0 += 1;
            e.1 = e.1.max(*ns);
        }
        let mut last: Vec<u64> = per_text
            .values()
            .filter(|(n, _)| *n == flow.recipients)
            .map(|(_, ns)| *ns)
            .collect();
        last.sort_unstable();
        let all = t.sent * flow.recipients as u64;
        let figures = vec![
            ("messages_acked_per_s", per_s(t.acked_in_window)),
            ("deliveries_per_s", per_s(t.delivered_in_window)),
            ("ack_p50_ms", quantile_ms(&t.ack_latency, t.sent, 0.50)),
            ("ack_p99_ms", quantile_ms(&t.ack_latency, t.sent, 0.99)),
            ("last_delivery_p50_ms", quantile_ms(&last, t.sent, 0.50)),
            ("last_delivery_p99_ms", quantile_ms(&last, t.sent, 0.99)),
            (
                "any_delivery_p50_ms",
                quantile_ms(&t.delivery_latency, all, 0.50),
            ),
            ("server_cpu_us_per_delivery", per_msg_us),
            ("server_cpu_pct", server_cpu * 100.0 / secs),
            ("client_cpu_pct", client_cpu * 100.0 / secs),
            ("server_rss_kib", rss1.unwrap_or(f64::NAN)),
            ("sent", t.sent as f64),
            ("delivered", t.delivered as f64),
            ("receipts", t.receipts as f64),
        ];
        return RunResult {
            figures,
            errors: t.errors,
            delivered: t.delivered,
        };
    }
    let mut figures = vec![];
    if let Pacing::Rate(_) = flow.pacing {
        figures.push(("sent_per_s", per_s(t.sent_in_window)));
    }
    figures.extend([
        ("delivered_per_s", per_s(t.delivered_in_window)),
        ("acked_per_s", per_s(t.acked_in_window)),
        ("ack_p50_ms", quantile_ms(&t.ack_latency, t.sent, 0.50)),
        ("ack_p99_ms", quantile_ms(&t.ack_latency, t.sent, 0.99)),
        ("ack_p999_ms", quantile_ms(&t.ack_latency, t.sent, 0.999)),
        (
            "delivery_p50_ms",
            quantile_ms(&t.delivery_latency, t.sent, 0.50),
        ),
        (
            "delivery_p99_ms",
            quantile_ms(&t.delivery_latency, t.sent, 0.99),
        ),
        (
            "delivery_p999_ms",
            quantile_ms(&t.delivery_latency, t.sent, 0.999),
        ),
    ]);
    if let Pacing::Rate(_) = flow.pacing {
        figures.push(("send_lag_p99_ms", quantile_ms(&t.send_lag, t.sent, 0.99)));
    }
    figures.extend([
        ("server_cpu_us_per_msg", per_msg_us),
        ("server_cpu_pct", server_cpu * 100.0 / secs),
        ("client_cpu_pct", client_cpu * 100.0 / secs),
        ("server_rss_start_kib", rss0.unwrap_or(f64::NAN)),
        ("server_rss_kib", rss1.unwrap_or(f64::NAN)),
        ("sent", t.sent as f64),
        ("delivered", t.delivered as f64),
        ("receipts", t.receipts as f64),
    ]);
    RunResult {
        figures,
        errors: t.errors,
        delivered: t.delivered,
    }
}

// ---------------------------------------------------------------- idle, ramp

/// How long each step of one opened client took (ns), and when it was done.
struct Opening {
    total: u64,
    session_id: u64,
    handshake: u64,
    register: u64,
    done_at: u64,
}

/// What [`open_many`] got: the held sockets, the timings, the errors.
#[derive(Default)]
struct OpenedMany {
    sockets: Vec<TcpStream>,
    timings: Vec<Opening>,
    errors: BTreeMap<String, u64>,
}

/// Client `j` of idle and ramp: user, clientName.
fn hold_client(j: usize) -> (String, String) {
    (format!("u{}", j / CLIENTS_PER_USER), format!("c{j}"))
}

/// The tokens of every user the clients belong to, fetched before any
/// measurement (argon2 is slow on purpose, and a login is per user).
fn fetch_tokens(target: &Target, hold: &Hold) -> Result<(), String> {
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
fn open_many(target: &Target, hold: &Hold, first: usize, limit: Duration) -> OpenedMany {
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
                                        .tcp
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
fn server_threads(target: &Target) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", target.pid?)).ok()?;
    let line = status.lines().find(|l| l.starts_with("Threads:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Closes the held sockets (no close frame: the server sees the peer go)
/// and waits, at most 30 s, until the server's threads are back to
/// `threads_before`, so that the next run starts on a quiet server.
fn release(target: &Target, sockets: Vec<TcpStream>, threads_before: Option<f64>) {
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

/// The soft limit on open files of a process ("self" or a pid).
fn open_files_limit(pid: &str) -> Option<usize> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// K registered connections doing nothing: the server's RSS before and
/// after they are opened, and its CPU while they sit idle.
fn run_idle(target: &Target, hold: &Hold) -> Result<RunResult, String> {
    let mut hold = hold.clone();
    fetch_tokens(target, &hold)?;
    thread::sleep(Duration::from_millis(500));
    let threads0 = server_threads(target);
    let rss0 = target.server_rss_kib();
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
    let figures = vec![
        ("held", n as f64),
        ("server_rss_kib_per_conn", per_conn(diff(rss0, rss2))),
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
fn run_ramp(target: &Target, hold: &Hold) -> Result<RunResult, String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_samples_count_as_slower_than_any() {
        let sorted = [1_000_000, 2_000_000, 3_000_000];
        assert_eq!(quantile_ms(&sorted, 3, 0.5), 2.0);
        assert_eq!(quantile_ms(&sorted, 3, 0.99), 3.0);
        assert_eq!(quantile_ms(&sorted, 4, 0.99), f64::INFINITY);
        assert!(quantile_ms(&[], 0, 0.5).is_nan());
    }

    #[test]
    fn the_median_skips_unmeasured_runs() {
        assert_eq!(median([3.0, 1.0, 2.0].into_iter()), 2.0);
        assert_eq!(median([1.0, f64::NAN, 3.0].into_iter()), 2.0);
        assert!(median(std::iter::empty()).is_nan());
    }

    #[test]
    fn text_ids_round_trip_and_other_runs_do_not_match() {
        let id = text_id("abc", 7, 42);
        assert_eq!(parse_text_id("abc", &id), Some((7, 42)));
        assert_eq!(parse_text_id("abd", &id), None);
    }

    #[test]
    fn only_loopback_hosts_are_accepted() {
        assert!(is_loopback("127.0.0.1:8080"));
        assert!(is_loopback("[::1]:80"));
        assert!(is_loopback("localhost:1"));
        assert!(!is_loopback("192.168.1.2:8080"));
        assert!(!is_loopback("example.org:80"));
    }

    #[test]
    fn a_rate_schedule_spreads_the_total_over_the_senders() {
        let flow = Flow {
            pairs: 4,
            recipients: 1,
            seconds: 1.0,
            size: 120,
            pacing: Pacing::Rate(1000.0),
            drain: 1.0,
        };
        let w = Window {
            start: 0,
            end: 1_000_000_000,
        };
        let total: u64 = (0..4)
            .map(|i| Schedule::new(&flow, 1000.0, i, w).count)
            .sum();
        assert_eq!(total, 1000);
        let s1 = Schedule::new(&flow, 1000.0, 1, w);
        assert_eq!(s1.due(0), 1_000_000);
        assert_eq!(s1.due(1), 5_000_000);
    }
}
