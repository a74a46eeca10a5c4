//! SIGHUP: reread the config file and the users file, and apply what can
//! change while the server runs (docs/CONFIG.md, "Reloading").
//!
//! What changed, what applies now and what waits for a restart is decided
//! by [`plan_reload`], a plain function over two configs; [`Reloader`]
//! carries the plan out, and the binary's signal thread only calls it.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crossbeam_channel::{Sender, bounded};

use crate::auth::{Directory, Logins};
use crate::config::Config;
use crate::conn::ConnEnv;
use crate::events::{Event, Reload};
use crate::http::HttpEnv;
use crate::wire::checks::InboundLimits;

/// When a change of a key takes effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applies {
    /// At the next start only.
    Restart,
    /// At start and on SIGHUP.
    Reload,
}

/// Copies one key's value from the second config into the first.
type Take = fn(&mut Config, &Config);

/// Every key of the config file, its full name, and when a change of it
/// applies. A key reloads only if every part of the server that reads it
/// reads it again after the reload; anything that sized a structure at
/// start, a listener, the store's settings and the secrets stay as they
/// started. A test checks that this list covers every field of
/// [`Config`] and that docs/CONFIG.md says the same per key.
pub const KEYS: &[(&str, Applies, Take)] = &[
    // Where the database and the users file are, the listeners and the
    // worker threads: all opened, bound or started once.
    ("data_dir", Applies::Restart, |c, n| {
        c.data_dir.clone_from(&n.data_dir)
    }),
    ("log_level", Applies::Reload, |c, n| {
        c.log_level = n.log_level
    }),
    ("http.listen", Applies::Restart, |c, n| {
        c.http.listen = n.http.listen
    }),
    // Read by the login table, which is built once at start.
    ("http.login_ttl_s", Applies::Restart, |c, n| {
        c.http.login_ttl_s = n.http.login_ttl_s
    }),
    ("http.workers", Applies::Restart, |c, n| {
        c.http.workers = n.http.workers
    }),
    // Parsed once into the login throttle.
    ("http.trusted_proxies", Applies::Restart, |c, n| {
        c.http.trusted_proxies.clone_from(&n.http.trusted_proxies)
    }),
    ("websocket.listen", Applies::Restart, |c, n| {
        c.websocket.listen = n.websocket.listen
    }),
    ("websocket.context", Applies::Restart, |c, n| {
        c.websocket.context.clone_from(&n.websocket.context)
    }),
    // Each connection's writer keeps its own copy of these for its life.
    ("websocket.ping_interval_s", Applies::Restart, |c, n| {
        c.websocket.ping_interval_s = n.websocket.ping_interval_s
    }),
    ("websocket.idle_timeout_s", Applies::Restart, |c, n| {
        c.websocket.idle_timeout_s = n.websocket.idle_timeout_s
    }),
    ("websocket.send_queue", Applies::Restart, |c, n| {
        c.websocket.send_queue = n.websocket.send_queue
    }),
    ("websocket.write_timeout_s", Applies::Restart, |c, n| {
        c.websocket.write_timeout_s = n.websocket.write_timeout_s
    }),
    // Built into the chat page's Content-Security-Policy at start.
    ("websocket.public_url", Applies::Restart, |c, n| {
        c.websocket.public_url.clone_from(&n.websocket.public_url)
    }),
    // Kept only as a hash, made at start.
    ("api.key", Applies::Restart, |c, n| {
        c.api.key.clone_from(&n.api.key)
    }),
    // Pending session ids expire in issue order because one TTL holds
    // for all of them; a new TTL would break that order.
    ("limits.session_ttl_s", Applies::Restart, |c, n| {
        c.limits.session_ttl_s = n.limits.session_ttl_s
    }),
    // Copied into every connection's handshake and writer, and into
    // tungstenite's and the HTTP body limits at start.
    ("limits.register_timeout_s", Applies::Restart, |c, n| {
        c.limits.register_timeout_s = n.limits.register_timeout_s
    }),
    ("limits.max_message_bytes", Applies::Restart, |c, n| {
        c.limits.max_message_bytes = n.limits.max_message_bytes
    }),
    // max_recipients, rate_per_s and rate_burst: every connection opened
    // after the reload uses the new values (a reader copies them at its
    // start), and so does every system message.
    ("limits.max_recipients", Applies::Reload, |c, n| {
        c.limits.max_recipients = n.limits.max_recipients
    }),
    // The router's: it gets the new value in `Event::Reload`, for the
    // registers after it.
    ("limits.max_clients_per_user", Applies::Reload, |c, n| {
        c.limits.max_clients_per_user = n.limits.max_clients_per_user
    }),
    ("limits.rate_per_s", Applies::Reload, |c, n| {
        c.limits.rate_per_s = n.limits.rate_per_s
    }),
    ("limits.rate_burst", Applies::Reload, |c, n| {
        c.limits.rate_burst = n.limits.rate_burst
    }),
    // The store's: it reads them at start and keeps caches by them.
    ("limits.offline_per_user", Applies::Restart, |c, n| {
        c.limits.offline_per_user = n.limits.offline_per_user
    }),
    ("limits.retention_days", Applies::Restart, |c, n| {
        c.limits.retention_days = n.limits.retention_days
    }),
    ("limits.forget_client_days", Applies::Restart, |c, n| {
        c.limits.forget_client_days = n.limits.forget_client_days
    }),
    // The router's too: its buckets keep their tokens, capped at the new
    // burst.
    ("limits.session_ids_per_s", Applies::Reload, |c, n| {
        c.limits.session_ids_per_s = n.limits.session_ids_per_s
    }),
    // The store's group limits, given to it at start.
    ("limits.max_group_members", Applies::Restart, |c, n| {
        c.limits.max_group_members = n.limits.max_group_members
    }),
    ("limits.max_groups_per_user", Applies::Restart, |c, n| {
        c.limits.max_groups_per_user = n.limits.max_groups_per_user
    }),
    // The store thread's, given to it at start.
    ("store.commit_window_ms", Applies::Restart, |c, n| {
        c.store.commit_window_ms = n.store.commit_window_ms
    }),
    // The HTTP workers' view of the host system and the proxy header is
    // built at start.
    ("auth.mode", Applies::Restart, |c, n| {
        c.auth.mode = n.auth.mode
    }),
    ("auth.http.login_url", Applies::Restart, |c, n| {
        c.auth.http.login_url.clone_from(&n.auth.http.login_url)
    }),
    ("auth.http.token_url", Applies::Restart, |c, n| {
        c.auth.http.token_url.clone_from(&n.auth.http.token_url)
    }),
    ("auth.http.user_field", Applies::Restart, |c, n| {
        c.auth.http.user_field.clone_from(&n.auth.http.user_field)
    }),
    ("auth.http.timeout_s", Applies::Restart, |c, n| {
        c.auth.http.timeout_s = n.auth.http.timeout_s
    }),
    ("auth.http.cache_s", Applies::Restart, |c, n| {
        c.auth.http.cache_s = n.auth.http.cache_s
    }),
    ("auth.header.user", Applies::Restart, |c, n| {
        c.auth.header.user.clone_from(&n.auth.header.user)
    }),
];

