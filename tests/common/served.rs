//! The real binary serving: `edgeim --config FILE` as a child process, its
//! stderr collected line by line, its ports read from the log. Killed when
//! dropped, so a failing test never leaves a server running.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use super::WAIT;

pub const BIN: &str = env!("CARGO_BIN_EXE_edgeim");

pub struct Served {
    child: Child,
    lines: Receiver<String>,
    pub log: Vec<String>,
    pub http: String,
    pub ws: String,
}

impl Served {
    /// Starts the binary and waits until both listeners are up; the config
    /// must listen on 127.0.0.1 (port 0 is fine: the real ports are read
    /// from the log).
    pub fn start(config: &Path, log_level: Option<&str>) -> Served {
        Served::start_env(config, log_level, &[])
    }

    /// [`Served::start`] with these environment variables set.
    pub fn start_env(config: &Path, log_level: Option<&str>, env: &[(&str, &str)]) -> Served {
        let mut cmd = Command::new(BIN);
        cmd.envs(env.iter().copied());
        cmd.arg("--config")
            .arg(config)
            .env_remove("EDGEIM_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(level) = log_level {
            cmd.env("EDGEIM_LOG", level);
        }
        let mut child = cmd.spawn().expect("spawn edgeim");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut s = Served {
            child,
            lines,
            log: Vec::new(),
            http: String::new(),
            ws: String::new(),
        };
        s.http = format!("http://{}", s.wait_for("http listening on "));
        s.ws = s.wait_for("websocket listening on ");
        assert!(
            s.ws.starts_with("ws://127.0.0.1:") && s.ws.ends_with("/websocket"),
            "{}",
            s.ws
        );
        assert!(!s.ws.ends_with(":0/websocket"), "the real port: {}", s.ws);
        assert!(
            s.http.starts_with("http://127.0.0.1:") && !s.http.ends_with(":0"),
            "the real port: {}",
            s.http
        );
        s
    }

    /// Waits for a log line containing `needle`; returns what follows it.
    pub fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line
                        .find(needle)
                        .map(|i| line[i + needle.len()..].trim().to_string());
                    self.log.push(line);
                    if let Some(rest) = found {
                        return rest;
                    }
                }
                Err(e) => panic!("no {needle:?} in the log ({e:?}): {:#?}", self.log),
            }
        }
    }

    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(st.success(), "kill -{sig}");
    }

    /// Waits until the process exits, at the latest at `deadline`.
    pub fn exit_by(&mut self, deadline: Instant) -> ExitStatus {
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return st;
            }
            let now = Instant::now();
            assert!(
                now < deadline,
                "edgeim did not exit in time; log: {:#?}",
                self.log
            );
            let slice = (deadline - now).min(Duration::from_millis(20));
            match self.lines.recv_timeout(slice) {
                Ok(line) => self.log.push(line),
                Err(RecvTimeoutError::Timeout) => {}
                // stderr is closed: the exit is a moment away.
                Err(RecvTimeoutError::Disconnected) => std::thread::sleep(slice),
            }
        }
    }

    /// SIGKILL, as a power cut would; waits for the process to be gone.
    pub fn kill_hard(&mut self) -> ExitStatus {
        self.signal("KILL");
        self.exit_by(Instant::now() + WAIT)
    }

    /// Every stderr line, once the process has exited.
    pub fn whole_log(&mut self) -> String {
        loop {
            match self.lines.recv_timeout(WAIT) {
                Ok(line) => self.log.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => panic!("stderr still open after exit"),
            }
        }
        self.log.join("\n")
    }

    /// The last lines of the log so far, for failure messages.
    pub fn tail(&mut self) -> String {
        while let Ok(line) = self.lines.try_recv() {
            self.log.push(line);
        }
        let from = self.log.len().saturating_sub(60);
        self.log[from..].join("\n")
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("the server's log ends with:\n{}", self.tail());
        }
    }
}

/// Runs the binary to completion in `cwd`, `stdin` piped in; bounded by WAIT.
pub fn run_to_end(cwd: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .env_remove("EDGEIM_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn edgeim");
    if let Some(mut input) = child.stdin.take() {
        // The process may exit without reading (a config error): a broken
        // pipe is fine.
        let _ = input.write_all(stdin.as_bytes());
    }
    let pid = child.id();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(WAIT) {
        Ok(out) => out.expect("wait for edgeim"),
        Err(_) => {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
            panic!("edgeim {args:?} did not finish within {WAIT:?}");
        }
    }
}

/// Writes a config file for the binary beside `config.data_dir` (listening
/// on loopback port 0, the rate limits of `config`); returns its path.
pub fn write_config(config: &edgeim::config::Config) -> std::path::PathBuf {
    let data = config.data_dir.to_str().expect("utf-8 temp path");
    let file = config.data_dir.with_extension("toml");
    let l = &config.limits;
    let text = format!(
        "data_dir = {data:?}\n\n[http]\nlisten = \"127.0.0.1:0\"\n\n\
         [websocket]\nlisten = \"127.0.0.1:0\"\n\n\
         [limits]\nrate_per_s = {:?}\nrate_burst = {:?}\nsession_ids_per_s = {:?}\n",
        l.rate_per_s, l.rate_burst, l.session_ids_per_s
    );
    std::fs::write(&file, text).expect("write config");
    file
}
