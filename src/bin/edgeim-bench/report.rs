//! The output: one JSON line on stdout, a table on stderr.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::args::Options;
use crate::probe::{FLOOD_MEDIAN_MS, ProbeResult, QUIET_MEDIAN_MS, QUIET_P99_MS};
use crate::stats::{RunResult, median};

/// Prints the JSON line and the table; true if every run passed.
pub(crate) fn report(
    opts: &Options,
    server: &str,
    results: &[RunResult],
    server_log: Option<&(u64, Vec<String>)>,
    exit: Option<&Result<(), String>>,
) -> bool {
    let s = &opts.scenario;
    // In this order: scenario, its parameters, figures, errors.
    let mut line: Vec<(String, Value)> = vec![
        ("scenario".into(), json!(s.name())),
        ("server".into(), json!(server)),
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
        "\n{} on {server} ({}), {} run(s), medians:",
        s.name(),
        params.join(" "),
        results.len()
    );
    let mut head = format!("  {:<30} {:>12}", "figure", "median");
    for i in 0..results.len() {
        head.push_str(&format!(" {:>12}", format!("run {}", i + 1)));
    }
    eprintln!("{head}");
    for (k, m) in keys.iter().zip(&medians) {
        let mut row = format!("  {:<30} {:>12}", k, show(k, *m));
        for r in results {
            row.push_str(&format!(" {:>12}", show(k, r.get(k).unwrap_or(f64::NAN))));
        }
        eprintln!("{row}");
    }
    eprintln!("  (ms figures: >drain = not answered within --drain; cpu_pct: % of one core;");
    eprintln!("   ctx: server context switches, over the threads alive at the window's end;");
    eprintln!("   disk bytes: /proc/PID/io write_bytes; commits, fsyncs: edgeim's /metrics)");
    for (k, n) in &errors {
        eprintln!("  error x{n}: {k}");
    }
    show_server_log(server_log);
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

/// JSON value of a figure: three decimals; not measured or unanswered = null.
pub(crate) fn rounded(v: f64) -> Value {
    if v.is_finite() {
        json!((v * 1000.0).round() / 1000.0)
    } else {
        Value::Null
    }
}

pub(crate) fn show(key: &str, v: f64) -> String {
    if v.is_nan() {
        return "n/a".into();
    }
    if v.is_infinite() {
        return ">drain".into();
    }
    if key.ends_with("_ms") || key.contains("_commits_") || key.contains("_fsyncs_") {
        format!("{v:.3}")
    } else if key.contains("_ctx_") {
        format!("{v:.2}")
    } else if key.contains("_us_per_") || key.ends_with("_pct") || key.ends_with("_per_conn") {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

/// The probe's JSON line (one object per attack under `attacks`) and its
/// table; true unless an attack broke the server (not alive after it, or
/// an acknowledged text lost) or the server did not stop cleanly. Missed
/// latency targets are reported, not failed.
pub(crate) fn report_probe(
    opts: &Options,
    found: &ProbeResult,
    server_log: Option<&(u64, Vec<String>)>,
    exit: Option<&Result<(), String>>,
) -> bool {
    let rows = &found.rows;
    let attacks: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "attack": r.attack,
                "kind": r.kind.name(),
                "sent": r.sent,
                "acked": r.acked,
                "refused": r.refused,
                "lost": r.lost,
                "rtt_p50_ms": rounded(r.median_ms),
                "rtt_p99_ms": rounded(r.p99_ms),
                "ack_p50_ms": rounded(r.ack_median_ms),
                "alive": r.alive,
                "target_met": r.met(),
                "attacker_saw": r.attacker,
            })
        })
        .collect();
    let broken = rows.iter().filter(|r| r.broken()).count();
    let missed = rows.iter().filter(|r| !r.met()).count();
    // In this order, as the other scenarios' lines: scenario, parameters,
    // figures, errors.
    let mut line: Vec<(&str, Value)> = vec![("scenario", json!(opts.scenario.name()))];
    line.extend(opts.scenario.params());
    line.extend([
        ("attacks", json!(attacks)),
        ("broken", json!(broken)),
        ("targets_missed", json!(missed)),
        ("polite_errors", json!(found.errors)),
    ]);
    if let Some((warnings, _)) = server_log {
        line.push(("server_warnings", json!(warnings)));
    }
    let fields: Vec<String> = line
        .iter()
        .map(|(k, v)| format!("{}:{v}", Value::from(*k)))
        .collect();
    println!("{{{}}}", fields.join(","));

    eprintln!(
        "\nprobe: polite pair u0 -> u1, a text every 10 ms; rtt = send -> receipt (9101) \
         back at u0, 9001 = send -> 9001"
    );
    eprintln!(
        "  {:<24} {:<5} {:>5} {:>5} {:>4} {:>4} {:>9} {:>9} {:>9} {:<5} {:<6} attacker saw",
        "attack",
        "kind",
        "sent",
        "acked",
        "ref",
        "lost",
        "rtt p50",
        "rtt p99",
        "9001 p50",
        "alive",
        "target"
    );
    for r in rows {
        eprintln!(
            "  {:<24} {:<5} {:>5} {:>5} {:>4} {:>4} {:>9} {:>9} {:>9} {:<5} {:<6} {}",
            r.attack,
            r.kind.name(),
            r.sent,
            r.acked,
            r.refused,
            r.lost,
            show("_ms", r.median_ms),
            show("_ms", r.p99_ms),
            show("_ms", r.ack_median_ms),
            if r.alive { "yes" } else { "NO" },
            if r.met() { "met" } else { "missed" },
            r.attacker
        );
    }
    eprintln!(
        "  (targets: quiet p50 < {QUIET_MEDIAN_MS} ms and p99 < {QUIET_P99_MS} ms, \
         flood p50 < {FLOOD_MEDIAN_MS} ms; ms in ms, >drain = not answered)"
    );
    for (k, n) in &found.errors {
        eprintln!("  polite pair x{n}: {k}");
    }
    show_server_log(server_log);
    let mut ok = true;
    for r in rows.iter().filter(|r| r.broken()) {
        eprintln!(
            "edgeim-bench: FAIL: {} broke the server: {}",
            r.attack,
            if r.alive {
                format!("{} acknowledged texts lost", r.lost)
            } else {
                "/healthz did not answer 200 after it".into()
            }
        );
        ok = false;
    }
    if missed > 0 {
        eprintln!(
            "edgeim-bench: {missed} window(s) missed the latency target (reported, not failed)"
        );
    }
    if let Some(Err(e)) = exit {
        eprintln!("edgeim-bench: FAIL: {e}");
        ok = false;
    }
    ok
}

/// The server's warnings and errors, if it logged any.
fn show_server_log(server_log: Option<&(u64, Vec<String>)>) {
    if let Some((warnings, tail)) = server_log
        && *warnings > 0
    {
        eprintln!("  server logged {warnings} warnings/errors; last ones:");
        for l in tail {
            eprintln!("    {l}");
        }
    }
}
