//! What a delivered text costs the server: CPU time, context switches,
//! bytes dirtied for the disk, and (edgeim) store commits and fsyncs,
//! each sampled at the start and the end of the measured window
//! ([`ServerSample`]) and divided by the texts delivered in it
//! ([`per_text`]).
//!
//! Caveats, in the report too: context switches are summed over the
//! threads listed in `/proc/PID/task` at each sample, by thread id; a
//! thread that ends before the second sample takes its switches with it
//! (in a flow every connection is open for the whole window, so none
//! does), and one that starts in the window counts from zero. Disk bytes
//! are `/proc/PID/io`'s `write_bytes`: page cache dirtied for files, so a
//! page rewritten while still dirty counts once. Commits and fsyncs come
//! from edgeim's `GET /metrics`: commits are store batches
//! (`edgeim_store_commit_seconds_count`), fsyncs are COMMIT statements
//! (`edgeim_store_commit_sync_seconds_count`: in WAL mode with
//! `synchronous=FULL` each syncs the WAL once); the checkpoints' fsyncs
//! are not counted. All need the server's pid (`--spawn`, `--pid`) except
//! commits and fsyncs; without it they are n/a.

use std::collections::HashMap;
use std::time::Duration;

use crate::procfs::{cpu_seconds, ctx_switches, write_bytes};
use crate::target::Server;

/// The counters of `/metrics` the report uses.
pub(crate) const COMMITS: &str = "edgeim_store_commit_seconds_count";
pub(crate) const FSYNCS: &str = "edgeim_store_commit_sync_seconds_count";

/// The server's counters at one moment; None where they cannot be read.
#[derive(Default)]
pub(crate) struct ServerSample {
    /// CPU seconds of the server.
    pub(crate) cpu: Option<f64>,
    /// CPU seconds of the generator itself.
    pub(crate) client_cpu: Option<f64>,
    /// Per thread id: (voluntary, involuntary) context switches.
    pub(crate) ctx: Option<HashMap<u32, (u64, u64)>>,
    pub(crate) disk_bytes: Option<u64>,
    pub(crate) commits: Option<f64>,
    pub(crate) fsyncs: Option<f64>,
}

impl ServerSample {
    /// Samples the server. The metrics scrape costs the server a request:
    /// at the start of a window it comes before the /proc reads and at
    /// the end after them, so its CPU falls outside the window.
    pub(crate) fn take(server: Server<'_>, ticks: f64, at_start: bool) -> ServerSample {
        let scrape = || match server {
            Server::Edgeim(t) => scrape_metrics(t),
            Server::Mqtt(_) => None,
        };
        let metrics = if at_start { scrape() } else { None };
        let pid = server.pid().map(|p| p.to_string());
        let pid = pid.as_deref();
        let mut s = ServerSample {
            cpu: pid.and_then(|p| cpu_seconds(p, ticks)),
            client_cpu: cpu_seconds("self", ticks),
            ctx: pid
                .and_then(ctx_switches)
                .map(|v| v.into_iter().map(|(t, a, b)| (t, (a, b))).collect()),
            disk_bytes: pid.and_then(write_bytes),
            ..ServerSample::default()
        };
        let metrics = if at_start { metrics } else { scrape() };
        if let Some(m) = metrics {
            s.commits = counter(&m, COMMITS);
            s.fsyncs = counter(&m, FSYNCS);
        }
        s
    }
}

/// `GET /metrics` of an edgeim server, within a second.
fn scrape_metrics(t: &crate::target::Target) -> Option<String> {
    let r = t
        .server
        .get("/metrics")
        .timeout(Duration::from_secs(1))
        .send()
        .ok()?;
    (r.status == 200).then(|| r.text())
}

/// The value of an unlabelled sample `name` in Prometheus's text format.
pub(crate) fn counter(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == name).then(|| v.trim().parse::<f64>().ok())?
    })
}

/// Context switches between two samples: (voluntary, involuntary), over
/// the threads alive at the second (a thread new since the first counts
/// from zero; one that ended is lost).
pub(crate) fn ctx_delta(a: &HashMap<u32, (u64, u64)>, b: &HashMap<u32, (u64, u64)>) -> (u64, u64) {
    let mut d = (0, 0);
    for (tid, (v, n)) in b {
        let (v0, n0) = a.get(tid).copied().unwrap_or((0, 0));
        d.0 += v.saturating_sub(v0);
        d.1 += n.saturating_sub(n0);
    }
    d
}

