//! `GET /metrics`: counters in Prometheus's text format (version 0.0.4),
//! kept in one process-wide set of atomics that the threads bump as they
//! work (a relaxed add each: no lock, no allocation on any hot path), and
//! read, together with the router's table and `/proc/self`, when scraped.
//! docs/OPERATIONS.md, "Metrics", explains each series.

use std::fmt::Write as _;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::wire::frames::FrameType;

/// The 9001 codes of PROTOCOL.md section 5, in order.
const CODES: [u16; 9] = [200, 400, 401, 402, 403, 404, 405, 406, 407];
/// The types of text frames the server writes, in the order of
/// `Metrics::frames_out`.
const FRAMES_OUT: [FrameType; 4] = [
    FrameType::Status,
    FrameType::Text,
    FrameType::Receipt,
    FrameType::Presence,
];

/// Upper bounds of the commit-time histograms, in seconds.
const COMMIT_BUCKETS: [f64; 10] = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 2.0];

/// A histogram over [`COMMIT_BUCKETS`]. Each observation bumps one bucket
/// (the first bound it fits under, none past the last), so an observation
/// costs three relaxed adds; the rendering makes the buckets cumulative.
#[derive(Default)]
struct Histogram {
    count: AtomicU64,
    sum_us: AtomicU64,
    buckets: [AtomicU64; COMMIT_BUCKETS.len()],
}

impl Histogram {
    fn observe(&self, took: Duration) {
        self.count.fetch_add(1, Relaxed);
        self.sum_us
            .fetch_add(took.as_micros().min(u64::MAX as u128) as u64, Relaxed);
        let secs = took.as_secs_f64();
        if let Some(i) = COMMIT_BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
    }

    /// The `_bucket`, `_sum` and `_count` samples, as label suffixes.
    fn samples(&self) -> Vec<(String, f64)> {
        let mut out = Vec::new();
        let mut cumulative = 0;
        for (b, n) in COMMIT_BUCKETS.iter().zip(&self.buckets) {
            cumulative += n.load(Relaxed);
            out.push((format!("_bucket{{le=\"{b}\"}}"), cumulative as f64));
        }
        let count = self.count.load(Relaxed);
        out.push(("_bucket{le=\"+Inf\"}".to_string(), count as f64));
        out.push(("_sum".to_string(), self.sum_us.load(Relaxed) as f64 / 1e6));
        out.push(("_count".to_string(), count as f64));
        out
    }
}

/// Every counter and gauge edgeim keeps.
#[derive(Default)]
pub struct Metrics {
    /// Open WebSocket connections (after the handshake).
    pub connections: AtomicU64,
    /// Bytes waiting in the connections' send queues, all of them
    /// ([`crate::conn::queue::Queued`] keeps it).
    pub send_queue_bytes: AtomicU64,
    /// Texts accepted and stored (resends not counted).
    pub texts_accepted: AtomicU64,
    /// Live text frames serialised: one per accepted text, whatever the
    /// number of recipients (a group's 500 members share one).
    pub text_frames_built: AtomicU64,
    /// Receipts (9101) recorded.
    pub receipts: AtomicU64,
    /// Connections closed as slow.
    pub slow_closes: AtomicU64,
    /// Logins by outcome.
    pub logins_ok: AtomicU64,
    /// Wrong user or password.
    pub logins_failed: AtomicU64,
    /// Answered 429 by the throttle.
    pub logins_throttled: AtomicU64,
    /// Frames refused by a connection's rate limit.
    pub rate_limited: AtomicU64,
    /// Text frames in: register, text, receipt, another type, not a message.
    frames_in: [AtomicU64; 5],
    /// Text frames written: 9001, 2001, 9101, 3001 ([`FRAMES_OUT`]).
    frames_out: [AtomicU64; FRAMES_OUT.len()],
    status: [AtomicU64; CODES.len()],
    /// Each batch's transaction, from BEGIN to the end of COMMIT.
    commit: Histogram,
    /// The COMMIT statement alone (the WAL write and its fsync).
    commit_sync: Histogram,
}

/// What a scrape reads besides the counters.
pub struct Scrape {
    /// (registered clients, users online) from the router, when it
    /// answered in time.
    pub online: Option<(usize, usize)>,
    /// Events waiting in the router's queue.
    pub router_queue: usize,
    /// Ops waiting in the store's queue.
    pub store_queue: usize,
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(Metrics::default)
}

