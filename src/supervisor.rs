//! The server's health. The core threads (router, store, WebSocket accept,
//! signals, and HTTP, whose workers see tiny_http's accept thread end) must
//! run for as long as the server does. One that ends, by returning or by a
//! panic, makes `/healthz` fail and tells `main` why, which logs it and
//! exits with status 1, so that the service manager restarts edgeim: a
//! server without its router or store would otherwise live on, accepting
//! connections and answering nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, bounded};

/// Whether every core thread still runs, and the channel `main` waits on.
pub struct Health {
    /// Read by `/healthz`; false once a core thread has ended.
    pub healthy: Arc<AtomicBool>,
    died: Sender<String>,
    stopping: AtomicBool,
}

impl Health {
    /// A healthy server, and the receiver of why it stopped being one.
    pub fn new() -> (Arc<Health>, Receiver<String>) {
        let (died, rx) = bounded(1);
        let health = Health {
            healthy: Arc::new(AtomicBool::new(true)),
            died,
            stopping: AtomicBool::new(false),
        };
        (Arc::new(health), rx)
    }

    /// The channel on which a part of the server reports that it can no
    /// longer serve (the HTTP workers use it when tiny_http's accept ends).
    pub fn reporter(&self) -> Sender<String> {
        self.died.clone()
    }

    /// A core thread ended: unhealthy, and `main` learns why (the first
    /// report wins). Nothing is reported once the server is stopping.
    pub fn died(&self, why: String) {
        if self.stopping.load(Ordering::Acquire) {
            return;
        }
        self.healthy.store(false, Ordering::Release);
        let _ = self.died.try_send(why);
    }

    /// The server is shutting down: core threads end on purpose now.
    pub fn stopping(&self) {
        self.stopping.store(true, Ordering::Release);
    }
}

/// Held by a core thread for its whole life: dropped when the thread
/// returns or unwinds, it reports the thread's end.
pub struct Watch {
    name: &'static str,
    health: Arc<Health>,
}

impl Watch {
    /// A watch for the core thread called `name`.
    pub fn new(name: &'static str, health: &Arc<Health>) -> Watch {
        Watch {
            name,
            health: health.clone(),
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let how = if std::thread::panicking() {
            "panicked"
        } else {
            "stopped"
        };
        self.health.died(format!("the {} thread {how}", self.name));
    }
}

/// Starts a core thread called `name` under a [`Watch`].
pub fn spawn_core(
    name: &'static str,
    health: &Arc<Health>,
    f: impl FnOnce() + Send + 'static,
) -> std::io::Result<JoinHandle<()>> {
    let watch = Watch::new(name, health);
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let _watch = watch;
            f();
        })
}

/// Debug builds only: whether `EDGEIM_FAULT` names this core thread, which
/// then fails on purpose at a known point, so that tests can see the
/// server notice. Release builds have no such hook.
#[cfg(debug_assertions)]
pub fn fault(name: &str) -> bool {
    // Read once: it is asked on every store batch and HTTP request.
    static FAULT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    FAULT
        .get_or_init(|| std::env::var("EDGEIM_FAULT").ok())
        .as_deref()
        == Some(name)
}

/// Release builds: never.
#[cfg(not(debug_assertions))]
pub fn fault(_name: &str) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_core_thread_that_ends_makes_the_server_unhealthy_and_says_which() {
        let (health, died) = Health::new();
        let h = spawn_core("worker-x", &health, || {}).unwrap();
        h.join().unwrap();
        assert_eq!(
            died.try_recv().as_deref(),
            Ok("the worker-x thread stopped")
        );
        assert!(!health.healthy.load(Ordering::Acquire));
    }

    #[test]
    fn a_panic_is_reported_as_one() {
        let (health, died) = Health::new();
        let h = spawn_core("worker-y", &health, || panic!("on purpose")).unwrap();
        assert!(h.join().is_err());
        assert_eq!(
            died.try_recv().as_deref(),
            Ok("the worker-y thread panicked")
        );
    }

    #[test]
    fn threads_that_end_at_shutdown_are_not_reported() {
        let (health, died) = Health::new();
        health.stopping();
        spawn_core("worker-z", &health, || {})
            .unwrap()
            .join()
            .unwrap();
        assert!(died.try_recv().is_err());
        assert!(health.healthy.load(Ordering::Acquire));
    }
}
