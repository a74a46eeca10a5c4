//! docs/ARCHITECTURE.md quotes the numbers the code is built on (queue
//! sizes, batches, stacks, waits). These tests hold the document to the
//! code: each quoted constant must appear in the exact phrase the document
//! uses, with the code's value, so that changing either one alone fails.
//!
//! The constants are read directly (widened to `pub(crate)` for this).

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

const DOC: &str = include_str!("../docs/ARCHITECTURE.md");

/// The document with every run of whitespace made one space, so that a
/// phrase matches however the paragraph is wrapped.
fn doc() -> String {
    one_line(DOC)
}

/// `text` with every run of whitespace made one space: how the tests that
/// hold a document's quotes to the code read any document.
pub(crate) fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `n` bytes as the document writes them: `256 KiB`.
fn kib(n: usize) -> String {
    assert!(
        n.is_multiple_of(1024),
        "{n} bytes is not a whole number of KiB"
    );
    format!("{} KiB", n / 1024)
}

/// A duration in seconds as the document writes it: `10 s`, `1.5 s`.
fn secs(d: Duration) -> String {
    let ms = d.as_millis();
    assert_eq!(Duration::from_millis(ms as u64), d, "{d:?} is not whole ms");
    if ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        format!("{} s", ms as f64 / 1000.0)
    }
}

/// A duration in milliseconds: `100 ms`.
fn millis(d: Duration) -> String {
    let ms = d.as_millis();
    assert_eq!(Duration::from_millis(ms as u64), d, "{d:?} is not whole ms");
    format!("{ms} ms")
}

/// A duration in whole minutes: `10`.
fn minutes(d: Duration) -> u64 {
    assert!(d.as_secs().is_multiple_of(60), "{d:?} is not whole minutes");
    assert_eq!(d.subsec_nanos(), 0, "{d:?} is not whole minutes");
    d.as_secs() / 60
}

