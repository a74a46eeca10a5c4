//! The checks a connection makes on each text frame before the router sees
//! it: shape (401), registered (402), this connection's rate (400), then
//! type, from, to and body (403, 405, 406, 404). Plain data in, a decision
//! out; the reader thread carries it out.

use std::time::{Duration, Instant};

use tungstenite::Utf8Bytes;

use super::parse::{self, Rules};
use crate::metrics::metrics;
use crate::wire::ids::UserId;
use crate::wire::ratelimit::TokenBucket;
use crate::wire::{self, Register, Reject, Request, Status, TYPE_RECEIVE_STATUS, TYPE_REGISTER};
use std::sync::atomic::Ordering::Relaxed;

/// What the reader does with one frame.
#[derive(Debug)]
pub enum Decision {
    /// Answer this 9001 at once; the connection stays open.
    Answer(Utf8Bytes),
    /// Ask the router to register this connection; `refused` says it
    /// already failed here (the router still uses its session id up).
    Register {
        msg: Register,
        refused: Option<Reject>,
    },
    /// Hand a checked message to the router.
    Route(Request),
    /// Answer this 9001, then close with 1008: the connection sent
    /// [`MAX_ERRORS_IN_A_ROW`] frames in a row that were not messages.
    Close(Utf8Bytes),
}

/// Frames in a row refused for their shape (401), for coming before
/// register (402) or for being binary, after which the connection is closed
/// with 1008 `too many errors`. A client with a bug sees its first answers
/// and stops; a client that keeps sending garbage is not worth answering
/// (each answer costs the server a write). 32 answers are plenty to see
/// what is wrong, and no working client sends that many in a row.
pub const MAX_ERRORS_IN_A_ROW: u32 = 32;

/// The close reason after [`MAX_ERRORS_IN_A_ROW`].
pub const TOO_MANY_ERRORS: &str = "too many errors";

/// The limits the checks apply, from the config.
#[derive(Clone, Copy, Debug)]
pub struct InboundLimits {
    pub rate_per_s: f64,
    pub rate_burst: f64,
    pub max_recipients: usize,
    /// How many messages a client may have waiting for it: it must be
    /// able to acknowledge all of them at once.
    pub offline_per_user: usize,
}

/// Per-connection state the checks need.
pub struct Inbound {
    user: Option<UserId>,
    /// Everything but receipts: registers and texts.
    messages: TokenBucket,
    /// Receipts have their own bucket: a client back from offline
    /// acknowledges its whole backlog as fast as it reads it, which is
    /// answering, not flooding. Ten times the message rate, and a burst of
    /// a full offline queue.
    receipts: TokenBucket,
    max_recipients: usize,
    /// Frames in a row that were not messages (401, 402, binary).
    errors: u32,
    /// Set when a frame that is not a message (garbage, a ping or pong)
    /// found the message bucket empty: how long the reader waits before it
    /// reads on. Such frames are paced, not refused: TCP slows the sender.
    pause: Option<Duration>,
}

impl Inbound {
    pub fn new(limits: InboundLimits, now: Instant) -> Inbound {
        let receipt_burst = limits.rate_burst.max(limits.offline_per_user as f64);
        Inbound {
            user: None,
            messages: TokenBucket::new(limits.rate_per_s, limits.rate_burst, now),
            receipts: TokenBucket::new(limits.rate_per_s * 10.0, receipt_burst, now),
            max_recipients: limits.max_recipients,
            errors: 0,
            pause: None,
        }
    }

    /// How long to wait before reading the next frame, if at all: the
    /// frames that are not messages are paced to the message rate.
    pub fn pause(&mut self) -> Option<Duration> {
        self.pause.take()
    }

    /// Charges a frame that is not a message to the message bucket.
    fn charge(&mut self, now: Instant) {
        if let Some(wait) = self.messages.take_or_wait(now) {
            self.pause = Some(self.pause.map_or(wait, |p| p.max(wait)));
        }
    }

    /// A ping or a pong from the client: tungstenite answers a ping by
    /// itself, so what is limited is how fast the reader takes them in.
    pub fn control(&mut self, now: Instant) {
        self.charge(now);
    }

    /// A binary frame: 401, charged like any garbage.
    pub fn binary(&mut self, now: Instant, now_ms: u64) -> Decision {
        let r = Reject::new(Status::MessageError, "binary frames are not supported");
        self.garbage(None, &r, now, now_ms)
    }

    /// A 401 or 402: answered, charged, counted towards closing.
    fn garbage(&mut self, id: Option<&str>, r: &Reject, now: Instant, now_ms: u64) -> Decision {
        self.charge(now);
        self.errors = self.errors.saturating_add(1);
        let answer = self.reject(id, r, now_ms);
        if self.errors >= MAX_ERRORS_IN_A_ROW {
            Decision::Close(answer)
        } else {
            Decision::Answer(answer)
        }
    }

