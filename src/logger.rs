//! The log: lines go through a bounded queue to a thread of their own that
//! writes them to stderr, so that logging never blocks the router or the
//! store on a slow terminal or journal, and a closed stderr (EPIPE) is an
//! error that is ignored, not a panic. When the queue is full, lines are
//! dropped and counted; the count is logged once there is room again.
//!
//! The format is `LEVEL [target] message`, one line each; journald adds
//! the timestamps.

use std::fmt::Write as _;
use std::io::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use log::{Level, LevelFilter, Log, Metadata, Record};

/// Lines waiting to be written. A burst of warnings (many connections
/// closing as slow at once) fits; a sustained flood is dropped, counted.
pub const LOG_QUEUE: usize = 4096;
/// Longest message kept, in bytes: a client's text quoted in a log line
/// cannot make one line huge.
const MAX_LINE: usize = 2048;

enum Item {
    Line(String),
    /// Reply once everything before has been written.
    Flush(Sender<()>),
}

struct Logger {
    /// A [`LevelFilter`] as its `usize`: SIGHUP may change it
    /// ([`set_level`]) while every thread logs, and an atomic read is all
    /// a log call pays for that.
    level: AtomicUsize,
    /// Targets below `quiet_level` unless they are ours (tungstenite logs
    /// every frame at trace).
    quiet: &'static [&'static str],
    quiet_level: LevelFilter,
    queue: Sender<Item>,
    dropped: AtomicU64,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// Starts the log thread and makes it the `log` crate's logger. `quiet`
/// targets (and their submodules) log at most at `quiet_level`. Only the
/// first call counts.
pub fn init(
    level: LevelFilter,
    quiet: &'static [&'static str],
    quiet_level: LevelFilter,
) -> std::io::Result<()> {
    let (tx, rx) = bounded(LOG_QUEUE);
    let logger = Logger {
        level: AtomicUsize::new(level as usize),
        quiet,
        quiet_level,
        queue: tx,
        dropped: AtomicU64::new(0),
    };
    if LOGGER.set(logger).is_err() {
        return Ok(());
    }
    std::thread::Builder::new()
        .name("log".into())
        .stack_size(64 * 1024)
        .spawn(move || write_lines(rx, std::io::stderr()))?;
    if let Some(l) = LOGGER.get() {
        // Fails only if another logger was set first; then that one logs.
        let _ = log::set_logger(l);
        log::set_max_level(level);
    }
    Ok(())
}

/// Logs at `level` from now on (a reload of `log_level`).
pub fn set_level(level: LevelFilter) {
    if let Some(l) = LOGGER.get() {
        l.level.store(level as usize, Ordering::Relaxed);
    }
    // The `log` macros test this first: without it, a level raised above
    // the one at start would never reach the logger.
    log::set_max_level(level);
}

/// The level to log at: `EDGEIM_LOG` when it names one, else `configured`
/// (the config's `log_level`).
pub fn effective_level(configured: LevelFilter) -> LevelFilter {
    env_level().unwrap_or(configured)
}

/// `EDGEIM_LOG`, when it names a level.
pub fn env_level() -> Option<LevelFilter> {
    std::env::var("EDGEIM_LOG")
        .ok()
        .and_then(|l| l.parse::<LevelFilter>().ok())
}

/// The filter a `usize` from [`Logger::level`] stands for.
fn filter_of(n: usize) -> LevelFilter {
    [
        LevelFilter::Off,
        LevelFilter::Error,
        LevelFilter::Warn,
        LevelFilter::Info,
        LevelFilter::Debug,
        LevelFilter::Trace,
    ]
    .get(n)
    .copied()
    .unwrap_or(LevelFilter::Trace)
}

/// Waits, at most `wait`, until every line logged so far is written.
pub fn flush(wait: Duration) {
    let Some(l) = LOGGER.get() else { return };
    let (tx, rx) = bounded(1);
    if l.queue.send_timeout(Item::Flush(tx), wait).is_ok() {
        let _ = rx.recv_timeout(wait);
    }
}

/// The log thread: one write per line, errors ignored (nobody to tell).
fn write_lines(rx: Receiver<Item>, mut out: impl Write) {
    for item in rx {
        match item {
            Item::Line(line) => {
                let _ = out.write_all(line.as_bytes());
            }
            Item::Flush(done) => {
                let _ = out.flush();
                let _ = done.send(());
            }
        }
    }
}

/// `LEVEL [target] message\n`, the message cut at [`MAX_LINE`] and its
/// line breaks shown as `\n`, so that one record is one line.
fn format_line(level: Level, target: &str, args: &std::fmt::Arguments) -> String {
    let mut msg = String::new();
    let _ = write!(msg, "{args}");
    if msg.len() > MAX_LINE {
        let mut cut = MAX_LINE;
        while !msg.is_char_boundary(cut) {
            cut -= 1;
        }
        msg.truncate(cut);
        msg.push('…');
    }
    let msg = msg.replace('\n', "\\n");
    format!("{:<5} [{target}] {msg}\n", level.to_string())
}

