//! Telling the service manager how the server is doing (systemd's
//! `sd_notify`): READY once both listeners are bound and the store is open,
//! RELOADING and READY again around a reload (SIGHUP), STOPPING at shutdown, a STATUS line, and watchdog pings. Without
//! `NOTIFY_SOCKET` (not under systemd, or `Type=simple`) each call does
//! nothing.
//!
//! The watchdog pings come from the router, and only once the store has
//! answered a ping op ([`crate::events::StoreOp::Ping`]): a router or a
//! store that is stuck stops them, and systemd restarts the service. A
//! timer thread that pings whatever happens would prove nothing.

use std::time::Duration;

use sd_notify::NotifyState;

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        log::debug!("cannot notify the service manager: {e}");
    }
}

/// Both listeners are bound and the store is open.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A reload (SIGHUP) has begun; [`ready`] says when it is over. The unit
/// is `Type=notify` with `ExecReload=`, so systemd wants no
/// `MONOTONIC_USEC` (only `Type=notify-reload` does).
pub fn reloading() {
    send(&[NotifyState::Reloading, NotifyState::Status("reloading")]);
}

/// The shutdown has begun.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// The router and the store are both alive.
pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

/// How often the service manager wants a watchdog ping (`WatchdogSec=`),
/// if it does.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().filter(|d| !d.is_zero())
}
