//! What the workers count ([`Stats`]), what a run reports ([`RunResult`]),
//! and the quantiles and medians of them.

use std::collections::BTreeMap;

/// One run's figures, in the order they are reported.
pub(crate) struct RunResult {
    pub(crate) figures: Vec<(&'static str, f64)>,
    pub(crate) errors: BTreeMap<String, u64>,
    pub(crate) delivered: u64,
}

impl RunResult {
    pub(crate) fn get(&self, key: &str) -> Option<f64> {
        self.figures
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
    }
}

/// What one worker thread saw. Times are ns since [`epoch`](crate::clock::epoch).
#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) sent: u64,
    pub(crate) sent_in_window: u64,
    pub(crate) acked: u64,
    pub(crate) acked_in_window: u64,
    pub(crate) delivered: u64,
    pub(crate) delivered_in_window: u64,
    pub(crate) receipts: u64,
    pub(crate) ack_latency: Vec<u64>,
    pub(crate) delivery_latency: Vec<u64>,
    /// How late the generator itself sent each text (rate only).
    pub(crate) send_lag: Vec<u64>,
    /// (sender, seq, latency) of each delivery (fanout only: to find the
    /// last recipient of each text).
    pub(crate) deliveries: Vec<(usize, u64, u64)>,
    pub(crate) errors: BTreeMap<String, u64>,
}

impl Stats {
    pub(crate) fn error(&mut self, what: impl Into<String>) {
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

    pub(crate) fn merge(&mut self, o: Stats) {
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
pub(crate) fn quantile_ms(sorted: &[u64], expected: u64, q: f64) -> f64 {
    if expected == 0 {
        return f64::NAN;
    }
    let rank = ((q * expected as f64).ceil() as u64).max(1) - 1;
    match sorted.get(rank as usize) {
        Some(ns) => *ns as f64 / 1e6,
        None => f64::INFINITY,
    }
}

/// The median of the measured values (NaN = not measured is left out).
pub(crate) fn median(values: impl Iterator<Item = f64>) -> f64 {
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
}