/// Each constant the document quotes, and the phrase it must appear in.
fn phrases() -> Vec<(&'static str, String)> {
    use crate::auth::logins::SAVE_WAIT;
    use crate::config::DEFAULT_HTTP_WORKERS;
    use crate::conn::listener::{ACCEPT_BACKOFF, READER_STACK};
    use crate::conn::{CTRL_QUEUE, WRITER_STACK, ws_config};
    use crate::http::{MAX_LOGIN_BODY, ROUTER_WAIT, WORKER_STACK};
    use crate::router::BATCH;
    use crate::server::ROUTER_QUEUE;
    use crate::store::{MAX_BATCH, OP_QUEUE, PURGE_EVERY, PURGE_STEP};

    use crate::conn::queue::BACKLOG_CHUNK;
    use crate::conn::writer::{CLOSE_GRACE, WRITE_BATCH};
    use crate::server::SHUTDOWN_GRACE;
    let (write_batch, close_grace, backlog_chunk, shutdown_grace) =
        (WRITE_BATCH, CLOSE_GRACE, BACKLOG_CHUNK, SHUTDOWN_GRACE);
    let ws = ws_config(64 * 1024);
    let purge = minutes(PURGE_EVERY);

    use crate::config::DEFAULT_SEND_QUEUE;
    use crate::router::deliver::ANSWER_ALLOWANCE;
    use crate::store::{PAGE_BYTES, PAGE_FRAMES};
    let mib = |n: usize| format!("{} MiB", n / (1024 * 1024));

    vec![
        (
            "store::PAGE_FRAMES, store::PAGE_BYTES",
            format!(
                "at most {PAGE_FRAMES} messages and about {} of bodies",
                kib(PAGE_BYTES)
            ),
        ),
        (
            "router::deliver::ANSWER_ALLOWANCE",
            format!(
                "a {} allowance (`router::deliver::ANSWER_ALLOWANCE`)",
                mib(ANSWER_ALLOWANCE)
            ),
        ),
        (
            "router::presence::PRESENCE_WINDOW",
            format!(
                "a flush goes out {} after the first change (`router::presence::PRESENCE_WINDOW`)",
                millis(crate::router::presence::PRESENCE_WINDOW)
            ),
        ),
        (
            "config::DEFAULT_SEND_QUEUE",
            format!("`websocket.send_queue` ({})", mib(DEFAULT_SEND_QUEUE)),
        ),
        (
            "server::ROUTER_QUEUE",
            format!("`bounded({ROUTER_QUEUE})`, `server::ROUTER_QUEUE`"),
        ),
        (
            "server::ROUTER_QUEUE",
            format!("the `Event` queue holds {ROUTER_QUEUE} events"),
        ),
        (
            "store::OP_QUEUE",
            format!("`bounded({OP_QUEUE})`, `store::OP_QUEUE`"),
        ),
        (
            "store::OP_QUEUE",
            format!("the `StoreOp` queue holds {OP_QUEUE} ops"),
        ),
        (
            "store::MAX_BATCH",
            format!("up to {MAX_BATCH} ops per commit, `store::MAX_BATCH`"),
        ),
        (
            "store::recent::WRITE_BEHIND, SETTLE",
            format!(
                "has waited {} (`store::recent::WRITE_BEHIND`), every text older than {} (`store::recent::SETTLE`)",
                secs(crate::store::recent::WRITE_BEHIND),
                millis(crate::store::recent::SETTLE)
            ),
        ),
        (
            "store::recent::MAX_WRITE",
            format!(
                "at most {} per commit (`store::recent::MAX_WRITE`",
                crate::store::recent::MAX_WRITE
            ),
        ),
        (
            "store::recent::MAX_RECENT",
            format!(
                "beyond {} texts held (`store::recent::MAX_RECENT`)",
                crate::store::recent::MAX_RECENT
            ),
        ),
        (
            "store::CHECKPOINT_EVERY_OPS",
            format!(
                "every {} ops (`store::CHECKPOINT_EVERY_OPS`)",
                crate::store::CHECKPOINT_EVERY_OPS
            ),
        ),
        (
            "store::CHECKPOINT_EVERY_OPS",
            format!(
                "`Due` (every {} ops committed, `store::CHECKPOINT_EVERY_OPS`)",
                crate::store::CHECKPOINT_EVERY_OPS
            ),
        ),
        (
            "store::BACKSTOP_PAGES",
            format!(
                "at {} pages (`store::BACKSTOP_PAGES`)",
                crate::store::BACKSTOP_PAGES
            ),
        ),
        (
            "store::MAX_BATCH",
            format!("Batches grow meanwhile (up to {MAX_BATCH} ops per commit)"),
        ),
        (
            "router::BATCH",
            format!("it drains up to {BATCH} more events (`router::BATCH`)"),
        ),
        (
            "conn::writer::WRITE_BATCH",
            format!("up to {write_batch} more already waiting (`conn::writer::WRITE_BATCH`)"),
        ),
        (
            "conn::queue::BACKLOG_CHUNK",
            format!("in chunks of {backlog_chunk} frames (`conn::queue::BACKLOG_CHUNK`)"),
        ),
        (
            "conn::CTRL_QUEUE",
            format!("`bounded({CTRL_QUEUE})`, `conn::CTRL_QUEUE`"),
        ),
        (
            "conn::CTRL_QUEUE",
            format!("The control queue is small too, {CTRL_QUEUE} slots"),
        ),
        (
            "conn::listener::READER_STACK",
            format!(
                "| `ws-r{{id}}` | 1 per connection | {} |",
                kib(READER_STACK)
            ),
        ),
        (
            "conn::listener::READER_STACK",
            format!("**Readers: {}.**", kib(READER_STACK)),
        ),
        (
            "conn::WRITER_STACK",
            format!(
                "| `ws-w{{id}}` | 1 per connection | {} |",
                kib(WRITER_STACK)
            ),
        ),
        (
            "conn::WRITER_STACK",
            format!("**Writers: {}.**", kib(WRITER_STACK)),
        ),
        (
            "http::WORKER_STACK, config::DEFAULT_HTTP_WORKERS",
            format!(
                "| `http-{{i}}` | `http.workers` ({DEFAULT_HTTP_WORKERS}) | {} |",
                kib(WORKER_STACK)
            ),
        ),
        (
            "http::WORKER_STACK",
            format!("**HTTP workers: {}.**", kib(WORKER_STACK)),
        ),
        (
            "store::PURGE_STEP",
            format!("in steps of at most {PURGE_STEP} messages"),
        ),
        ("store::PURGE_EVERY", format!("a {purge}-minute purge tick")),
        (
            "store::PURGE_EVERY",
            format!("At start and then every {purge} minutes (a `tick` channel"),
        ),
        (
            "store::PURGE_EVERY",
            format!("or the purge tick every {purge} minutes"),
        ),
        (
            "server::SHUTDOWN_GRACE",
            format!(
                "`Running::shutdown` with a grace of {}",
                secs(shutdown_grace)
            ),
        ),
        (
            "conn::writer::CLOSE_GRACE",
            format!(
                "waits up to {} for the reader to see the peer's reply",
                secs(close_grace)
            ),
        ),
        (
            "conn::writer::CLOSE_GRACE",
            format!("waits up to {} for the client's reply", secs(close_grace)),
        ),
        (
            "auth::logins::SAVE_WAIT",
            format!("wait (at most {}) for its commit", secs(SAVE_WAIT)),
        ),
        (
            "auth::logins::SAVE_WAIT",
            format!("(again waiting at most {})", secs(SAVE_WAIT)),
        ),
        (
            "http::ROUTER_WAIT",
            format!("wait at most {}, else answer 503", secs(ROUTER_WAIT)),
        ),
        (
            "http::MAX_LOGIN_BODY",
            format!("`max({}, max_message_bytes)`", kib(MAX_LOGIN_BODY)),
        ),
        (
            "conn::listener::ACCEPT_BACKOFF",
            format!("a {} pause after a failed accept", millis(ACCEPT_BACKOFF)),
        ),
        (
            "conn::listener::ACCEPT_BACKOFF",
            format!("pauses {} and accepts again", millis(ACCEPT_BACKOFF)),
        ),
        (
            "conn::listener::ACCEPT_BACKOFF",
            format!("pauses {} before it accepts again", millis(ACCEPT_BACKOFF)),
        ),
        (
            "conn::ws_config read buffer",
            format!("a {} read buffer for the reader", kib(ws.read_buffer_size)),
        ),
        (
            "conn::ws_config write buffer",
            format!("a {} write buffer", kib(ws.write_buffer_size)),
        ),
    ]
}