impl Logger {
    fn level_for(&self, target: &str) -> LevelFilter {
        let level = filter_of(self.level.load(Ordering::Relaxed));
        let quiet = self.quiet.iter().any(|q| {
            target == *q
                || target
                    .strip_prefix(q)
                    .is_some_and(|rest| rest.starts_with("::"))
        });
        if quiet {
            level.min(self.quiet_level)
        } else {
            level
        }
    }

    fn send(&self, line: String) {
        match self.queue.try_send(Item::Line(line)) {
            Ok(()) => {
                let lost = self.dropped.swap(0, Ordering::Relaxed);
                if lost > 0 {
                    let note = format!("WARN  [edgeim::logger] {lost} log lines dropped\n");
                    if self.queue.try_send(Item::Line(note)).is_err() {
                        self.dropped.fetch_add(lost, Ordering::Relaxed);
                    }
                }
            }
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= self.level_for(metadata.target())
    }

    fn log(&self, record: &Record) {
        if self.enabled(record.metadata()) {
            self.send(format_line(record.level(), record.target(), record.args()));
        }
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logger(queue: Sender<Item>) -> Logger {
        Logger {
            level: AtomicUsize::new(LevelFilter::Info as usize),
            quiet: &["tungstenite"],
            quiet_level: LevelFilter::Warn,
            queue,
            dropped: AtomicU64::new(0),
        }
    }

    fn line(item: Item) -> String {
        match item {
            Item::Line(l) => l,
            Item::Flush(_) => panic!("a flush"),
        }
    }

    #[test]
    fn operations_md_quotes_the_queue_and_line_limits() {
        let doc = crate::doc_constants::one_line(include_str!("../docs/OPERATIONS.md"));
        assert!(doc.contains(&format!("a queue of {LOG_QUEUE} lines")));
        assert!(doc.contains(&format!("at most {} KiB", MAX_LINE / 1024)));
    }

    #[test]
    fn one_record_is_one_line_of_bounded_length() {
        let l = format_line(Level::Warn, "edgeim::x", &format_args!("a\nb"));
        assert_eq!(l, "WARN  [edgeim::x] a\\nb\n");
        let long = "é".repeat(MAX_LINE);
        let l = format_line(Level::Info, "t", &format_args!("{long}"));
        assert!(l.len() < MAX_LINE + 32, "{}", l.len());
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_blocking() {
        let (tx, rx) = bounded(2);
        let l = logger(tx);
        for i in 0..5 {
            l.send(format!("{i}\n"));
        }
        assert_eq!(l.dropped.load(Ordering::Relaxed), 3);
        assert_eq!(line(rx.recv().unwrap()), "0\n");
        assert_eq!(line(rx.recv().unwrap()), "1\n");
        l.send("5\n".into());
        assert_eq!(line(rx.recv().unwrap()), "5\n");
        assert_eq!(
            line(rx.recv().unwrap()),
            "WARN  [edgeim::logger] 3 log lines dropped\n"
        );
    }

    #[test]
    fn quiet_targets_log_less() {
        let (tx, _rx) = bounded(1);
        let l = logger(tx);
        assert_eq!(l.level_for("tungstenite::protocol"), LevelFilter::Warn);
        assert_eq!(l.level_for("tungstenitex"), LevelFilter::Info);
        assert_eq!(l.level_for("edgeim::router"), LevelFilter::Info);
    }

    #[test]
    fn every_level_survives_the_atomic() {
        for f in LevelFilter::iter() {
            assert_eq!(filter_of(f as usize), f);
        }
    }

    #[test]
    fn a_new_level_applies_to_the_next_record() {
        let (tx, _rx) = bounded(1);
        let l = logger(tx);
        assert_eq!(l.level_for("edgeim::router"), LevelFilter::Info);
        l.level
            .store(LevelFilter::Debug as usize, Ordering::Relaxed);
        assert_eq!(l.level_for("edgeim::router"), LevelFilter::Debug);
        // The quiet targets stay capped.
        assert_eq!(l.level_for("tungstenite::protocol"), LevelFilter::Warn);
    }

    #[test]
    fn a_closed_stderr_is_ignored() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Err(std::io::ErrorKind::BrokenPipe.into())
            }
        }
        let (tx, rx) = bounded(4);
        let (done_tx, done) = bounded(1);
        tx.send(Item::Line("x\n".into())).unwrap();
        tx.send(Item::Flush(done_tx)).unwrap();
        drop(tx);
        write_lines(rx, Broken);
        assert!(done.try_recv().is_ok(), "the flush is answered");
    }
}
