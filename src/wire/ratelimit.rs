//! A token bucket, used per connection (messages) and by the router
//! (session ids). Time is passed in so tests need no clock.

use std::time::{Duration, Instant};

pub struct TokenBucket {
    rate_per_s: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate_per_s: f64, burst: f64, now: Instant) -> TokenBucket {
        TokenBucket {
            rate_per_s,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Takes one token even when there is none, and then says how long the
    /// caller must wait before it takes in more: the bucket goes into debt
    /// by one token, which the wait pays back. Frames paced this way come
    /// at `rate_per_s` at most (back-pressure, not refusal). Only a caller
    /// that always waits as told uses this: the debt never passes a token.
    pub fn take_or_wait(&mut self, now: Instant) -> Option<Duration> {
        if self.take(now) {
            return None;
        }
        self.tokens -= 1.0;
        let owed = -self.tokens;
        let secs = if self.rate_per_s > 0.0 {
            owed / self.rate_per_s
        } else {
            1.0
        };
        // Never more than a second (rates are at least 1/s in use), and a
        // microsecond more, so that rounding never leaves it short.
        let wait =
            Duration::try_from_secs_f64(secs.clamp(0.0, 1.0)).unwrap_or(Duration::from_secs(1));
        Some(wait + Duration::from_micros(1))
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate_per_s).min(self.burst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 3.0, t0);
        assert!((0..3).all(|_| b.take(t0)));
        assert!(!b.take(t0));
        assert!(b.take(t0 + Duration::from_millis(100)));
        assert!(!b.take(t0 + Duration::from_millis(100)));
        // Refill never exceeds the burst.
        let later = t0 + Duration::from_secs(60);
        assert!((0..3).all(|_| b.take(later)));
        assert!(!b.take(later));
    }

    #[test]
    fn take_or_wait_paces_to_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 1.0, t0);
        assert_eq!(b.take_or_wait(t0), None, "the burst");
        let wait = b.take_or_wait(t0).unwrap();
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-5, "{wait:?}");
        // The frame that waited has its token: the next one waits again.
        let t1 = t0 + wait;
        let again = b.take_or_wait(t1).unwrap();
        assert!((again.as_secs_f64() - 0.1).abs() < 1e-5, "{again:?}");
        assert!(!b.take(t1 + again / 2), "in debt until the wait is over");
    }
}
