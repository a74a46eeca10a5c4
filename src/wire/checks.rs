//! The checks a connection makes on each text frame before the router sees
//! it: shape (401), registered (402), this connection's rate (400), then
//! type, from, to and body (403, 405, 406, 404). Plain data in, a decision
//! out; the reader thread carries it out.

use std::time::Instant;

use tungstenite::Utf8Bytes;

use super::parse::{self, Rules};
use crate::wire::ids::UserId;
use crate::wire::ratelimit::TokenBucket;
use crate::wire::{self, Register, Reject, Request, Status, TYPE_RECEIVE_STATUS, TYPE_REGISTER};

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
}

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
}

impl Inbound {
    pub fn new(limits: InboundLimits, now: Instant) -> Inbound {
        let receipt_burst = limits.rate_burst.max(limits.offline_per_user as f64);
        Inbound {
            user: None,
            messages: TokenBucket::new(limits.rate_per_s, limits.rate_burst, now),
            receipts: TokenBucket::new(limits.rate_per_s * 10.0, receipt_burst, now),
            max_recipients: limits.max_recipients,
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
            Err((id, r)) => return Decision::Answer(self.reject(id.as_deref(), &r, now_ms)),
        };
        let refuse =
            |me: &Self, r: Reject, id: &str| Decision::Answer(me.reject(Some(id), &r, now_ms));
        if self.user.is_none() && env.kind != TYPE_REGISTER {
            return refuse(
                self,
                Reject::new(Status::SessionError, "register first"),
                &env.id,
            );
        }
        let bucket = if env.kind == TYPE_RECEIVE_STATUS {
            &mut self.receipts
        } else {
            &mut self.messages
        };
        let limited = !bucket.take(now);
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
}
