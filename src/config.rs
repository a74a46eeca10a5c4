//! The TOML configuration. Every key has a default (the constants below are
//! the single source; `docs/CONFIG.md` and `edgeim.toml` list the same values,
//! and a test checks the sample against them). Unknown keys are errors.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
/// The whole configuration file.
pub struct Config {
    /// Where the server keeps its state (the users file among it).
    pub data_dir: PathBuf,
    /// `error`, `warn`, `info`, `debug` or `trace`; `EDGEIM_LOG` overrides it.
    pub log_level: LogLevel,
    /// `[http]`.
    pub http: Http,
    /// `[websocket]`.
    pub websocket: WebSocket,
    /// `[api]`.
    pub api: Api,
    /// `[limits]`.
    pub limits: Limits,
    /// `[store]`.
    pub store: Storage,
    /// `[auth]`.
    pub auth: Auth,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
/// `auth.mode`: who checks a login (PROTOCOL.md section 13).
pub enum AuthMode {
    /// The users file only.
    #[default]
    #[serde(rename = "local")]
    Local,
    /// The host system, over HTTP (passwords and tokens).
    #[serde(rename = "http")]
    Http,
    /// The users file first, then the host system.
    #[serde(rename = "local+http")]
    LocalHttp,
    /// A single-sign-on proxy's header, from `http.trusted_proxies` only;
    /// passwords against the users file.
    #[serde(rename = "header")]
    Header,
}

impl AuthMode {
    /// Whether the host system is asked (modes `http`, `local+http`).
    pub fn asks_upstream(self) -> bool {
        matches!(self, AuthMode::Http | AuthMode::LocalHttp)
    }
    /// Whether the users file is asked for passwords.
    pub fn asks_users_file(self) -> bool {
        !matches!(self, AuthMode::Http)
    }
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
/// `[auth]`: who checks a login.
pub struct Auth {
    /// `local`, `http`, `local+http` or `header`.
    pub mode: AuthMode,
    /// `[auth.http]`.
    pub http: AuthHttp,
    /// `[auth.header]`.
    pub header: AuthHeader,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
/// `[auth.http]`: the host system that checks passwords and tokens.
pub struct AuthHttp {
    /// Where passwords are checked (POST, JSON body).
    pub login_url: Option<String>,
    /// Where a host system's token is checked (GET, the client's header).
    pub token_url: Option<String>,
    /// The field of the 200 JSON answer that holds the user id.
    pub user_field: String,
    /// How long the host system may take to answer.
    pub timeout_s: u64,
    /// How long a token's answer is kept.
    pub cache_s: u64,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
/// `[auth.header]`: header login behind a single-sign-on proxy.
pub struct AuthHeader {
    /// The header the proxy puts the user id in.
    pub user: String,
}

/// The default of `auth.http.user_field`.
pub const DEFAULT_USER_FIELD: &str = "userId";
/// The default of `auth.http.timeout_s`.
pub const DEFAULT_AUTH_TIMEOUT_S: u64 = 5;
/// The default of `auth.http.cache_s`.
pub const DEFAULT_AUTH_CACHE_S: u64 = 30;
/// The default of `auth.header.user`.
pub const DEFAULT_USER_HEADER: &str = "X-Remote-User";
/// The upper bound of `auth.http.timeout_s`.
pub const MAX_AUTH_TIMEOUT_S: u64 = 60;
/// The upper bound of `auth.http.cache_s` (an hour: a token revoked at the
/// host system keeps working at most this long here).
pub const MAX_AUTH_CACHE_S: u64 = 3600;

impl Default for AuthHttp {
    fn default() -> Self {
        AuthHttp {
            login_url: None,
            token_url: None,
            user_field: DEFAULT_USER_FIELD.into(),
            timeout_s: DEFAULT_AUTH_TIMEOUT_S,
            cache_s: DEFAULT_AUTH_CACHE_S,
        }
    }
}

impl Default for AuthHeader {
    fn default() -> Self {
        AuthHeader {
            user: DEFAULT_USER_HEADER.into(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
/// `[http]`: the HTTP API and the chat page.
pub struct Http {
    /// The address and port to listen on (loopback by default).
    pub listen: SocketAddr,
    /// How long a browser cookie or an app token stays valid.
    pub login_ttl_s: u64,
    /// Worker threads answering HTTP requests.
    pub workers: usize,
    /// Peers (CIDRs) whose `X-Forwarded-For` names the client's address.
    pub trusted_proxies: Vec<String>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
/// `[websocket]`: the WebSocket listener.
pub struct WebSocket {
    /// The address and port to listen on (loopback by default).
    pub listen: SocketAddr,
    /// The path clients connect to, without the leading slash.
    pub context: String,
    /// How often the server pings each connection.
    pub ping_interval_s: u64,
    /// A connection silent this long is closed.
    pub idle_timeout_s: u64,
    /// Bytes queued for one connection before it is closed as `slow`.
    pub send_queue: usize,
    /// A write to a client that blocks this long closes the connection.
    pub write_timeout_s: u64,
    /// The WebSocket URL browsers are told to use (behind a TLS proxy:
    /// `wss://...`); unset: this port on the host the browser used.
    pub public_url: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
/// `[api]`: the system-message endpoint.
pub struct Api {
    /// Bearer key for `POST /api/system/message`; unset disables it.
    pub key: Option<String>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
/// `[limits]`: what one client, user or message may use.
pub struct Limits {
    /// How long a one-time session id is good for.
    pub session_ttl_s: u64,
    /// How long a connection may take to register.
    pub register_timeout_s: u64,
    /// Largest WebSocket message (and system-message body).
    pub max_message_bytes: usize,
    /// Most users in one `to`.
    pub max_recipients: usize,
    /// Most clients one user may have registered at once.
    pub max_clients_per_user: usize,
    /// Messages one connection may send per second, sustained.
    pub rate_per_s: f64,
    /// Messages one connection may send in a burst.
    pub rate_burst: f64,
    /// Unacknowledged messages kept for one user.
    pub offline_per_user: usize,
    /// How long messages are kept.
    pub retention_days: u64,
    /// A client not seen this long is forgotten with its pending messages.
    pub forget_client_days: u64,
    /// Session ids issued per second, server-wide.
    pub session_ids_per_s: f64,
    /// Most members in one group.
    pub max_group_members: usize,
    /// Most groups one user may be in.
    pub max_groups_per_user: usize,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
/// `[store]`: how the database commits.
pub struct Storage {
    /// How long a commit that will be flushed waits for more to join it.
    pub commit_window_ms: u64,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
/// `log_level`.
pub enum LogLevel {
    /// Errors only.
    Error,
    /// And warnings.
    Warn,
    /// And what happens (the default).
    Info,
    /// And details.
    Debug,
    /// Everything.
    Trace,
}

/// The default of `data_dir`.
pub const DEFAULT_DATA_DIR: &str = "data";
/// The default of `http_listen`.
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:8080";
/// The default of `login_ttl_s`.
pub const DEFAULT_LOGIN_TTL_S: u64 = 30 * 24 * 3600;
/// The default of `http_workers`.
pub const DEFAULT_HTTP_WORKERS: usize = 4;
/// The default of `ws_listen`.
pub const DEFAULT_WS_LISTEN: &str = "127.0.0.1:8081";
/// The default of `context`.
pub const DEFAULT_CONTEXT: &str = "websocket";
/// The default of `ping_interval_s`.
pub const DEFAULT_PING_INTERVAL_S: u64 = 30;
/// The default of `idle_timeout_s`.
pub const DEFAULT_IDLE_TIMEOUT_S: u64 = 90;
/// The default of `send_queue`.
pub const DEFAULT_SEND_QUEUE: usize = 4 * 1024 * 1024;
/// The default of `write_timeout_s`.
pub const DEFAULT_WRITE_TIMEOUT_S: u64 = 10;
/// The default of `session_ttl_s`.
pub const DEFAULT_SESSION_TTL_S: u64 = 60;
/// The default of `register_timeout_s`.
pub const DEFAULT_REGISTER_TIMEOUT_S: u64 = 10;
/// The default of `max_message_bytes`.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// The default of `max_recipients`.
pub const DEFAULT_MAX_RECIPIENTS: usize = 100;
/// The default of `max_clients_per_user`.
pub const DEFAULT_MAX_CLIENTS_PER_USER: usize = 16;
/// The default of `rate_per_s`.
pub const DEFAULT_RATE_PER_S: f64 = 200.0;
/// The default of `rate_burst`.
pub const DEFAULT_RATE_BURST: f64 = 400.0;
/// The default of `offline_per_user`.
pub const DEFAULT_OFFLINE_PER_USER: usize = 10_000;
/// The default of `retention_days`.
pub const DEFAULT_RETENTION_DAYS: u64 = 30;
/// The default of `forget_client_days`.
pub const DEFAULT_FORGET_CLIENT_DAYS: u64 = 7;
/// The default of `session_ids_per_s`.
pub const DEFAULT_SESSION_IDS_PER_S: f64 = 500.0;
/// The default of `max_group_members`.
pub const DEFAULT_MAX_GROUP_MEMBERS: usize = 500;
/// The default of `max_groups_per_user`.
pub const DEFAULT_MAX_GROUPS_PER_USER: usize = 100;
/// The default of `commit_window_ms`.
pub const DEFAULT_COMMIT_WINDOW_MS: u64 = 2;

/// The upper bound of `session_ttl_s` (a day).
pub const MAX_SESSION_TTL_S: u64 = 24 * 3600;
/// The upper bound of `register_timeout_s`, `ping_interval_s` and
/// `write_timeout_s` (an hour).
pub const MAX_TIMEOUT_S: u64 = 3600;
/// The upper bound of `idle_timeout_s` (a day).
pub const MAX_IDLE_S: u64 = 24 * 3600;
/// The upper bound of `login_ttl_s` (400 days, browsers' cookie limit).
pub const MAX_LOGIN_TTL_S: u64 = 400 * 24 * 3600;
/// The upper bound of `retention_days` and `forget_client_days` (100 years).
pub const MAX_DAYS: u64 = 36_500;
/// The upper bound of `max_message_bytes` (16 MiB).
pub const MAX_MESSAGE_BYTES: u64 = 16 * 1024 * 1024;
/// The upper bound of `max_recipients`.
pub const MAX_RECIPIENTS: u64 = 10_000;
/// The upper bound of `max_group_members` and `max_groups_per_user`.
pub const MAX_GROUP_LIMIT: u64 = 10_000;
/// The upper bound of `max_clients_per_user`.
pub const MAX_CLIENTS_PER_USER: u64 = 1_000;
/// The upper bound of `offline_per_user`.
pub const MAX_OFFLINE_PER_USER: u64 = 10_000_000;
/// The upper bound of `send_queue`.
pub const MAX_SEND_QUEUE: u64 = 1 << 30;
/// The lower bound of `send_queue`: a backlog page and a few large texts
/// must fit.
pub const MIN_SEND_QUEUE: usize = 1024 * 1024;
/// The upper bound of `workers`.
pub const MAX_WORKERS: u64 = 256;
/// The upper bound of `commit_window_ms`.
pub const MAX_COMMIT_WINDOW_MS: u64 = 100;
/// The upper bound of the three rates.
pub const MAX_RATE: f64 = 1_000_000.0;

fn addr(s: &str) -> SocketAddr {
    // The defaults above are literals that parse.
    s.parse()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            log_level: LogLevel::Info,
            http: Http::default(),
            websocket: WebSocket::default(),
            api: Api::default(),
            limits: Limits::default(),
            store: Storage::default(),
            auth: Auth::default(),
        }
    }
}

impl Default for Storage {
    fn default() -> Self {
        Storage {
            commit_window_ms: DEFAULT_COMMIT_WINDOW_MS,
        }
    }
}

impl Default for Http {
    fn default() -> Self {
        Http {
            listen: addr(DEFAULT_HTTP_LISTEN),
            login_ttl_s: DEFAULT_LOGIN_TTL_S,
            workers: DEFAULT_HTTP_WORKERS,
            trusted_proxies: Vec::new(),
        }
    }
}

impl Default for WebSocket {
    fn default() -> Self {
        WebSocket {
            listen: addr(DEFAULT_WS_LISTEN),
            context: DEFAULT_CONTEXT.to_string(),
            ping_interval_s: DEFAULT_PING_INTERVAL_S,
            idle_timeout_s: DEFAULT_IDLE_TIMEOUT_S,
            send_queue: DEFAULT_SEND_QUEUE,
            write_timeout_s: DEFAULT_WRITE_TIMEOUT_S,
            public_url: None,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            session_ttl_s: DEFAULT_SESSION_TTL_S,
            register_timeout_s: DEFAULT_REGISTER_TIMEOUT_S,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_recipients: DEFAULT_MAX_RECIPIENTS,
            max_clients_per_user: DEFAULT_MAX_CLIENTS_PER_USER,
            rate_per_s: DEFAULT_RATE_PER_S,
            rate_burst: DEFAULT_RATE_BURST,
            offline_per_user: DEFAULT_OFFLINE_PER_USER,
            retention_days: DEFAULT_RETENTION_DAYS,
            forget_client_days: DEFAULT_FORGET_CLIENT_DAYS,
            session_ids_per_s: DEFAULT_SESSION_IDS_PER_S,
            max_group_members: DEFAULT_MAX_GROUP_MEMBERS,
            max_groups_per_user: DEFAULT_MAX_GROUPS_PER_USER,
        }
    }
}

impl Storage {
    /// `commit_window_ms` as a duration.
    pub fn commit_window(&self) -> Duration {
        Duration::from_millis(self.commit_window_ms)
    }
}

impl LogLevel {
    /// The `log` crate's filter for this level.
    pub fn to_filter(self) -> log::LevelFilter {
        match self {
            LogLevel::Error => log::LevelFilter::Error,
            LogLevel::Warn => log::LevelFilter::Warn,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Debug => log::LevelFilter::Debug,
            LogLevel::Trace => log::LevelFilter::Trace,
        }
    }
}

impl Http {
    /// `trusted_proxies` parsed (validation refused any that do not parse).
    pub fn trusted_proxies(&self) -> Vec<crate::auth::throttle::Cidr> {
        self.trusted_proxies
            .iter()
            .filter_map(|c| crate::auth::throttle::Cidr::parse(c))
            .collect()
    }
}

impl Limits {
    /// `session_ttl_s` as a duration.
    pub fn session_ttl(&self) -> Duration {
        Duration::from_secs(self.session_ttl_s)
    }
    /// `register_timeout_s` as a duration.
    pub fn register_timeout(&self) -> Duration {
        Duration::from_secs(self.register_timeout_s)
    }
    /// `retention_days` in ms.
    pub fn retention_ms(&self) -> u64 {
        self.retention_days.saturating_mul(24 * 3600 * 1000)
    }
}

/// A configuration that cannot be used, said in one line.
#[derive(Debug)]
pub struct ConfigError {
    /// The config file.
    pub path: PathBuf,
    /// What is wrong, naming the key and line.
    pub why: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config {}: {}", self.path.display(), self.why)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let err = |why: String| ConfigError {
            path: path.to_path_buf(),
            why,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string().to_lowercase()))?;
        let config = Config::parse(&text).map_err(err)?;
        Ok(config)
    }

    /// Parses config text; the error is one line with the line number.
    pub fn parse(text: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text.get(..s.start).unwrap_or(text).matches('\n').count() + 1);
            let msg = e.message().replace('\n', " ");
            match line {
                Some(l) => format!("line {l}: {msg}"),
                None => msg,
            }
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        let l = &self.limits;
        let ws = &self.websocket;
        // (key, value, the largest value that works). The upper bounds keep
        // every `Instant + Duration` and every allocation they size sane.
        let bounded: [(&str, u64, u64); 17] = [
            ("limits.session_ttl_s", l.session_ttl_s, MAX_SESSION_TTL_S),
            (
                "limits.register_timeout_s",
                l.register_timeout_s,
                MAX_TIMEOUT_S,
            ),
            (
                "limits.max_message_bytes",
                l.max_message_bytes as u64,
                MAX_MESSAGE_BYTES,
            ),
            (
                "limits.max_recipients",
                l.max_recipients as u64,
                MAX_RECIPIENTS,
            ),
            (
                "limits.max_clients_per_user",
                l.max_clients_per_user as u64,
                MAX_CLIENTS_PER_USER,
            ),
            (
                "limits.offline_per_user",
                l.offline_per_user as u64,
                MAX_OFFLINE_PER_USER,
            ),
            (
                "limits.max_group_members",
                l.max_group_members as u64,
                MAX_GROUP_LIMIT,
            ),
            (
                "limits.max_groups_per_user",
                l.max_groups_per_user as u64,
                MAX_GROUP_LIMIT,
            ),
            (
                "websocket.ping_interval_s",
                ws.ping_interval_s,
                MAX_TIMEOUT_S,
            ),
            ("websocket.idle_timeout_s", ws.idle_timeout_s, MAX_IDLE_S),
            ("websocket.send_queue", ws.send_queue as u64, MAX_SEND_QUEUE),
            (
                "websocket.write_timeout_s",
                ws.write_timeout_s,
                MAX_TIMEOUT_S,
            ),
            ("http.workers", self.http.workers as u64, MAX_WORKERS),
            ("http.login_ttl_s", self.http.login_ttl_s, MAX_LOGIN_TTL_S),
            ("limits.retention_days", l.retention_days, MAX_DAYS),
            ("limits.forget_client_days", l.forget_client_days, MAX_DAYS),
            (
                "store.commit_window_ms",
                self.store.commit_window_ms,
                MAX_COMMIT_WINDOW_MS,
            ),
        ];
        let may_be_zero = [
            "limits.retention_days",
            "limits.forget_client_days",
            "store.commit_window_ms",
        ];
        for (key, v, max) in bounded {
            if v == 0 && !may_be_zero.contains(&key) {
                return Err(format!("{key} must be greater than 0"));
            }
            if v > max {
                return Err(format!("{key} must be at most {max}"));
            }
        }
        if ws.send_queue < MIN_SEND_QUEUE {
            return Err(format!(
                "websocket.send_queue must be at least {MIN_SEND_QUEUE} (bytes)"
            ));
        }
        // A bucket must hold one whole token to ever let anything through.
        for (key, v, ok, want) in [
            (
                "limits.rate_per_s",
                l.rate_per_s,
                l.rate_per_s > 0.0,
                "greater than 0",
            ),
            (
                "limits.rate_burst",
                l.rate_burst,
                l.rate_burst >= 1.0,
                "at least 1",
            ),
            (
                "limits.session_ids_per_s",
                l.session_ids_per_s,
                l.session_ids_per_s >= 1.0,
                "at least 1",
            ),
        ] {
            if !(v.is_finite() && ok) {
                return Err(format!("{key} must be a number {want}"));
            }
            if v > MAX_RATE {
                return Err(format!("{key} must be at most {MAX_RATE}"));
            }
        }
        if let Some(bad) = self
            .http
            .trusted_proxies
            .iter()
            .find(|c| crate::auth::throttle::Cidr::parse(c).is_none())
        {
            return Err(format!(
                "http.trusted_proxies: {:?} is not an address or a CIDR like \"10.0.0.0/8\"",
                bad.chars().take(64).collect::<String>()
            ));
        }
        if ws.context.is_empty()
            || ws.context.starts_with('/')
            || ws.context.contains(['?', '#', ' '])
        {
            return Err(
                "websocket.context must be a path without a leading slash, like \"websocket\""
                    .into(),
            );
        }
        if let Some(url) = &ws.public_url
            && !(url.starts_with("ws://") || url.starts_with("wss://"))
        {
            return Err("websocket.public_url must start with ws:// or wss://".into());
        }
        if self.api.key.as_deref().is_some_and(|k| k.len() < 16) {
            return Err("api.key must be at least 16 characters".into());
        }
        self.validate_auth()
    }

    fn validate_auth(&self) -> Result<(), String> {
        let a = &self.auth;
        for (key, url) in [
            ("auth.http.login_url", &a.http.login_url),
            ("auth.http.token_url", &a.http.token_url),
        ] {
            if let Some(url) = url
                && crate::client::HttpServer::parse(url).is_err()
            {
                return Err(format!(
                    "{key} must be an http:// URL (edgeim does not speak TLS to the host system: keep it on loopback or a trusted network)"
                ));
            }
        }
        if a.mode.asks_upstream() && a.http.login_url.is_none() {
            return Err("auth.mode = \"http\" or \"local+http\" needs auth.http.login_url".into());
        }
        if a.mode == AuthMode::Header && self.http.trusted_proxies.is_empty() {
            return Err(
                "auth.mode = \"header\" needs http.trusted_proxies: the proxies whose header is believed"
                    .into(),
            );
        }
        if a.http.user_field.is_empty() {
            return Err("auth.http.user_field must not be empty".into());
        }
        let token = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        if a.header.user.is_empty() || !a.header.user.chars().all(token) {
            return Err("auth.header.user must be a header name, like \"X-Remote-User\"".into());
        }
        for (key, v, max) in [
            ("auth.http.timeout_s", a.http.timeout_s, MAX_AUTH_TIMEOUT_S),
            ("auth.http.cache_s", a.http.cache_s, MAX_AUTH_CACHE_S),
        ] {
            if v == 0 || v > max {
                return Err(format!("{key} must be between 1 and {max}"));
            }
        }
        Ok(())
    }
}

impl AuthHttp {
    /// `timeout_s` as a duration.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_duration_and_count_has_an_upper_bound_naming_its_key() {
        for (section, key, big) in [
            ("websocket", "ping_interval_s", "9223372036854775807"),
            ("limits", "register_timeout_s", "9223372036854775807"),
            ("limits", "session_ttl_s", "86401"),
            ("websocket", "idle_timeout_s", "99999999"),
            ("websocket", "write_timeout_s", "3601"),
            ("websocket", "send_queue", "1073741825"),
            ("http", "workers", "257"),
            ("http", "login_ttl_s", "9999999999"),
            ("limits", "max_message_bytes", "999999999"),
            ("limits", "max_recipients", "10001"),
            ("limits", "max_clients_per_user", "1001"),
            ("limits", "offline_per_user", "10000001"),
            ("limits", "max_group_members", "10001"),
            ("limits", "max_groups_per_user", "10001"),
            ("limits", "retention_days", "36501"),
            ("limits", "forget_client_days", "36501"),
            ("limits", "rate_per_s", "1e9"),
            ("limits", "rate_burst", "1e9"),
            ("limits", "session_ids_per_s", "1e9"),
            ("store", "commit_window_ms", "101"),
        ] {
            let e = Config::parse(&format!("[{section}]\n{key} = {big}\n")).unwrap_err();
            assert!(
                e.contains(&format!("{section}.{key} must be")) && !e.contains('\n'),
                "{key}: {e}"
            );
        }
        assert!(Config::parse("[limits]\nretention_days = 0\n").is_ok());
        assert!(Config::parse("[store]\ncommit_window_ms = 0\n").is_ok());
        // CONFIG.md quotes the window's default and bound.
        let docs = include_str!("../docs/CONFIG.md");
        assert!(docs.contains(&format!(
            "| `commit_window_ms` | `{MAX_COMMIT_WINDOW_MS}` (at least `0`) |"
        )));
        assert!(docs.contains(&format!(
            "Type: integer, milliseconds, 0 to {MAX_COMMIT_WINDOW_MS}. Default: `{DEFAULT_COMMIT_WINDOW_MS}`."
        )));
        assert!(Config::parse("[websocket]\nping_interval_s = 3600\n").is_ok());
    }

    #[test]
    fn trusted_proxies_are_cidrs() {
        let c = Config::parse("[http]\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n").unwrap();
        assert_eq!(c.http.trusted_proxies().len(), 2);
        let e = Config::parse("[http]\ntrusted_proxies = [\"10.0.0.0/40\"]\n").unwrap_err();
        assert!(
            e.starts_with("http.trusted_proxies") && !e.contains('\n'),
            "{e}"
        );
    }

    mod props {
        use super::super::Config;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]
            #[test]
            fn any_text_gets_an_answer_never_a_panic(text in "\\PC{0,200}") {
                let _ = Config::parse(&text);
            }

            #[test]
            fn any_value_of_a_known_key_gets_an_answer(
                key in prop::sample::select(vec![
                    "[websocket]\nping_interval_s", "[limits]\nregister_timeout_s",
                    "[limits]\nrate_per_s", "[http]\ntrusted_proxies", "[http]\nworkers",
                    "[limits]\nsession_ids_per_s", "[websocket]\npublic_url",
                ]),
                value in prop_oneof![
                    any::<i64>().prop_map(|v| v.to_string()),
                    any::<f64>().prop_map(|v| format!("{v:?}")),
                    "\"\\PC{0,20}\"",
                    "\\[\"[0-9./:a-f]{0,20}\"\\]",
                ],
            ) {
                let _ = Config::parse(&format!("{key} = {value}\n"));
            }
        }
    }

