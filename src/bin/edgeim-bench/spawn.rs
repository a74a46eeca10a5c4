//! `--spawn`: a server of our own on a fresh temp data dir, its stderr
//! drained and its warnings counted, stopped with SIGTERM.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, unbounded};

use crate::args::{CLIENTS_PER_USER, MAX_RECIPIENTS};
use crate::lock;

/// How long a spawned server may take to report its addresses.
const WAIT: Duration = Duration::from_secs(10);

/// A server started by `--spawn`, on its own temp data dir.
pub(crate) struct Spawned {
    pub(crate) child: Child,
    pub(crate) dir: PathBuf,
    pub(crate) http: String,
    pub(crate) ws: String,
    pub(crate) ready_ms: f64,
    pub(crate) log: Arc<Mutex<ServerLog>>,
}

/// Warnings and errors the server logged (its stderr is drained by a thread).
#[derive(Default)]
pub(crate) struct ServerLog {
    pub(crate) warnings: u64,
    pub(crate) tail: VecDeque<String>,
}

pub(crate) enum Listening {
    Http(String),
    Ws(String),
}

impl Spawned {
    /// `raised`: the limits raised above any load (else the defaults).
    pub(crate) fn start(
        binary: &Path,
        users: usize,
        password: &str,
        raised: bool,
    ) -> Result<Spawned, String> {
        let dir = std::env::temp_dir().join(format!("edgeim-bench-{}", uuid::Uuid::new_v4()));
        // Private, as the server wants its data_dir (else it warns).
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(&dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        let started = Self::start_in(binary, users, password, &dir, raised);
        if started.is_err() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        started
    }

    pub(crate) fn start_in(
        binary: &Path,
        users: usize,
        password: &str,
        dir: &Path,
        raised: bool,
    ) -> Result<Spawned, String> {
        // One hash for all: the same password with the same salt verifies
        // the same way, and argon2 is slow on purpose.
        let hash = edgeim::users::hash_password(password);
        let users_text: String = (0..users).map(|i| format!("u{i}:{hash}\n")).collect();
        write_private(&edgeim::users::path_in(dir), &users_text)?;
        let dir_toml = serde_json::to_string(&dir.to_string_lossy()).unwrap_or_default();
        let mut config = format!(
            "data_dir = {dir_toml}\nlog_level = \"info\"\n\
             [http]\nlisten = \"127.0.0.1:0\"\n\
             [websocket]\nlisten = \"127.0.0.1:0\"\n"
        );
        if raised {
            config.push_str(&format!(
                "[limits]\nmax_clients_per_user = {CLIENTS_PER_USER}\n\
             max_recipients = {MAX_RECIPIENTS}\nrate_per_s = 1000000.0\n\
             rate_burst = 1000000.0\nsession_ids_per_s = 1000000.0\n\
             offline_per_user = 1000000\n"
            ));
        }
        let config_path = dir.join("bench.toml");
        write_private(&config_path, &config)?;
        let t0 = Instant::now();
        let mut child = Command::new(binary)
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .env("EDGEIM_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let log = Arc::new(Mutex::new(ServerLog::default()));
        let (tx, rx) = unbounded();
        if let Some(stderr) = child.stderr.take() {
            let log = Arc::clone(&log);
            let drained = thread::Builder::new()
                .name("server-log".into())
                .spawn(move || drain_log(stderr, &tx, &log));
            if let Err(e) = drained {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("cannot start a thread: {e}"));
            }
        }
        let (mut http, mut ws) = (None, None);
        while http.is_none() || ws.is_none() {
            match rx.recv_timeout(WAIT.saturating_sub(t0.elapsed())) {
                Ok(Listening::Http(a)) => http = Some(format!("http://{a}")),
                Ok(Listening::Ws(u)) => ws = Some(u),
                Err(_) => {
                    let _ = child.kill();
                    let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
                    let tail: Vec<String> = lock(&log).tail.iter().cloned().collect();
                    return Err(format!(
                        "{} did not report its addresses within {WAIT:?} ({status}); its last lines:\n{}",
                        binary.display(),
                        tail.join("\n")
                    ));
                }
            }
        }
        Ok(Spawned {
            ready_ms: t0.elapsed().as_secs_f64() * 1e3,
            child,
            dir: dir.to_path_buf(),
            http: http.unwrap_or_default(),
            ws: ws.unwrap_or_default(),
            log,
        })
    }

    /// (warnings and errors logged, the last of them).
    pub(crate) fn log_summary(&self) -> (u64, Vec<String>) {
        let l = lock(&self.log);
        let tail = l.tail.iter().filter(|s| is_warning(s)).cloned().collect();
        (l.warnings, tail)
    }

    /// SIGTERM, then a bounded wait; Err if it did not exit 0 in time.
    pub(crate) fn stop(mut self) -> Result<(), String> {
        self.terminate()
    }

    pub(crate) fn terminate(&mut self) -> Result<(), String> {
        terminate_child(&mut self.child, "the server")
    }
}

/// SIGTERM, then up to 5 s for `child` to exit with status 0; killed if it
/// does not. `what` names it in the error.
pub(crate) fn terminate_child(child: &mut Child, what: &str) -> Result<(), String> {
    let pid = child.id().to_string();
    let _ = Command::new("kill")
        .args(["-TERM", &pid])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let deadline = Instant::now() + Duration::from_secs(5);
    for _ in 0..1000 {
        match child.try_wait() {
            Ok(Some(s)) if s.success() => return Ok(()),
            Ok(Some(s)) => return Err(format!("{what} exited with {s} on SIGTERM")),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
            _ => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    Err(format!("{what} did not exit within 5 s of SIGTERM: killed"))
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.terminate();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub(crate) fn write_private(path: &Path, text: &str) -> Result<(), String> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    opts.open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| format!("{}: {e}", path.display()))
}

pub(crate) fn is_warning(line: &str) -> bool {
    line.split_whitespace()
        .take(3)
        .any(|w| w == "WARN" || w == "ERROR")
}

/// Reads the server's stderr to its end: reports the two listening lines,
/// counts warnings and errors, keeps the last lines for error reports.
pub(crate) fn drain_log(stderr: impl Read, tx: &Sender<Listening>, log: &Mutex<ServerLog>) {
    let reader = BufReader::new(stderr);
    for line in reader.lines().map_while(Result::ok) {
        if let Some((_, a)) = line.split_once("http listening on ") {
            let _ = tx.send(Listening::Http(a.trim().to_string()));
        } else if let Some((_, u)) = line.split_once("websocket listening on ") {
            let _ = tx.send(Listening::Ws(u.trim().to_string()));
        }
        let mut l = lock(log);
        if is_warning(&line) {
            l.warnings += 1;
        }
        if l.tail.len() >= 20 {
            l.tail.pop_front();
        }
        l.tail.push_back(line);
    }
}