#[test]
fn every_constant_the_document_quotes_has_the_codes_value() {
    let doc = doc();
    let missing: Vec<String> = phrases()
        .into_iter()
        .filter(|(_, phrase)| !doc.contains(phrase.as_str()))
        .map(|(name, phrase)| format!("{name}: expected the phrase `{phrase}`"))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/ARCHITECTURE.md does not match the code:\n{}",
        missing.join("\n")
    );
}

/// No queue bound in the document other than the code's: a stale
/// `bounded(64)` left anywhere fails.
#[test]
fn every_bounded_queue_the_document_names_exists() {
    use crate::conn::CTRL_QUEUE;
    use crate::server::ROUTER_QUEUE;
    use crate::store::OP_QUEUE;
    // The one-shot replies, `alive`, the signal and `died` are bounded(1).
    let known: BTreeSet<usize> = [ROUTER_QUEUE, OP_QUEUE, CTRL_QUEUE, 1].into();
    let found: BTreeSet<usize> = DOC
        .split("bounded(")
        .skip(1)
        .map(|rest| {
            let n = &rest[..rest.find(')').unwrap_or(0)];
            n.parse()
                .unwrap_or_else(|_| panic!("`bounded({n})` is not a number"))
        })
        .collect();
    let unknown: Vec<&usize> = found.difference(&known).collect();
    assert!(
        unknown.is_empty(),
        "docs/ARCHITECTURE.md names queue bounds the code does not have: {unknown:?} \
         (the code's: {known:?})"
    );
}

/// Every relative link in the document leads to a file or folder.
#[test]
fn every_path_the_document_links_exists() {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    let missing: Vec<&str> = DOC
        .split("](")
        .skip(1)
        .filter_map(|rest| rest.split(')').next())
        .filter(|link| !link.starts_with("http") && !link.starts_with('#'))
        .filter(|link| {
            let path = link.split('#').next().unwrap_or(link);
            !docs.join(path).exists()
        })
        .collect();
    assert!(
        missing.is_empty(),
        "docs/ARCHITECTURE.md links to paths that do not exist: {missing:?}"
    );
}

#[test]
fn durations_read_as_the_document_writes_them() {
    assert_eq!(secs(Duration::from_millis(1500)), "1.5 s");
    assert_eq!(secs(Duration::from_secs(10)), "10 s");
}
