//! `GET /metrics` in Prometheus's text format: it parses, and the counters
//! move when texts flow (issue 11, "/metrics").

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::served::{Served, write_config};
use common::{ack_expect, expect_next, expect_text, password, register_on, send_ok, test_config};

/// Every sample: `name{labels}` → value. Panics on a line that is not
/// `# HELP`, `# TYPE` or a sample, or a sample without a TYPE before it.
fn scrape(http: &str) -> BTreeMap<String, f64> {
    let r = common::request("GET", &format!("{http}/metrics"), &[], "");
    assert_eq!(r.status, 200);
    assert!(
        r.header("Content-Type")
            .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        r.header("Content-Type")
    );
    let mut typed = Vec::new();
    let mut samples = BTreeMap::new();
    for line in r.text().lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            typed.push(name.to_string());
        } else if line.starts_with("# HELP ") {
        } else {
            let (series, value) = line.rsplit_once(' ').expect("a sample");
            let name = series.split('{').next().unwrap_or(series);
            assert!(
                typed
                    .iter()
                    .any(|t| name == t || name.starts_with(&format!("{t}_"))),
                "{line}: no TYPE"
            );
            samples.insert(series.to_string(), value.parse::<f64>().expect(line));
        }
    }
    samples
}

#[test]
fn metrics_parse_and_move_when_texts_flow() {
    let config = test_config("metrics");
    let file = write_config(&config);
    let srv = Served::start(&file, None);
    let before = scrape(&srv.http);
    assert_eq!(before["edgeim_build_info{version=\"0.1.0\"}"], 1.0);
    assert_eq!(before["edgeim_websocket_connections"], 0.0);
    let mut alice = register_on(&srv.http, &srv.ws, "alice", &password("alice"), "web");
    let mut bob = register_on(&srv.http, &srv.ws, "bob", &password("bob"), "web");
    send_ok(&mut alice, "m1", "bob", "hello");
    expect_text(&mut bob, "m1");
    ack_expect(&mut bob, "m1", "alice", 200);
    // The receipt forwarded to alice: read, so it is surely written.
    assert_eq!(expect_next(&mut alice, "m1")["type"], 9101);
    let after = scrape(&srv.http);
    let delta = |k: &str| after[k] - before.get(k).copied().unwrap_or(0.0);
    assert_eq!(delta("edgeim_texts_accepted_total"), 1.0);
    assert_eq!(delta("edgeim_receipts_total"), 1.0);
    assert_eq!(delta("edgeim_frames_in_total{type=\"1000\"}"), 2.0);
    assert_eq!(delta("edgeim_frames_in_total{type=\"2001\"}"), 1.0);
    assert_eq!(delta("edgeim_frames_in_total{type=\"9101\"}"), 1.0);
    assert_eq!(delta("edgeim_rate_limited_total"), 0.0);
    // Two registers, a text and a receipt: four 9001 SUCCESS.
    assert_eq!(delta("edgeim_send_status_total{code=\"200\"}"), 4.0);
    // Frames out, counted as the writers write them: every frame counted
    // here was read by its client before the scrape. A 9001 to alice for
    // her register and her text, one to bob for his register and receipt;
    // the text to bob; the receipt forwarded to alice.
    assert_eq!(delta("edgeim_frames_out_total{type=\"9001\"}"), 4.0);
    assert_eq!(delta("edgeim_frames_out_total{type=\"2001\"}"), 1.0);
    assert_eq!(delta("edgeim_frames_out_total{type=\"9101\"}"), 1.0);
    assert_eq!(delta("edgeim_logins_total{result=\"ok\"}"), 2.0);
    assert!(delta("edgeim_store_commit_seconds_count") >= 3.0);
    // Every committed batch has its COMMIT timed too, never longer than
    // the whole batch.
    assert_eq!(
        delta("edgeim_store_commit_sync_seconds_count"),
        delta("edgeim_store_commit_seconds_count")
    );
    assert!(
        after["edgeim_store_commit_sync_seconds_sum"] <= after["edgeim_store_commit_seconds_sum"]
    );
    assert_eq!(after["edgeim_websocket_connections"], 2.0);
    assert_eq!(after["edgeim_clients_registered"], 2.0);
    assert_eq!(after["edgeim_users_online"], 2.0);
    assert!(after["edgeim_threads"] > 4.0);
    assert!(after["edgeim_resident_memory_bytes"] > 0.0);
    assert!(after.contains_key("edgeim_send_queue_bytes"));
    assert!(after.contains_key("edgeim_router_queue_items"));
    assert!(after.contains_key("edgeim_store_queue_items"));

    // Once the clients have gone, nothing is left queued for anyone: the
    // gauge comes back to 0 however their writers ended.
    drop(alice);
    drop(bob);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = scrape(&srv.http);
        let idle = now["edgeim_websocket_connections"] == 0.0
            && now["edgeim_send_queue_bytes"] == 0.0
            && now["edgeim_clients_registered"] == 0.0;
        if idle {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not idle: {} connections, {} bytes queued",
            now["edgeim_websocket_connections"],
            now["edgeim_send_queue_bytes"]
        );
        // Between two scrapes, so as not to spin on a shared machine.
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = std::fs::remove_dir_all(&config.data_dir);
    let _ = std::fs::remove_file(&file);
}