/// `after − before` per delivered text; NaN (n/a) if either is unknown or
/// nothing was delivered.
pub(crate) fn per_text(before: Option<f64>, after: Option<f64>, texts: u64) -> f64 {
    match (before, after) {
        (Some(a), Some(b)) if texts > 0 => (b - a) / texts as f64,
        _ => f64::NAN,
    }
}

/// The per-text figures of a window (`what`: "msg" or "delivery", the
/// unit of the scenario's existing CPU figure).
pub(crate) fn figures(
    a: &ServerSample,
    b: &ServerSample,
    texts: u64,
    what: &str,
) -> Vec<(&'static str, f64)> {
    let ctx = match (&a.ctx, &b.ctx) {
        (Some(a), Some(b)) => {
            let (v, n) = ctx_delta(a, b);
            (Some(v as f64), Some(n as f64))
        }
        _ => (None, None),
    };
    let f = |x: Option<u64>| x.map(|v| v as f64);
    // The names are static strings (the report's keys): both spelled out.
    let name = |msg: &'static str, delivery: &'static str| {
        if what == "delivery" { delivery } else { msg }
    };
    vec![
        (
            name("server_ctx_vol_per_msg", "server_ctx_vol_per_delivery"),
            per_text(Some(0.0), ctx.0, texts),
        ),
        (
            name("server_ctx_invol_per_msg", "server_ctx_invol_per_delivery"),
            per_text(Some(0.0), ctx.1, texts),
        ),
        (
            name(
                "server_disk_bytes_per_msg",
                "server_disk_bytes_per_delivery",
            ),
            per_text(f(a.disk_bytes), f(b.disk_bytes), texts),
        ),
        (
            name("server_commits_per_msg", "server_commits_per_delivery"),
            per_text(a.commits, b.commits, texts),
        ),
        (
            name("server_fsyncs_per_msg", "server_fsyncs_per_delivery"),
            per_text(a.fsyncs, b.fsyncs, texts),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_found_by_their_whole_name() {
        let text = "# HELP edgeim_store_commit_seconds x\n\
                    edgeim_store_commit_seconds_bucket{le=\"+Inf\"} 5\n\
                    edgeim_store_commit_seconds_sum 0.25\n\
                    edgeim_store_commit_seconds_count 5\n\
                    edgeim_store_commit_sync_seconds_count 4\n";
        assert_eq!(counter(text, COMMITS), Some(5.0));
        assert_eq!(counter(text, FSYNCS), Some(4.0));
        assert_eq!(counter(text, "edgeim_store_commit_seconds"), None);
        assert_eq!(counter("edgeim_x_count oops\n", "edgeim_x_count"), None);
    }

    #[test]
    fn context_switches_count_the_threads_alive_at_the_end() {
        let a = HashMap::from([(1, (10, 1)), (2, (5, 5)), (3, (100, 100))]);
        // 1 went on, 2 is unchanged, 3 ended (lost), 4 is new.
        let b = HashMap::from([(1, (30, 2)), (2, (5, 5)), (4, (7, 3))]);
        assert_eq!(ctx_delta(&a, &b), (27, 4));
    }

    #[test]
    fn per_text_figures_are_na_without_both_samples_or_texts() {
        assert_eq!(per_text(Some(1.0), Some(5.0), 2), 2.0);
        assert!(per_text(None, Some(5.0), 2).is_nan());
        assert!(per_text(Some(1.0), Some(5.0), 0).is_nan());
        let a = ServerSample {
            ctx: Some(HashMap::from([(1, (0, 0))])),
            disk_bytes: Some(0),
            commits: Some(10.0),
            fsyncs: Some(10.0),
            ..ServerSample::default()
        };
        let b = ServerSample {
            ctx: Some(HashMap::from([(1, (400, 100))])),
            disk_bytes: Some(40_000),
            commits: Some(20.0),
            fsyncs: Some(20.0),
            ..ServerSample::default()
        };
        let f = figures(&a, &b, 100, "msg");
        let get = |k: &str| f.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
        assert_eq!(get("server_ctx_vol_per_msg"), Some(4.0));
        assert_eq!(get("server_ctx_invol_per_msg"), Some(1.0));
        assert_eq!(get("server_disk_bytes_per_msg"), Some(400.0));
        assert_eq!(get("server_commits_per_msg"), Some(0.1));
        assert_eq!(get("server_fsyncs_per_msg"), Some(0.1));
        let none = figures(&ServerSample::default(), &b, 100, "delivery");
        assert!(none.iter().all(|(_, v)| v.is_nan()));
    }
}
