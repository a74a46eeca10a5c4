//! `GET /api/websocket/online` (who is online, with their clients) and
//! `GET /api/users` (everyone, with whether they are online).

use serde_json::{Value, json};

use super::request::HttpRequest;
use super::response::{Reply, busy};
use super::{HttpEnv, ask_router, login::caller};
use crate::events::{Event, OnlineList};
use crate::metrics::Scrape;
use crate::wire::ids::ClientName;

/// `GET /api/websocket/online`.
pub fn online(env: &HttpEnv, req: &HttpRequest, now: u64) -> Reply {
    if let Err(reply) = caller(env, req, now) {
        return reply;
    }
    let Some(online) = ask_online(env) else {
        return busy("server busy");
    };
    let users: Vec<Value> = online
        .iter()
        .map(|(u, cs)| json!({"userId": u.as_str(), "clients": cs.iter().map(ClientName::as_str).collect::<Vec<_>>()}))
        .collect();
    Reply::ok(json!({"users": users}))
}

/// `GET /api/users`.
pub fn users(env: &HttpEnv, req: &HttpRequest, now: u64) -> Reply {
    if let Err(reply) = caller(env, req, now) {
        return reply;
    }
    let Some(online) = ask_online(env) else {
        return busy("server busy");
    };
    env.users.refresh();
    let users: Vec<Value> = env
        .users
        .all()
        .iter()
        .map(|u| json!({"userId": u.as_str(), "online": online.iter().any(|(o, _)| o == u)}))
        .collect();
    Reply::ok(json!({"users": users}))
}

fn ask_online(env: &HttpEnv) -> Option<OnlineList> {
    ask_router(env, |reply| Event::Online { reply }).ok()
}

/// `GET /metrics`: no login (like `/healthz`; loopback by default). Who is
/// online comes from the router; the rest from the counters.
pub fn metrics(env: &HttpEnv) -> Reply {
    // The queues first, before this scrape puts its own event on the
    // router's. A channel's length is two loads, no lock.
    let router_queue = env.router.len();
    let store_queue = env.store.len();
    let online = ask_online(env).map(|list| {
        let clients = list.iter().map(|(_, cs)| cs.len()).sum();
        (clients, list.len())
    });
    let scrape = Scrape {
        online,
        router_queue,
        store_queue,
    };
    Reply {
        status: 200,
        body: super::response::ReplyBody::Metrics(crate::metrics::metrics().render(&scrape)),
        headers: Vec::new(),
    }
}
