//! Delegated login (PROTOCOL.md section 13): asking the host system who a
//! password or a token belongs to, over the project's one HTTP client
//! (blocking, with a deadline), and remembering token answers for a while
//! by the token's hash. What an answer means is decided by [`verdict`],
//! pure and unit-tested; the calls are thin around it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, bounded};
use serde_json::{Value, json};

use super::secret::{SecretHash, hash_secret};
use crate::client::HttpServer;
use crate::config::AuthHttp;
use crate::wire::ids::UserId;

/// What the host system said about a password or a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It belongs to this user.
    User(UserId),
    /// 401 or 403: wrong credentials.
    Refused,
    /// Anything else, or no answer in time: edgeim answers 503. The text
    /// is for the log (no secret in it).
    Unavailable(String),
}

/// How long a refused token is remembered at most: a user who just got a
/// new token at the host system must not wait long for it to work here.
pub const REFUSED_CACHE: Duration = Duration::from_secs(5);

/// Most token answers remembered; past it the expired ones go, then the
/// oldest, so a flood of made-up tokens cannot grow memory.
pub const MAX_CACHED_TOKENS: usize = 10_000;

/// What an answer means: 200 with a valid user id at `user_field` is that
/// user; 401 and 403 are refusals; anything else is unavailability.
pub fn verdict(status: u16, body: &[u8], user_field: &str) -> Verdict {
    match status {
        200 => {
            let id = serde_json::from_slice::<Value>(body).ok().and_then(|v| {
                v.get(user_field)
                    .and_then(Value::as_str)
                    .map(str::to_string)
            });
            match id.as_deref().and_then(UserId::parse) {
                Some(u) => Verdict::User(u),
                None => Verdict::Unavailable(format!(
                    "the host system answered 200 without a valid user id in {user_field:?}"
                )),
            }
        }
        401 | 403 => Verdict::Refused,
        other => Verdict::Unavailable(format!("the host system answered {other}")),
    }
}

/// The host system, as `[auth.http]` names it.
pub struct Upstream {
    login: Option<HttpServer>,
    token: Option<HttpServer>,
    user_field: String,
    timeout: Duration,
    cache_for: Duration,
    cache: Mutex<TokenCache>,
    /// Calls that may wait on the host system at once: each holds an HTTP
    /// worker for up to `timeout`, and a host system that hangs must not
    /// take every worker from the local users and the page.
    permits: (Sender<()>, Receiver<()>),
}

/// How many HTTP workers may wait on the host system at once: half of
/// them (at least one), so the other half always serve everyone else.
pub fn concurrency(workers: usize) -> usize {
    (workers / 2).max(1)
}

impl Upstream {
    /// From the config (whose checks refused URLs that do not parse), for
    /// `workers` HTTP workers.
    pub fn new(c: &AuthHttp, workers: usize) -> Upstream {
        let parse = |u: &Option<String>| u.as_deref().and_then(|u| HttpServer::parse(u).ok());
        let n = concurrency(workers);
        let permits = bounded(n);
        for _ in 0..n {
            let _ = permits.0.send(());
        }
        Upstream {
            permits,
            login: parse(&c.login_url),
            token: parse(&c.token_url),
            user_field: c.user_field.clone(),
            timeout: c.timeout(),
            cache_for: Duration::from_secs(c.cache_s),
            cache: Mutex::new(TokenCache::default()),
        }
    }

    /// Whose password this is: `POST login_url` with the credentials in a
    /// JSON body (never in the URL).
    pub fn login(&self, username: &str, password: &str) -> Verdict {
        let Some(server) = &self.login else {
            return Verdict::Unavailable("no auth.http.login_url".into());
        };
        let Some(_permit) = self.permit() else {
            return Verdict::Unavailable("login_url: every permitted call is waiting".into());
        };
        let body = json!({"username": username, "password": password});
        let sent = server
            .post_json("", &body)
            .timeout(self.timeout)
            .header("Accept", "application/json")
            .send();
        match sent {
            Ok(r) => verdict(r.status, &r.body, &self.user_field),
            Err(e) => Verdict::Unavailable(format!("login_url: {e}")),
        }
    }

    /// A permit to call the host system, returned when dropped; `None` at
    /// once when all are taken (the client gets 503, not a wait).
    fn permit(&self) -> Option<Permit<'_>> {
        self.permits
            .1
            .try_recv()
            .ok()
            .map(|()| Permit(&self.permits.0))
    }

    /// Whether token pass-through is configured.
    pub fn has_token_url(&self) -> bool {
        self.token.is_some()
    }

    /// Whose token this is: a remembered answer, or `GET token_url` with
    /// the header the client sent it in (`token`, or `Authorization:
    /// Bearer`). `now_ms` is monotonic.
    pub fn token(&self, token: &str, bearer: bool, now_ms: u64) -> Verdict {
        let Some(server) = &self.token else {
            return Verdict::Refused;
        };
        let key = hash_secret(token);
        if let Some(v) = super::lock(&self.cache).get(&key, now_ms) {
            return v;
        }
        let Some(_permit) = self.permit() else {
            return Verdict::Unavailable("token_url: every permitted call is waiting".into());
        };
        let req = server
            .get("")
            .timeout(self.timeout)
            .header("Accept", "application/json");
        let req = if bearer {
            req.header("Authorization", &format!("Bearer {token}"))
        } else {
            req.header("token", token)
        };
        let v = match req.send() {
            Ok(r) => verdict(r.status, &r.body, &self.user_field),
            Err(e) => Verdict::Unavailable(format!("token_url: {e}")),
        };
        let keep = match v {
            Verdict::User(_) => Some(self.cache_for),
            Verdict::Refused => Some(self.cache_for.min(REFUSED_CACHE)),
            Verdict::Unavailable(_) => None,
        };
        if let Some(keep) = keep {
            super::lock(&self.cache).put(key, v.clone(), now_ms + keep.as_millis() as u64);
        }
        v
    }
}

