//! The server under test (an edgeim [`Target`], or an MQTT broker's
//! [`MqttTarget`]: [`Server`] is either), and edgeim's
//! one-login-per-user token cache.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use edgeim::client::{self, HttpServer, ws};

use crate::conn::step_failed;
use crate::lock;
use crate::procfs::{CpuSample, cpu_seconds, rss_kib};

/// The server under test, and the tokens of the users logged in so far
/// (logins are slow on purpose: argon2; a token serves every run).
pub(crate) struct Target {
    /// Where the HTTP API is.
    pub(crate) server: HttpServer,
    pub(crate) ws_url: String,
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
        let server = HttpServer::parse(server).map_err(|e| e.to_string())?;
        let ws_host = ws::ws_host(ws).map_err(|e| e.to_string())?;
        for host in [server.host.as_str(), ws_host.as_str()] {
            if !is_loopback(host) {
                return Err(format!(
                    "{host}: the load generator talks to loopback addresses only"
                ));
            }
        }
        Ok(Target {
            server,
            ws_url: ws.to_string(),
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

    /// An app token for `user`, logging in the first time.
    pub(crate) fn token(&self, user: &str) -> Result<String, String> {
        if let Some(t) = lock(&self.tokens).get(user) {
            return Ok(t.clone());
        }
        let token = client::app_login(&self.server, user, &self.password)
            .map_err(|e| step_failed(&format!("login as {user}"), e))?;
        lock(&self.tokens).insert(user.to_string(), token.clone());
        Ok(token)
    }
}

/// An MQTT broker under test (`--mqtt`, or a spawned mosquitto).
pub(crate) struct MqttTarget {
    /// host:port, loopback.
    pub(crate) addr: String,
    pub(crate) pid: Option<u32>,
    pub(crate) ticks: f64,
    /// What the reports call it: "mosquitto" when spawned, else "mqtt".
    pub(crate) name: &'static str,
}

impl MqttTarget {
    pub(crate) fn new(
        addr: &str,
        pid: Option<u32>,
        ticks: f64,
        name: &'static str,
    ) -> Result<MqttTarget, String> {
        if !is_loopback(addr) || addr.rsplit_once(':').is_none() {
            return Err(format!(
                "{addr}: give --mqtt as a loopback HOST:PORT (the load generator talks to loopback only)"
            ));
        }
        Ok(MqttTarget {
            addr: addr.to_string(),
            pid,
            ticks,
            name,
        })
    }
}

/// The server a flow runs against.
#[derive(Clone, Copy)]
pub(crate) enum Server<'a> {
    Edgeim(&'a Target),
    Mqtt(&'a MqttTarget),
}

impl Server<'_> {
    pub(crate) fn pid(&self) -> Option<u32> {
        match self {
            Server::Edgeim(t) => t.pid,
            Server::Mqtt(t) => t.pid,
        }
    }

    pub(crate) fn ticks(&self) -> f64 {
        match self {
            Server::Edgeim(t) => t.ticks,
            Server::Mqtt(t) => t.ticks,
        }
    }

    /// What the reports call it: "edgeim", "mosquitto" or "mqtt".
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Server::Edgeim(_) => "edgeim",
            Server::Mqtt(t) => t.name,
        }
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
        assert!(MqttTarget::new("127.0.0.1:1883", None, 100.0, "mqtt").is_ok());
        assert!(MqttTarget::new("10.0.0.1:1883", None, 100.0, "mqtt").is_err());
    }
}