/// What a reload does.
#[derive(Debug, PartialEq)]
pub struct ReloadPlan {
    /// The config the server runs with afterwards: the running one, with
    /// the value of every key that reloads taken from the new file. The
    /// next reload is compared with it, so a change that waits for a
    /// restart is named again each time.
    pub effective: Config,
    /// The keys that changed and apply now, in file order.
    pub applied: Vec<&'static str>,
    /// The keys that changed but apply only at the next restart.
    pub restart: Vec<&'static str>,
}

/// Compares the running config with a new, valid one.
pub fn plan_reload(running: &Config, new: &Config) -> ReloadPlan {
    let mut plan = ReloadPlan {
        effective: running.clone(),
        applied: Vec::new(),
        restart: Vec::new(),
    };
    for (key, applies, take) in KEYS {
        let mut changed = running.clone();
        take(&mut changed, new);
        if changed == *running {
            continue;
        }
        match applies {
            Applies::Reload => {
                take(&mut plan.effective, new);
                plan.applied.push(key);
            }
            Applies::Restart => plan.restart.push(key),
        }
    }
    plan
}

/// How long a reload waits for the router to take its new limits.
const ROUTER_WAIT: Duration = Duration::from_secs(5);

/// What a reload reaches of the running server, and the config it runs
/// with. Owned by the binary's signal thread.
pub struct Reloader {
    /// The `--config` file the server was started with; without one
    /// (the defaults, or `edgeim demo`) only the users file is reread.
    pub(crate) path: Option<PathBuf>,
    pub(crate) running: Config,
    pub(crate) users: Arc<Directory>,
    pub(crate) logins: Arc<Logins>,
    pub(crate) conn_env: Arc<ConnEnv>,
    pub(crate) http_env: Arc<HttpEnv>,
    pub(crate) router: Sender<Event>,
}