/// A call to the host system in progress.
struct Permit<'a>(&'a Sender<()>);

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

/// Token answers by the token's hash (never the token), each until its
/// expiry in monotonic ms.
#[derive(Default)]
struct TokenCache {
    entries: HashMap<SecretHash, (Verdict, u64)>,
}

impl TokenCache {
    fn get(&mut self, key: &SecretHash, now_ms: u64) -> Option<Verdict> {
        match self.entries.get(key) {
            Some((v, until)) if *until > now_ms => Some(v.clone()),
            Some(_) => {
                self.entries.remove(key);
                None
            }
            None => None,
        }
    }

    fn put(&mut self, key: SecretHash, v: Verdict, until: u64) {
        if self.entries.len() >= MAX_CACHED_TOKENS {
            let now = until.saturating_sub(MAX_CACHE_MS);
            self.entries.retain(|_, (_, u)| *u > now);
            if self.entries.len() >= MAX_CACHED_TOKENS
                && let Some(oldest) = self
                    .entries
                    .iter()
                    .min_by_key(|(_, (_, u))| *u)
                    .map(|(k, _)| *k)
            {
                self.entries.remove(&oldest);
            }
        }
        self.entries.insert(key, (v, until));
    }
}

/// The longest an entry is kept (`auth.http.cache_s` at most), for telling
/// expired entries when the cache is full.
const MAX_CACHE_MS: u64 = crate::config::MAX_AUTH_CACHE_S * 1000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_200_with_a_user_id_is_that_user_and_401_403_are_refusals() {
        let ok = verdict(200, br#"{"userId":"dave","name":"Dave"}"#, "userId");
        assert_eq!(ok, Verdict::User(UserId::parse("dave").unwrap()));
        let other_field = verdict(200, br#"{"login":"erin"}"#, "login");
        assert_eq!(other_field, Verdict::User(UserId::parse("erin").unwrap()));
        assert_eq!(verdict(401, b"", "userId"), Verdict::Refused);
        assert_eq!(verdict(403, b"{}", "userId"), Verdict::Refused);
    }

    #[test]
    fn anything_else_is_unavailable() {
        for (status, body) in [
            (500, &b"{}"[..]),
            (302, b""),
            (200, b"not json"),
            (200, br#"{"userId":"no spaces allowed"}"#),
            (200, br#"{"userId":"SYSTEM"}"#),
            (200, br#"{"userId":42}"#),
            (200, br#"{"other":"dave"}"#),
        ] {
            assert!(
                matches!(verdict(status, body, "userId"), Verdict::Unavailable(_)),
                "{status} {body:?}"
            );
        }
    }

    #[test]
    fn at_most_half_the_workers_wait_on_the_host_system() {
        assert_eq!(concurrency(4), 2);
        assert_eq!(concurrency(1), 1);
        let up = Upstream::new(&AuthHttp::default(), 4);
        let a = up.permit();
        let b = up.permit();
        assert!(a.is_some() && b.is_some());
        assert!(up.permit().is_none(), "a third waits for none");
        drop(a);
        assert!(
            up.permit().is_some(),
            "a permit comes back when its call ends"
        );
    }

    #[test]
    fn the_cache_keeps_answers_until_they_expire_and_stays_bounded() {
        let mut c = TokenCache::default();
        let k = hash_secret("t1");
        c.put(k, Verdict::Refused, 100);
        assert_eq!(c.get(&k, 99), Some(Verdict::Refused));
        assert_eq!(c.get(&k, 100), None, "expired");
        for i in 0..MAX_CACHED_TOKENS + 5 {
            c.put(
                hash_secret(&format!("x{i}")),
                Verdict::Refused,
                1000 + i as u64,
            );
        }
        assert!(c.entries.len() <= MAX_CACHED_TOKENS);
        assert!(
            c.get(&hash_secret(&format!("x{}", MAX_CACHED_TOKENS + 4)), 0)
                .is_some()
        );
    }

    #[test]
    fn config_md_quotes_the_cache_bounds_as_the_code_has_them() {
        let doc = crate::doc_constants::one_line(include_str!("../../docs/CONFIG.md"));
        let thousands = format!(
            "{},{:03}",
            MAX_CACHED_TOKENS / 1000,
            MAX_CACHED_TOKENS % 1000
        );
        for phrase in [
            format!(
                "A refusal (401/403) is kept at most {} s",
                REFUSED_CACHE.as_secs()
            ),
            format!("at most {thousands} of them"),
        ] {
            assert!(doc.contains(&phrase), "CONFIG.md lacks: {phrase}");
        }
    }
}