    /// The router accepted the register.
    pub fn registered(&mut self, user: UserId) {
        self.user = Some(user);
    }

    fn to(&self) -> &str {
        self.user.as_ref().map_or("", UserId::as_str)
    }

    /// An error answer addressed to this connection.
    pub fn reject(&self, id: Option<&str>, r: &Reject, now_ms: u64) -> Utf8Bytes {
        let made;
        let id = match id {
            Some(id) => id,
            None => {
                made = wire::server_id();
                &made
            }
        };
        wire::send_status(id, self.to(), r.status, &r.msg, now_ms)
    }

    /// Decides what to do with one text frame.
    pub fn frame(
        &mut self,
        text: &str,
        user_exists: &dyn Fn(&str) -> bool,
        now: Instant,
        now_ms: u64,
    ) -> Decision {
        let env = match parse::parse(text) {
            Ok(env) => env,
            Err((id, r)) => {
                metrics().frame_in(None);
                return self.garbage(id.as_deref(), &r, now, now_ms);
            }
        };
        metrics().frame_in(Some(env.kind));
        let refuse =
            |me: &Self, r: Reject, id: &str| Decision::Answer(me.reject(Some(id), &r, now_ms));
        if self.user.is_none() && env.kind != TYPE_REGISTER {
            let r = Reject::new(Status::SessionError, "register first");
            return self.garbage(Some(&env.id), &r, now, now_ms);
        }
        // A well-formed message ends a run of errors.
        self.errors = 0;
        let bucket = if env.kind == TYPE_RECEIVE_STATUS {
            &mut self.receipts
        } else {
            &mut self.messages
        };
        let limited = !bucket.take(now);
        if limited {
            metrics().rate_limited.fetch_add(1, Relaxed);
        }
        let rate = || Reject::new(Status::Failed, "rate limit: too many messages, slow down");
        let Some(user) = &self.user else {
            let (msg, refused) = parse::check_register(env);
            let refused = if limited { Some(rate()) } else { refused };
            return Decision::Register { msg, refused };
        };
        let id = env.id.clone();
        if limited {
            return refuse(self, rate(), &id);
        }
        let rules = Rules {
            user,
            max_recipients: self.max_recipients,
            user_exists,
        };
        match parse::check(env, &rules) {
            Ok(req) => Decision::Route(req),
            Err(r) => refuse(self, r, &id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn status(d: &Decision) -> i64 {
        let Decision::Answer(f) = d else {
            panic!("expected an answer, got {d:?}")
        };
        let v: Value = serde_json::from_str(f).unwrap();
        let body: Value = serde_json::from_str(v["body"].as_str().unwrap()).unwrap();
        body["code"].as_i64().unwrap()
    }

    fn limits(rate_per_s: f64, rate_burst: f64) -> InboundLimits {
        InboundLimits {
            rate_per_s,
            rate_burst,
            max_recipients: 10,
            offline_per_user: 5,
        }
    }

    #[test]
    fn receipts_have_their_own_larger_bucket() {
        let now = Instant::now();
        let mut i = Inbound::new(limits(0.001, 1.0), now);
        i.registered(UserId::parse("alice").unwrap());
        assert!(matches!(
            i.frame(TEXT, &|_| true, now, 0),
            Decision::Route(_)
        ));
        assert_eq!(status(&i.frame(TEXT, &|_| true, now, 0)), 400);
        let ack = r#"{"id":"m","type":9101,"isSystem":false,"from":"alice","to":"bob","body":{"code":200,"status":"SUCCESS","msg":"received"}}"#;
        for _ in 0..5 {
            assert!(
                matches!(i.frame(ack, &|_| true, now, 0), Decision::Route(_)),
                "a full offline queue can be acknowledged"
            );
        }
        assert_eq!(status(&i.frame(ack, &|_| true, now, 0)), 400);
    }

    const TEXT: &str =
        r#"{"id":"m","type":2001,"isSystem":false,"from":"alice","to":"bob","body":"hi"}"#;
    const REG: &str = r#"{"id":"r","type":1000,"isSystem":false,"from":"alice","to":"SYSTEM","body":"{\"sessionId\":\"s\"}"}"#;

    #[test]
    fn before_register_only_register_passes() {
        let now = Instant::now();
        let mut i = Inbound::new(limits(100.0, 100.0), now);
        assert_eq!(status(&i.frame(TEXT, &|_| true, now, 0)), 402);
        assert_eq!(
            status(&i.frame("nope", &|_| true, now, 0)),
            401,
            "shape is checked first"
        );
        assert!(matches!(
            i.frame(REG, &|_| true, now, 0),
            Decision::Register { refused: None, .. }
        ));
        i.registered(UserId::parse("alice").unwrap());
        assert!(matches!(
            i.frame(TEXT, &|_| true, now, 0),
            Decision::Route(_)
        ));
        assert_eq!(status(&i.frame(REG, &|_| true, now, 0)), 403);
    }

    #[test]
    fn a_register_refused_here_is_marked_for_closing() {
        let now = Instant::now();
        let mut i = Inbound::new(limits(100.0, 100.0), now);
        let no_session = REG.replace(r#"{\"sessionId\":\"s\"}"#, "{}");
        let Decision::Register {
            msg,
            refused: Some(reject),
        } = i.frame(&no_session, &|_| true, now, 0)
        else {
            panic!("expected a refusal")
        };
        assert_eq!((msg.id.as_str(), reject.status), ("r", Status::BodyError));
    }

    #[test]
    fn the_rate_limit_answers_400_after_the_session_check() {
        let now = Instant::now();
        let mut i = Inbound::new(limits(1.0, 2.0), now);
        i.registered(UserId::parse("alice").unwrap());
        assert!(matches!(
            i.frame(TEXT, &|_| true, now, 0),
            Decision::Route(_)
        ));
        assert!(matches!(
            i.frame(TEXT, &|_| true, now, 0),
            Decision::Route(_)
        ));
        assert_eq!(status(&i.frame(TEXT, &|_| true, now, 0)), 400);
        // A wrong type while limited is still 400: rate comes before type.
        let bad_type = TEXT.replace("2001", "5");
        assert_eq!(status(&i.frame(&bad_type, &|_| true, now, 0)), 400);
    }

    #[test]
    fn answers_before_register_go_to_nobody() {
        let now = Instant::now();
        let mut i = Inbound::new(limits(1.0, 1.0), now);
        let Decision::Answer(f) = i.frame(TEXT, &|_| true, now, 0) else {
            panic!()
        };
        let v: Value = serde_json::from_str(&f).unwrap();
        assert_eq!((v["id"].as_str(), v["to"].as_str()), (Some("m"), Some("")));
    }

    #[test]
    fn garbage_in_a_row_closes_and_a_message_resets_the_count() {
        let now = Instant::now();
        let mut i = Inbound::new(limits(1000.0, 1000.0), now);
        for _ in 0..MAX_ERRORS_IN_A_ROW - 1 {
            assert_eq!(status(&i.frame("", &|_| true, now, 0)), 401);
        }
        // A message (even one refused later, here 402 is garbage too, so
        // use a register) ends the run.
        assert!(matches!(
            i.frame(REG, &|_| true, now, 0),
            Decision::Register { .. }
        ));
        i.registered(UserId::parse("alice").unwrap());
        for _ in 0..MAX_ERRORS_IN_A_ROW - 1 {
            assert!(matches!(i.binary(now, 0), Decision::Answer(_)));
        }
        let Decision::Close(last) = i.frame("[]", &|_| true, now, 0) else {
            panic!("the run of errors must close")
        };
        assert!(last.contains("401"));
    }

    #[test]
    fn garbage_and_pings_are_paced_by_the_message_bucket() {
        let now = Instant::now();
        let mut i = Inbound::new(limits(100.0, 2.0), now);
        i.control(now);
        assert_eq!(status(&i.frame("x", &|_| true, now, 0)), 401);
        assert_eq!(i.pause(), None, "the burst covers two");
        i.control(now);
        let wait = i.pause().expect("a third frame waits");
        assert!(wait <= Duration::from_millis(11), "{wait:?}");
        assert_eq!(i.pause(), None, "a pause is taken once");
        // Garbage used the bucket: a text right after is rate-limited.
        i.registered(UserId::parse("alice").unwrap());
        assert_eq!(status(&i.frame(TEXT, &|_| true, now, 0)), 400);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(200))]

            #[test]
            fn any_text_gives_a_decision(text in any::<String>(), reg in any::<bool>()) {
                let now = Instant::now();
                let mut i = Inbound::new(limits(1e6, 1e6), now);
                if reg {
                    i.registered(UserId::parse("alice").unwrap());
                }
                let _ = i.frame(&text, &|_| true, now, 0);
            }

            #[test]
            fn any_json_shaped_text_gives_a_decision(
                id in "\\PC{0,70}",
                kind in prop_oneof![Just(1000i64), Just(2001), Just(9001), Just(9101), any::<i64>()],
                to in "[a-z,]{0,20}",
                body in "\\PC{0,40}",
            ) {
                let now = Instant::now();
                let mut i = Inbound::new(limits(1e6, 1e6), now);
                i.registered(UserId::parse("alice").unwrap());
                let v = serde_json::json!({
                    "id": id, "type": kind, "isSystem": false,
                    "from": "alice", "to": to, "body": body,
                });
                let d = i.frame(&v.to_string(), &|_| true, now, 0);
                let registers = matches!(d, Decision::Register { .. });
                prop_assert!(!registers, "a registered connection never registers again");
            }
        }
    }
}
