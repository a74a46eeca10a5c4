//! The store's two clocks, neither of which a wall-clock step can turn
//! into lost messages (a Pi without a real-time clock boots in 1970 or at
//! its last shutdown, and NTP then steps the clock forward):
//!
//! - [`Stamps`]: the timestamps texts carry, from the wall clock but never
//!   going backwards: every commit gets a later millisecond than the one
//!   before, so that order and history pages hold across a step back.
//! - [`AgeClock`]: how long the store has existed, for retention. It runs
//!   on the monotonic clock while the server runs, and across a restart it
//!   counts the wall-clock downtime only up to [`MAX_DOWNTIME_COUNTED`],
//!   so that a clock stepped forward at boot cannot age every message at
//!   once. The purge compares ages, never timestamps: a message expires
//!   `retention_days` of this age after it was accepted, or a little later.

use std::time::{Duration, Instant};

/// The most wall-clock downtime between two runs that counts as age. A
/// longer real outage keeps messages longer than `retention_days`; a
/// clock stepped far forward ages them by at most this much.
pub const MAX_DOWNTIME_COUNTED: Duration = Duration::from_secs(24 * 3600);

/// Timestamps for commits: the wall clock, made strictly increasing.
#[derive(Debug)]
pub struct Stamps {
    last: u64,
}

impl Stamps {
    /// Continues after the newest timestamp in the database.
    pub fn after(last: u64) -> Stamps {
        Stamps { last }
    }

    /// The timestamp for the next commit, given the wall clock now.
    pub fn next(&mut self, wall_ms: u64) -> u64 {
        self.last = wall_ms.max(self.last.saturating_add(1));
        self.last
    }
}

/// The store's age in ms: monotonic within a run, bounded across restarts.
#[derive(Debug)]
pub struct AgeClock {
    base_ms: u64,
    started: Instant,
}

impl AgeClock {
    /// At start: the age and wall time of the last recorded tick (none for
    /// a new database), and the wall clock now.
    pub fn resume(last: Option<(u64, u64)>, wall_now_ms: u64, now: Instant) -> AgeClock {
        let base_ms = match last {
            None => 0,
            Some((age, wall)) => {
                let down = wall_now_ms.saturating_sub(wall);
                age.saturating_add(down.min(MAX_DOWNTIME_COUNTED.as_millis() as u64))
            }
        };
        AgeClock {
            base_ms,
            started: now,
        }
    }

    /// The age at `now`.
    pub fn age_ms(&self, now: Instant) -> u64 {
        let run = now.saturating_duration_since(self.started).as_millis() as u64;
        self.base_ms.saturating_add(run)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_never_go_backwards_and_every_commit_gets_its_own_ms() {
        let mut s = Stamps::after(1_000);
        assert_eq!(s.next(5_000), 5_000);
        assert_eq!(s.next(5_000), 5_001, "two commits in one ms");
        assert_eq!(s.next(10), 5_002, "the clock stepped back");
        assert_eq!(s.next(9_000), 9_000, "and caught up");
    }

    #[test]
    fn age_runs_on_the_monotonic_clock() {
        let t0 = Instant::now();
        let a = AgeClock::resume(None, 0, t0);
        assert_eq!(a.age_ms(t0), 0);
        assert_eq!(a.age_ms(t0 + Duration::from_secs(3)), 3_000);
        assert_eq!(a.age_ms(t0 - Duration::from_secs(3)), 0, "never negative");
    }

    #[test]
    fn downtime_counts_but_a_clock_stepped_forward_ages_by_a_day_at_most() {
        let t0 = Instant::now();
        let day = MAX_DOWNTIME_COUNTED.as_millis() as u64;
        let an_hour_later = AgeClock::resume(Some((500, 10_000)), 10_000 + 3_600_000, t0);
        assert_eq!(an_hour_later.age_ms(t0), 500 + 3_600_000);
        let fifty_years = AgeClock::resume(Some((500, 10_000)), 10_000 + 50 * 365 * day, t0);
        assert_eq!(fifty_years.age_ms(t0), 500 + day);
        let back_in_1970 = AgeClock::resume(Some((500, 10_000)), 0, t0);
        assert_eq!(back_in_1970.age_ms(t0), 500, "a step back counts nothing");
    }
}