impl Metrics {
    /// A 9001 with this code was built.
    pub fn status(&self, code: u16) {
        if let Some(i) = CODES.iter().position(|c| *c == code) {
            self.status[i].fetch_add(1, Relaxed);
        }
    }

    /// A text frame arrived: its type, or `None` when it is not a message.
    pub fn frame_in(&self, kind: Option<i64>) {
        let i = match kind {
            Some(1000) => 0,
            Some(2001) => 1,
            Some(9101) => 2,
            Some(_) => 3,
            None => 4,
        };
        self.frames_in[i].fetch_add(1, Relaxed);
    }

    /// The writer wrote a text frame of this type.
    pub fn frame_out(&self, kind: FrameType) {
        let counter = match kind {
            FrameType::Status => &self.frames_out[0],
            FrameType::Text => &self.frames_out[1],
            FrameType::Receipt => &self.frames_out[2],
            FrameType::Presence => &self.frames_out[3],
        };
        counter.fetch_add(1, Relaxed);
    }

    /// A store batch committed: its whole transaction took `took`, of
    /// which the COMMIT statement took `sync`.
    pub fn commit(&self, took: Duration, sync: Duration) {
        self.commit.observe(took);
        self.commit_sync.observe(sync);
    }

    /// The exposition text.
    pub fn render(&self, scrape: &Scrape) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, lines: &[(String, f64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, v) in lines {
                let _ = writeln!(out, "{name}{labels} {v}");
            }
        };
        let one = |v: u64| vec![(String::new(), v as f64)];
        let version = format!("{{version=\"{}\"}}", env!("CARGO_PKG_VERSION"));
        metric(
            "edgeim_build_info",
            "gauge",
            "The running edgeim.",
            &[(version, 1.0)],
        );
        let get = |a: &AtomicU64| a.load(Relaxed);
        // One line per label value, `{label="value"}`, from parallel lists.
        let by = |label: &str, values: Vec<String>, counters: &[AtomicU64]| -> Vec<(String, f64)> {
            values
                .into_iter()
                .zip(counters)
                .map(|(v, n)| (format!("{{{label}=\"{v}\"}}"), get(n) as f64))
                .collect()
        };
        metric(
            "edgeim_websocket_connections",
            "gauge",
            "Open WebSocket connections.",
            &one(get(&self.connections)),
        );
        if let Some((clients, users)) = scrape.online {
            metric(
                "edgeim_clients_registered",
                "gauge",
                "Registered clients.",
                &one(clients as u64),
            );
            metric(
                "edgeim_users_online",
                "gauge",
                "Users with a registered client.",
                &one(users as u64),
            );
        }
        metric(
            "edgeim_send_queue_bytes",
            "gauge",
            "Bytes queued for the connections' writers and not yet taken to be written.",
            &one(get(&self.send_queue_bytes)),
        );
        metric(
            "edgeim_router_queue_items",
            "gauge",
            "Events waiting in the router's queue.",
            &one(scrape.router_queue as u64),
        );
        metric(
            "edgeim_store_queue_items",
            "gauge",
            "Ops waiting in the store's queue.",
            &one(scrape.store_queue as u64),
        );
        metric(
            "edgeim_texts_accepted_total",
            "counter",
            "Texts stored (resends not counted).",
            &one(get(&self.texts_accepted)),
        );
        metric(
            "edgeim_text_frames_built_total",
            "counter",
            "Live text frames serialised: one per text, shared by all its recipients.",
            &one(get(&self.text_frames_built)),
        );
        metric(
            "edgeim_receipts_total",
            "counter",
            "Receipts (9101) recorded.",
            &one(get(&self.receipts)),
        );
        let statuses = by("code", CODES.map(|c| c.to_string()).to_vec(), &self.status);
        metric(
            "edgeim_send_status_total",
            "counter",
            "9001 answers made (queued to be sent), by code.",
            &statuses,
        );
        let kinds = ["1000", "2001", "9101", "other", "invalid"].map(String::from);
        let frames = by("type", kinds.to_vec(), &self.frames_in);
        metric(
            "edgeim_frames_in_total",
            "counter",
            "WebSocket text frames in, by message type.",
            &frames,
        );
        let codes = FRAMES_OUT.iter().map(|k| k.code().to_string()).collect();
        let frames = by("type", codes, &self.frames_out);
        metric(
            "edgeim_frames_out_total",
            "counter",
            "WebSocket text frames written, by message type.",
            &frames,
        );
        metric(
            "edgeim_rate_limited_total",
            "counter",
            "Frames refused by a connection's rate limit.",
            &one(get(&self.rate_limited)),
        );
        metric(
            "edgeim_slow_closes_total",
            "counter",
            "Connections closed as slow.",
            &one(get(&self.slow_closes)),
        );
        let logins = vec![
            ("{result=\"ok\"}".to_string(), get(&self.logins_ok) as f64),
            (
                "{result=\"failed\"}".to_string(),
                get(&self.logins_failed) as f64,
            ),
            (
                "{result=\"throttled\"}".to_string(),
                get(&self.logins_throttled) as f64,
            ),
        ];
        metric(
            "edgeim_logins_total",
            "counter",
            "Logins, by result.",
            &logins,
        );
        metric(
            "edgeim_store_commit_seconds",
            "histogram",
            "Time of each store batch, BEGIN to the end of COMMIT (the fsync included).",
            &self.commit.samples(),
        );
        metric(
            "edgeim_store_commit_sync_seconds",
            "histogram",
            "Time of each batch's COMMIT statement alone: the WAL write and its fsync.",
            &self.commit_sync.samples(),
        );
        let (threads, rss, fds) = process();
        metric(
            "edgeim_threads",
            "gauge",
            "Threads of the process.",
            &one(threads),
        );
        metric(
            "edgeim_resident_memory_bytes",
            "gauge",
            "Resident memory of the process.",
            &one(rss),
        );
        metric(
            "edgeim_open_fds",
            "gauge",
            "Open file descriptors.",
            &one(fds),
        );
        out
    }
}

