//! The server under test, and the one-login-per-user token cache.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use serde_json::{Value, json};

use crate::procfs::{CpuSample, cpu_seconds, rss_kib};
use crate::{WAIT, lock};

/// The server under test, and the tokens of the users logged in so far
/// (logins are slow on purpose: argon2; a token serves every run).
pub(crate) struct Target {
    pub(crate) http_host: String,
    pub(crate) http_prefix: String,
    pub(crate) ws_url: String,
    /// host:port of `ws_url`.
    pub(crate) ws_host: String,
    pub(crate) pid: Option<u32>,
    pub(crate) password: String,
    pub(crate) ticks: f64,
    pub(crate) tokens: Mutex<HashMap<String, String>>,
}

impl Target {
    pub(crate) fn new(
        server: &str,
        ws: &str,
        pid: Option<u32>,
        password: &str,
        ticks: f64,
    ) -> Result<Target, String> {
        let parsed = edgeim::client::HttpServer::parse(server).map_err(|e| e.to_string())?;
        let (http_host, http_prefix) = (parsed.host, parsed.prefix);
        let ws_host = ws
            .strip_prefix("ws://")
            .ok_or_else(|| format!("bad --ws URL {ws:?}: it must start with ws://"))?;
        let ws_host = ws_host.split('/').next().unwrap_or_default();
        let ws_host = if ws_host.ends_with(']') || !ws_host.contains(':') {
            format!("{ws_host}:80")
        } else {
            ws_host.to_string()
        };
        for host in [http_host.as_str(), ws_host.as_str()] {
            if !is_loopback(host) {
                return Err(format!(
                    "{host}: the load generator talks to loopback addresses only"
                ));
            }
        }
        Ok(Target {
            http_host,
            http_prefix,
            ws_url: ws.to_string(),
            ws_host,
            pid,
            password: password.to_string(),
            ticks,
            tokens: Mutex::new(HashMap::new()),
        })
    }

    pub(crate) fn cpu(&self) -> CpuSample {
        CpuSample {
            server: self
                .pid
                .and_then(|p| cpu_seconds(&p.to_string(), self.ticks)),
            client: cpu_seconds("self", self.ticks),
        }
    }

    pub(crate) fn server_rss_kib(&self) -> Option<f64> {
        self.pid.and_then(|p| rss_kib(&p.to_string()))
    }

    pub(crate) fn http(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> Result<(u16, Value), String> {
        http(
            &self.http_host,
            &format!("{}{path}", self.http_prefix),
            method,
            token,
            body,
        )
    }

    /// An app token for `user`, logging in the first time.
    pub(crate) fn token(&self, user: &str) -> Result<String, String> {
        if let Some(t) = lock(&self.tokens).get(user) {
            return Ok(t.clone());
        }
        let body = json!({"username": user, "password": self.password}).to_string();
        let (status, answer) = self.http("POST", "/app/login", None, Some(&body))?;
        let token = match answer["token"].as_str() {
            Some(t) if status == 200 => t.to_string(),
            _ => return Err(format!("login as {user}: HTTP {status} {answer}")),
        };
        lock(&self.tokens).insert(user.to_string(), token.clone());
        Ok(token)
    }
}

pub(crate) fn is_loopback(host_port: &str) -> bool {
    let host = match host_port.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => h,
        _ => host_port,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// One HTTP/1.1 request over a fresh connection: (status, JSON body or Null).
pub(crate) fn http(
    host: &str,
    path: &str,
    method: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Result<(u16, Value), String> {
    let server = edgeim::client::HttpServer {
        host: host.to_string(),
        prefix: String::new(),
    };
    let mut rq = server.request(method, path).token(token).timeout(WAIT);
    if let Some(b) = body {
        rq = rq.header("Content-Type", "application/json").body(b);
    }
    let answer = rq.send().map_err(|e| e.to_string())?;
    Ok((answer.status, answer.json()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_hosts_are_accepted() {
        assert!(is_loopback("127.0.0.1:8080"));
        assert!(is_loopback("[::1]:80"));
        assert!(is_loopback("localhost:1"));
        assert!(!is_loopback("192.168.1.2:8080"));
        assert!(!is_loopback("example.org:80"));
    }
}
