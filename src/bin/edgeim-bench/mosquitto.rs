//! `--spawn /usr/sbin/mosquitto`: a broker of our own, on loopback, with
//! its own config in a temp dir, stopped with SIGTERM at the end. It never
//! touches a system broker or its config.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::lock;
use crate::spawn::{ServerLog, write_private};

/// How long the broker may take to accept connections.
const WAIT: Duration = Duration::from_secs(10);

pub(crate) struct Broker {
    pub(crate) child: Child,
    pub(crate) dir: PathBuf,
    pub(crate) addr: String,
    pub(crate) ready_ms: f64,
    pub(crate) log: Arc<Mutex<ServerLog>>,
}

/// The broker's config. Mosquitto takes no port 0, so the caller picks a
/// free one. Persistence off: edgeim stores every text, mosquitto with
/// QoS 1 and clean sessions keeps them in memory only (the figures say
/// so). The queue per client is raised from 1,000 so that a subscriber
/// that falls behind in a flood is queued for rather than dropped (the
/// generator counts every text; the run stays bounded by its window).
/// `set_tcp_nodelay`: edgeim and the generator turn Nagle off on their
/// sockets, mosquitto does not by default, and then a PUBACK waits for the
/// ACK of the one before (at 5,000 texts/s from 20 senders the PUBACK's
/// median was 4.1 ms, a sender's period, against 0.2 ms for the delivery).
/// Only errors and warnings are logged, and each counts as a warning.
pub(crate) fn config(port: u16) -> String {
    format!(
        "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
         set_tcp_nodelay true\nmax_queued_messages 100000\n\
         log_dest stderr\nlog_type error\nlog_type warning\n"
    )
}

/// A port nobody listens on now (bound, then let go: mosquitto needs a
/// number in its config).
fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

impl Broker {
    pub(crate) fn start(binary: &Path) -> Result<Broker, String> {
        let dir = std::env::temp_dir().join(format!("edgeim-bench-mqtt-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let started = Self::start_in(binary, &dir);
        if started.is_err() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        started
    }

    fn start_in(binary: &Path, dir: &Path) -> Result<Broker, String> {
        let port = free_port()?;
        let config_path = dir.join("mosquitto.conf");
        write_private(&config_path, &config(port))?;
        // Mosquitto started as root drops to the user "mosquitto", which
        // must still read its config.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for (p, mode) in [(dir, 0o755), (config_path.as_path(), 0o644)] {
                let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode));
            }
        }
        let t0 = Instant::now();
        let mut child = Command::new(binary)
            .arg("-c")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let log = Arc::new(Mutex::new(ServerLog::default()));
        if let Some(stderr) = child.stderr.take() {
            let log = Arc::clone(&log);
            let drained = thread::Builder::new()
                .name("broker-log".into())
                .spawn(move || {
                    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                        let mut l = lock(&log);
                        l.warnings += 1;
                        if l.tail.len() >= 20 {
                            l.tail.pop_front();
                        }
                        l.tail.push_back(line);
                    }
                });
            if let Err(e) = drained {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("cannot start a thread: {e}"));
            }
        }
        let addr = format!("127.0.0.1:{port}");
        // Ready once it accepts a connection (closed at once, before any
        // CONNECT: mosquitto logs that only at notice level, which is off).
        loop {
            if TcpStream::connect(&addr).is_ok() {
                break;
            }
            let exited = matches!(child.try_wait(), Ok(Some(_)));
            if exited || t0.elapsed() > WAIT {
                let _ = child.kill();
                let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
                let tail: Vec<String> = lock(&log).tail.iter().cloned().collect();
                return Err(format!(
                    "{} did not listen on {addr} within {WAIT:?} ({status}); its last lines:\n{}",
                    binary.display(),
                    tail.join("\n")
                ));
            }
            thread::sleep(Duration::from_millis(5));
        }
        Ok(Broker {
            ready_ms: t0.elapsed().as_secs_f64() * 1e3,
            child,
            dir: dir.to_path_buf(),
            addr,
            log,
        })
    }

    /// (lines logged: each an error or a warning, the last of them).
    pub(crate) fn log_summary(&self) -> (u64, Vec<String>) {
        let l = lock(&self.log);
        (l.warnings, l.tail.iter().cloned().collect())
    }

    /// SIGTERM, then a bounded wait; Err if it did not exit 0 in time.
    pub(crate) fn stop(mut self) -> Result<(), String> {
        self.terminate()
    }

    fn terminate(&mut self) -> Result<(), String> {
        crate::spawn::terminate_child(&mut self.child, "mosquitto")
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.terminate();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_listens_on_loopback_only_without_persistence() {
        let c = config(18830);
        assert!(c.contains("listener 18830 127.0.0.1\n"));
        assert!(c.contains("persistence false\n"));
        assert!(c.contains("allow_anonymous true\n"));
        assert!(c.contains("set_tcp_nodelay true\n"));
    }
}