/// (threads, resident bytes, open descriptors) from `/proc/self`; zeros
/// where there is no `/proc`.
fn process() -> (u64, u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
    (field("Threads:"), field("VmRSS:") * 1024, fds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_has_help_type_and_a_cumulative_histogram() {
        let m = Metrics::default();
        m.status(200);
        m.status(407);
        m.status(999);
        m.commit(Duration::from_micros(700), Duration::from_micros(300));
        m.commit(Duration::from_secs(5), Duration::from_secs(3));
        m.frame_out(FrameType::Text);
        m.frame_out(FrameType::Text);
        m.frame_out(FrameType::Receipt);
        m.frame_out(FrameType::Presence);
        let text = m.render(&Scrape {
            online: Some((3, 2)),
            router_queue: 7,
            store_queue: 0,
        });
        assert!(text.contains("edgeim_router_queue_items 7\n"));
        assert!(text.contains("edgeim_frames_out_total{type=\"9001\"} 0\n"));
        assert!(text.contains("edgeim_frames_out_total{type=\"2001\"} 2\n"));
        assert!(text.contains("edgeim_frames_out_total{type=\"9101\"} 1\n"));
        assert!(text.contains("edgeim_frames_out_total{type=\"3001\"} 1\n"));
        assert!(text.contains("# TYPE edgeim_send_status_total counter"));
        assert!(text.contains("edgeim_send_status_total{code=\"200\"} 1\n"));
        assert!(text.contains("edgeim_send_status_total{code=\"407\"} 1\n"));
        assert!(text.contains("edgeim_store_commit_seconds_bucket{le=\"0.0005\"} 0\n"));
        assert!(text.contains("edgeim_store_commit_seconds_bucket{le=\"0.001\"} 1\n"));
        assert!(text.contains("edgeim_store_commit_seconds_bucket{le=\"+Inf\"} 2\n"));
        assert!(text.contains("edgeim_store_commit_seconds_count 2\n"));
        assert!(text.contains("edgeim_store_commit_sync_seconds_bucket{le=\"0.0005\"} 1\n"));
        assert!(text.contains("edgeim_store_commit_sync_seconds_bucket{le=\"2\"} 1\n"));
        assert!(text.contains("edgeim_store_commit_sync_seconds_sum 3.0003\n"));
        assert!(text.contains("edgeim_users_online 2\n"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = line.rsplit_once(' ').expect("name value");
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
}
