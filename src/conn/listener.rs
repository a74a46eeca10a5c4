//! The WebSocket listener: accepts TCP connections and gives each its own
//! reader thread (which starts its writer).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use crossbeam_channel::Sender;

use super::ConnEnv;
use crate::supervisor::{Watch, fault};

/// Readers parse JSON, which needs stack for nested input; a stack
/// overflow would abort the whole process.
pub(crate) const READER_STACK: usize = 256 * 1024;
/// Pause after a failed accept (EMFILE): long enough not to spin, short
/// enough to recover quickly when descriptors free up.
pub(crate) const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);

pub struct Listener {
    addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Listener {
    /// Binds and starts accepting. `alive` is cloned into every connection
    /// thread, so its receiver learns when the last one has ended.
    pub fn start(
        listener: TcpListener,
        env: Arc<ConnEnv>,
        alive: Sender<()>,
        watch: Watch,
    ) -> std::io::Result<Listener> {
        let addr = listener.local_addr()?;
        let stopping = Arc::new(AtomicBool::new(false));
        let stop = stopping.clone();
        let thread = std::thread::Builder::new()
            .name("ws-accept".into())
            .spawn(move || {
                // Reports this thread's end, unless the server is stopping.
                let _watch = watch;
                let mut next_id = 1u64;
                for stream in listener.incoming() {
                    if stop.load(Ordering::Acquire) {
                        break;
                    }
                    if fault("ws-accept") {
                        panic!("EDGEIM_FAULT=ws-accept");
                    }
                    let tcp = match stream {
                        Ok(s) => s,
                        Err(e) => {
                            // Out of file descriptors (or similar): retrying
                            // at once would spin, so pause before the next accept.
                            log::warn!("websocket accept failed: {e}");
                            std::thread::sleep(ACCEPT_BACKOFF);
                            continue;
                        }
                    };
                    let id = next_id;
                    next_id += 1;
                    let env = env.clone();
                    let alive = alive.clone();
                    let spawned = std::thread::Builder::new()
                        .name(format!("ws-r{id}"))
                        .stack_size(READER_STACK)
                        .spawn(move || {
                            super::serve(tcp, id, &env);
                            drop(alive);
                        });
                    if let Err(e) = spawned {
                        log::warn!("cannot start a thread for a connection: {e}");
                    }
                }
            })?;
        Ok(Listener {
            addr,
            stopping,
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting: `accept` has no timeout, so connect to wake it.
    pub fn stop(&mut self) {
        self.stopping.store(true, Ordering::Release);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
