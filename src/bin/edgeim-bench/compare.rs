//! Two servers compared run by run (`--spawn` an edgeim and a mosquitto
//! binary): the runs alternated A B A B, and this prints, per figure both
//! have, the two medians and their ratio A/B, as one JSON line on stdout
//! and a table on stderr.

use serde_json::{Value, json};

use crate::args::Options;
use crate::report::{rounded, show};
use crate::stats::{RunResult, median};

/// One figure of both: (name, median of A, median of B, A / B).
pub(crate) type Row = (&'static str, f64, f64, f64);

/// Per figure that A reports (in A's order) and B reports too: the two
/// medians over the runs and their ratio (NaN where either is not
/// measured or B's is 0).
pub(crate) fn ratios(a: &[RunResult], b: &[RunResult]) -> Vec<Row> {
    let keys: Vec<&'static str> = a
        .first()
        .map(|r| r.figures.iter().map(|(k, _)| *k).collect())
        .unwrap_or_default();
    keys.into_iter()
        .filter(|k| b.first().is_some_and(|r| r.get(k).is_some()))
        .map(|k| {
            let ma = median(a.iter().filter_map(|r| r.get(k)));
            let mb = median(b.iter().filter_map(|r| r.get(k)));
            let ratio = if mb != 0.0 { ma / mb } else { f64::NAN };
            (k, ma, mb, ratio)
        })
        .collect()
}

pub(crate) fn report_compare(
    opts: &Options,
    (name_a, a): (&str, &[RunResult]),
    (name_b, b): (&str, &[RunResult]),
) {
    let s = &opts.scenario;
    let rows = ratios(a, b);
    let mut line: Vec<(String, Value)> = vec![
        ("scenario".into(), json!(s.name())),
        ("compare".into(), json!(format!("{name_a}/{name_b}"))),
        ("runs".into(), json!(a.len().min(b.len()))),
    ];
    for (k, v) in s.params() {
        line.push((k.into(), v));
    }
    let figures: serde_json::Map<String, Value> = rows
        .iter()
        .map(|(k, ma, mb, r)| {
            (
                (*k).to_string(),
                json!({name_a: rounded(*ma), name_b: rounded(*mb), "ratio": rounded(*r)}),
            )
        })
        .collect();
    line.push(("figures".into(), Value::Object(figures)));
    let fields: Vec<String> = line
        .iter()
        .map(|(k, v)| format!("{}:{v}", Value::from(k.as_str())))
        .collect();
    println!("{{{}}}", fields.join(","));

    eprintln!(
        "\n{} compared, runs alternated ({name_a} first), medians:",
        s.name()
    );
    eprintln!(
        "  {:<30} {:>12} {:>12} {:>8}",
        "figure",
        name_a,
        name_b,
        format!("{name_a}/{name_b}")
    );
    for (k, ma, mb, r) in &rows {
        // A B median of almost nothing (mosquitto's voluntary switches in
        // a flood) makes a ratio that means nothing.
        let ratio = if *r > 1000.0 {
            ">1000".into()
        } else if r.is_finite() {
            format!("{r:.2}")
        } else {
            "n/a".into()
        };
        eprintln!(
            "  {:<30} {:>12} {:>12} {:>8}",
            k,
            show(k, *ma),
            show(k, *mb),
            ratio
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn run(figures: Vec<(&'static str, f64)>) -> RunResult {
        RunResult {
            figures,
            errors: BTreeMap::new(),
            delivered: 1,
        }
    }

    #[test]
    fn ratios_are_of_the_medians_of_the_figures_both_have() {
        let a = [
            run(vec![("cpu", 30.0), ("only_a", 1.0), ("commits", 0.1)]),
            run(vec![("cpu", 40.0), ("only_a", 1.0), ("commits", 0.3)]),
            run(vec![("cpu", 35.0), ("only_a", 1.0), ("commits", 0.2)]),
        ];
        let b = [
            run(vec![("cpu", 10.0), ("commits", f64::NAN)]),
            run(vec![("cpu", 20.0), ("commits", f64::NAN)]),
            run(vec![("cpu", 12.0), ("commits", f64::NAN)]),
        ];
        let rows = ratios(&a, &b);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0], ("cpu", 35.0, 12.0, 35.0 / 12.0));
        let (k, ma, mb, r) = rows[1];
        assert_eq!((k, ma), ("commits", 0.2));
        assert!(mb.is_nan() && r.is_nan());
        let zero = ratios(&[run(vec![("x", 1.0)])], &[run(vec![("x", 0.0)])]);
        assert!(zero[0].3.is_nan());
    }
}
