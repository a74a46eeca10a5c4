mod common;
use common::*;

#[test]
fn two_users_chat_and_receipts_flow_back() {
    let srv = TestServer::start();
    let mut alice = srv.client("alice", "web");
    let mut bob = srv.client("bob", "phone");
    alice.text("m1", "bob", "hello bob");
    assert_eq!(alice.status("m1").0, 200);
    let m = bob.next_message();
    assert_eq!(
        (m["id"].as_str(), m["from"].as_str(), m["body"].as_str()),
        (Some("m1"), Some("alice"), Some("hello bob"))
    );
    bob.ack("m1", "alice");
    assert_eq!(bob.status("m1").0, 200);
    let r = alice.next_message();
    assert_eq!(
        (r["type"].as_i64(), r["from"].as_str(), r["id"].as_str()),
        (Some(9101), Some("bob"), Some("m1"))
    );
}