    #[test]
    fn empty_file_means_defaults() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
    }

    #[test]
    fn defaults_listen_on_loopback() {
        let c = Config::default();
        assert!(c.http.listen.ip().is_loopback());
        assert!(c.websocket.listen.ip().is_loopback());
    }

    #[test]
    fn the_sample_config_lists_every_key_at_its_default() {
        // Uncommenting every `# key = value` line of the shipped sample must
        // give exactly the built-in defaults.
        let sample = include_str!("../edgeim.toml");
        let uncommented: String = sample
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest) if rest.contains(" = ") && !rest.starts_with(' ') => rest,
                Some(rest) if rest.starts_with('[') => rest,
                _ => l,
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let parsed = Config::parse(&uncommented).unwrap();
        let mut expected = Config::default();
        expected.api.key = parsed.api.key.clone();
        expected.websocket.public_url = parsed.websocket.public_url.clone();
        expected.auth.http.login_url = parsed.auth.http.login_url.clone();
        expected.auth.http.token_url = parsed.auth.http.token_url.clone();
        assert_eq!(parsed, expected);
        let docs = include_str!("../docs/CONFIG.md");
        for key in [
            "data_dir",
            "log_level",
            "listen",
            "login_ttl_s",
            "workers",
            "trusted_proxies",
            "context",
            "ping_interval_s",
            "idle_timeout_s",
            "send_queue",
            "write_timeout_s",
            "public_url",
            "key",
            "session_ttl_s",
            "register_timeout_s",
            "max_message_bytes",
            "max_recipients",
            "max_clients_per_user",
            "rate_per_s",
            "rate_burst",
            "offline_per_user",
            "retention_days",
            "forget_client_days",
            "session_ids_per_s",
            "max_group_members",
            "max_groups_per_user",
            "commit_window_ms",
            "mode",
            "login_url",
            "token_url",
            "user_field",
            "timeout_s",
            "cache_s",
            "user",
        ] {
            assert!(
                docs.contains(&format!("`{key}`")),
                "docs/CONFIG.md does not document `{key}`"
            );
            assert!(
                uncommented.contains(&format!("{key} = ")),
                "edgeim.toml lacks {key}"
            );
        }
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_one_line_naming_them() {
        let e = Config::parse("[limits]\nmax_recipient = 5\n").unwrap_err();
        assert!(
            e.contains("max_recipient") && e.contains("line 2") && !e.contains('\n'),
            "{e}"
        );
        let e = Config::parse("[limits]\n\nmax_recipients = \"many\"\n").unwrap_err();
        assert!(e.contains("line 3") && !e.contains('\n'), "{e}");
        let e = Config::parse("[http]\nlisten = \"nowhere\"\n").unwrap_err();
        assert!(e.contains("line 2"), "{e}");
        let e = Config::parse("[limits]\nrate_burst = 0.5\n").unwrap_err();
        assert!(
            e.contains("limits.rate_burst must be a number at least 1"),
            "{e}"
        );
        let e = Config::parse("[limits]\nmax_recipients = 0\n").unwrap_err();
        assert!(e.contains("limits.max_recipients"), "{e}");
    }

    #[test]
    fn a_missing_file_names_the_path() {
        let e = Config::load(Path::new("/nonexistent/edgeim.toml")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/edgeim.toml"));
    }
}