impl Reloader {
    /// Rereads the config file and the users file and applies what can
    /// change now, all or nothing: a config file that does not load, or a
    /// users file that cannot be read, leaves everything as it was. Logs
    /// one line saying what happened (and one more naming the keys that
    /// wait for a restart); false when nothing was applied.
    pub fn reload(&mut self) -> bool {
        let new = match &self.path {
            None => self.running.clone(),
            Some(path) => match Config::load(path) {
                Ok(c) => c,
                Err(e) => {
                    log::error!("reload: {e}; keeping the running config");
                    return false;
                }
            },
        };
        // The users file is the last thing that can fail: after it,
        // everything below only stores values.
        let users = match self.users.reload() {
            Ok(n) => n,
            Err(e) => {
                log::error!("reload: {e}; keeping the running config and users");
                return false;
            }
        };
        let plan = plan_reload(&self.running, &new);
        let c = &plan.effective;
        let level = c.log_level.to_filter();
        crate::logger::set_level(crate::logger::effective_level(level));
        // offline_per_user sizes the receipt bucket; it waits for a
        // restart, as the store's count does.
        self.conn_env.set_limits(InboundLimits {
            rate_per_s: c.limits.rate_per_s,
            rate_burst: c.limits.rate_burst,
            max_recipients: c.limits.max_recipients,
            ..self.conn_env.limits()
        });
        self.http_env
            .max_recipients
            .store(c.limits.max_recipients, Ordering::Relaxed);
        let known = |u: &crate::wire::ids::UserId| self.users.contains(u);
        let revoked = self.logins.revoke_missing(known);
        let closed = self.reload_router(c);
        if !plan.restart.is_empty() {
            log::warn!(
                "reload: {} changed; {} at the next restart",
                plan.restart.join(", "),
                if plan.restart.len() == 1 {
                    "it takes effect"
                } else {
                    "they take effect"
                }
            );
        }
        let applied = if plan.applied.is_empty() {
            "no reloadable key changed".to_string()
        } else {
            format!("applied {}", plan.applied.join(", "))
        };
        let overridden = match crate::logger::env_level() {
            Some(l) if plan.applied.contains(&"log_level") => {
                format!(" (EDGEIM_LOG={l} overrides log_level)")
            }
            _ => String::new(),
        };
        let what = match &self.path {
            Some(p) => format!("config {}", p.display()),
            None => "the users file (no config file)".to_string(),
        };
        log::info!(
            "reloaded {what}: {applied}{overridden}; {users} users; removed users: \
             {} logged out, {closed} connections closed",
            revoked.len(),
        );
        self.running = plan.effective;
        true
    }

