//! The generator's one clock: timestamps are ns since [`epoch`].

use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

/// The generator's clock: every timestamp is ns since this instant.
pub(crate) fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

pub(crate) fn now_ns() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

pub(crate) fn sleep_until_ns(ns: u64) {
    let when = epoch() + Duration::from_nanos(ns);
    thread::sleep(when.saturating_duration_since(Instant::now()));
}
