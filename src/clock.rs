//! Time as edgeim uses it: the wall clock, in milliseconds since the epoch,
//! for the timestamps people read; a monotonic clock for every timeout and
//! TTL, which a wall-clock step (NTP at boot on a Pi without a real-time
//! clock) must not shorten or stretch.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The wall clock: ms since the epoch (0 if it reads before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The monotonic clock: ms since this process first asked.
pub fn mono_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// Both readings at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    /// For timestamps (frames).
    pub wall_ms: u64,
    /// For TTLs (session ids).
    pub mono_ms: u64,
}

impl Now {
    /// The clocks now.
    pub fn read() -> Now {
        Now {
            wall_ms: now_ms(),
            mono_ms: mono_ms(),
        }
    }
}

/// Tests drive the router with one number for both clocks.
impl From<u64> for Now {
    fn from(ms: u64) -> Now {
        Now {
            wall_ms: ms,
            mono_ms: ms,
        }
    }
}