    /// Hands the router its new limits and who exists; the number of
    /// connections it closed (of users no longer in the users file).
    fn reload_router(&self, c: &Config) -> usize {
        let (tx, rx) = bounded(1);
        let reload = Reload {
            session_ids_per_s: c.limits.session_ids_per_s,
            max_clients_per_user: c.limits.max_clients_per_user,
            users: self.users.all(),
            reply: tx,
        };
        if self.router.send(Event::Reload(reload)).is_err() {
            // Only while stopping: nothing to apply it to.
            return 0;
        }
        rx.recv_timeout(ROUTER_WAIT).unwrap_or_else(|_| {
            log::warn!("reload: the router did not answer within {ROUTER_WAIT:?}");
            0
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A valid config in which every key differs from the default.
    fn all_changed() -> Config {
        Config::parse(
            r#"
            data_dir = "elsewhere"
            log_level = "debug"
            [http]
            listen = "127.0.0.1:9080"
            login_ttl_s = 60
            workers = 2
            trusted_proxies = ["10.0.0.1"]
            [websocket]
            listen = "127.0.0.1:9081"
            context = "ws"
            ping_interval_s = 5
            idle_timeout_s = 15
            send_queue = 2097152
            write_timeout_s = 3
            public_url = "wss://chat.example.com/ws"
            [api]
            key = "0123456789abcdef0123"
            [limits]
            session_ttl_s = 30
            register_timeout_s = 5
            max_message_bytes = 1024
            max_recipients = 7
            max_clients_per_user = 3
            rate_per_s = 2.5
            rate_burst = 5.0
            offline_per_user = 99
            max_group_members = 9
            max_groups_per_user = 9
            retention_days = 3
            forget_client_days = 2
            session_ids_per_s = 9.0
            [store]
            commit_window_ms = 7
            [auth]
            mode = "local+http"
            [auth.http]
            login_url = "http://127.0.0.1:9000/login"
            token_url = "http://127.0.0.1:9000/me"
            user_field = "login"
            timeout_s = 2
            cache_s = 10
            [auth.header]
            user = "X-Forwarded-User"
            "#,
        )
        .unwrap()
    }

    #[test]
    fn nothing_changed_is_an_empty_plan() {
        let c = Config::default();
        let plan = plan_reload(&c, &c);
        assert!(plan.applied.is_empty() && plan.restart.is_empty());
        assert_eq!(plan.effective, c);
    }

    #[test]
    fn the_key_list_covers_every_field_of_the_config() {
        // Taking every key, reloadable or not, from the new config must
        // give exactly the new config: a field missing from KEYS would
        // keep its old value here.
        let (old, new) = (Config::default(), all_changed());
        let mut every = old.clone();
        for (_, _, take) in KEYS {
            take(&mut every, &new);
        }
        assert_eq!(every, new);
        let plan = plan_reload(&old, &new);
        assert_eq!(plan.applied.len() + plan.restart.len(), KEYS.len());
    }

    #[test]
    fn reloadable_keys_apply_and_the_rest_wait_for_a_restart() {
        let (old, new) = (Config::default(), all_changed());
        let plan = plan_reload(&old, &new);
        assert_eq!(
            plan.applied,
            [
                "log_level",
                "limits.max_recipients",
                "limits.max_clients_per_user",
                "limits.rate_per_s",
                "limits.rate_burst",
                "limits.session_ids_per_s",
            ]
        );
        assert!(plan.restart.contains(&"data_dir"));
        assert!(plan.restart.contains(&"http.listen"));
        assert!(plan.restart.contains(&"limits.offline_per_user"));
        // The server goes on with the old value of what waits.
        let e = &plan.effective;
        assert_eq!(e.limits.rate_burst, 5.0);
        assert_eq!(e.log_level, new.log_level);
        assert_eq!(e.data_dir, old.data_dir);
        assert_eq!(e.http.listen, old.http.listen);
        assert_eq!(e.limits.offline_per_user, old.limits.offline_per_user);
    }

    #[test]
    fn a_change_that_waits_is_named_again_at_the_next_reload() {
        let old = Config::default();
        let mut new = old.clone();
        new.http.listen = "127.0.0.1:9999".parse().unwrap();
        new.limits.rate_burst = 10.0;
        let first = plan_reload(&old, &new);
        assert_eq!(first.restart, ["http.listen"]);
        assert_eq!(first.applied, ["limits.rate_burst"]);
        let second = plan_reload(&first.effective, &new);
        assert_eq!(second.restart, ["http.listen"]);
        assert!(second.applied.is_empty(), "already applied");
    }

    #[test]
    fn changing_back_a_key_that_waits_names_nothing() {
        let old = Config::default();
        let mut new = old.clone();
        new.data_dir = "other".into();
        let first = plan_reload(&old, &new);
        assert_eq!(first.restart, ["data_dir"]);
        let back = plan_reload(&first.effective, &old);
        assert!(back.restart.is_empty() && back.applied.is_empty());
    }

    #[test]
    fn config_md_says_when_each_key_applies() {
        // Each key's section in CONFIG.md ends in an "Applies:" line; it
        // names SIGHUP exactly for the keys that reload.
        let docs = include_str!("../docs/CONFIG.md");
        let mut section = "";
        let mut key: Option<String> = None;
        let mut seen = Vec::new();
        for line in docs.lines() {
            if let Some(rest) = line.strip_prefix("## `[") {
                section = rest.trim_end_matches("]`");
                key = None;
            } else if line.starts_with("## ") {
                section = "";
                key = None;
            } else if let Some(rest) = line.strip_prefix("### `") {
                let name = rest.trim_end_matches('`');
                key = Some(if section.is_empty() {
                    name.to_string()
                } else {
                    format!("{section}.{name}")
                });
            } else if let (Some(k), true) = (&key, line.starts_with("Applies:")) {
                let (_, applies, _) = KEYS
                    .iter()
                    .find(|(name, _, _)| name == k)
                    .unwrap_or_else(|| panic!("CONFIG.md documents {k}, which is no key"));
                let says_reload = line.contains("on reload (SIGHUP)");
                assert_eq!(
                    says_reload,
                    *applies == Applies::Reload,
                    "CONFIG.md, {k}: {line:?}"
                );
                seen.push(k.clone());
                key = None;
            }
        }
        let all: Vec<String> = KEYS.iter().map(|(k, _, _)| k.to_string()).collect();
        assert_eq!(seen, all, "an Applies line for every key, in order");
    }
}
