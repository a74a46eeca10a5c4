//! `edgeim`: parse arguments → load config → start the server → wait for
//! SIGTERM/SIGINT (reloading on each SIGHUP) → close every connection with
//! 1001 → exit 0.

use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use edgeim::cli::{self, Command, UserAction};
use edgeim::config::Config;
use edgeim::{backup, chat, logger, modes, notify, server, supervisor, users};

/// Exit code for a wrong command line or config.
const EXIT_USAGE: u8 = 2;
/// Exit code for a failure while running.
const EXIT_FAILURE: u8 = 1;
/// Exit code for data a restart cannot fix (not a database, a newer
/// schema, not writable); the unit's `RestartPreventExitStatus=` names it.
const EXIT_DATA: u8 = 3;
/// How long the last log lines may take to be written at exit.
const LOG_FLUSH: Duration = Duration::from_secs(1);

fn main() -> ExitCode {
    // Before anything is created: the data, backups and demo accounts are
    // for the server's user only.
    modes::private_by_default();
    let cmd = match cli::parse(std::env::args_os().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("edgeim: {e}\n\n{}", cli::USAGE);
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match cmd {
        Command::Help => {
            print!("{}", cli::USAGE);
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("edgeim {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Serve { config } => match load(config.as_deref()) {
            Ok(c) => serve(&c, config, None),
            Err(code) => code,
        },
        Command::Demo(opts) => demo(opts),
        Command::Backup { to, config } => match load(config.as_deref()) {
            Ok(c) => match backup::backup(&backup::path_in(&c.data_dir), &to) {
                Ok(()) => {
                    eprintln!("backed up to {}", to.display());
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e.to_string()),
            },
            Err(code) => code,
        },
        Command::User { action, config } => match load(config.as_deref()) {
            Ok(c) => user(action, &c),
            Err(code) => code,
        },
        Command::Group { action, config } => match load(config.as_deref()) {
            Ok(c) => match edgeim::control::client::run(&action, &c) {
                Ok(out) => {
                    print!("{out}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            },
            Err(code) => code,
        },
        Command::Chat(opts) => chat(&opts),
    }
}

fn load(path: Option<&Path>) -> Result<Config, ExitCode> {
    let Some(path) = path else {
        return Ok(Config::default());
    };
    Config::load(path).map_err(|e| {
        eprintln!("edgeim: {e}");
        ExitCode::from(EXIT_USAGE)
    })
}

fn init_logging(config: &Config) {
    let level = logger::effective_level(config.log_level.to_filter());
    // tungstenite traces every frame, session ids and texts included: its
    // log stops at debug whatever the level.
    if let Err(e) = logger::init(level, &["tungstenite"], log::LevelFilter::Debug) {
        eprintln!("edgeim: cannot start the log thread: {e}");
    }
}

/// glibc keeps freed large blocks in per-thread arenas once its adaptive
/// mmap threshold has grown: every argon2 verify (19 MiB) would then stay
/// resident, 600 MB after a hundred logins. A fixed threshold makes such
/// blocks mmap'd and returned on free; fewer arenas keep thousands of
/// connection threads from each holding heap of their own.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn return_large_blocks_to_the_os() {
    // SAFETY: mallopt only changes an allocator parameter; it is called
    // before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        // glibc gives busy threads arenas of their own (up to 8 per core),
        // each a large mapping kept for good: with two threads per
        // connection that is memory and map count the server does not need.
        libc::mallopt(libc::M_ARENA_MAX, 4);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn return_large_blocks_to_the_os() {}

/// `path` is the config file, reread on SIGHUP (none: only the users file
/// is).
fn serve(config: &Config, path: Option<PathBuf>, banner: Option<&str>) -> ExitCode {
    serve_or_not(config, path, banner).unwrap_or_else(|code| code)
}

/// `Err` when the server did not start (then nothing needs to be kept).
fn serve_or_not(
    config: &Config,
    path: Option<PathBuf>,
    banner: Option<&str>,
) -> Result<ExitCode, ExitCode> {
    return_large_blocks_to_the_os();
    init_logging(config);
    let code = run_server(config, path, banner);
    // The log thread writes behind: let it finish before the exit.
    logger::flush(LOG_FLUSH);
    code
}

fn run_server(
    config: &Config,
    path: Option<PathBuf>,
    banner: Option<&str>,
) -> Result<ExitCode, ExitCode> {
    // Block the signals before any thread starts, so none of them gets
    // SIGTERM's default action (nor SIGHUP's, which is to end the process).
    let mut signals = match signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("edgeim: cannot install signal handlers: {e}");
            return Err(ExitCode::from(EXIT_FAILURE));
        }
    };
    let running = match server::start(config) {
        Ok(r) => r,
        Err(e) => {
            logger::flush(LOG_FLUSH);
            eprintln!("edgeim: {e}");
            if banner.is_some() && matches!(e, server::StartError::Listen(..)) {
                eprintln!(
                    "edgeim: is another edgeim running? Try other ports: \
                     edgeim demo --http-port 9080 --ws-port 9081"
                );
            }
            let code = if e.is_permanent() {
                EXIT_DATA
            } else {
                EXIT_FAILURE
            };
            return Err(ExitCode::from(code));
        }
    };
    if let Some(b) = banner {
        println!(
            "{}",
            b.replace("{http}", &running.http_addr().to_string())
                .replace("{ws}", &running.ws_addr().to_string())
        );
    }
    let status = format!(
        "http on {}, websocket on {}",
        running.http_addr(),
        running.ws_addr()
    );
    // The signal iterator blocks; a thread turns it into a channel so the
    // main thread can also wait for a core thread that died. SIGHUP it
    // handles itself: a reload, then it waits for the next signal.
    let (sig_tx, sig_rx) = crossbeam_channel::bounded(1);
    let mut reloader = running.reloader(path);
    let ready = status.clone();
    let forwarded = supervisor::spawn_core("signals", running.health(), move || {
        if supervisor::fault("signals") {
            return;
        }
        for sig in signals.forever() {
            if sig == signal_hook::consts::SIGHUP {
                notify::reloading();
                reloader.reload();
                // Also after a refused reload: the server runs on as it was.
                notify::ready(&ready);
                continue;
            }
            let _ = sig_tx.send(sig);
            return;
        }
    });
    if let Err(e) = forwarded {
        logger::flush(LOG_FLUSH);
        eprintln!("edgeim: cannot start the signal thread: {e}");
        running.shutdown(server::SHUTDOWN_GRACE);
        return Ok(ExitCode::from(EXIT_FAILURE));
    }
    // Both listeners are bound and the store is open: systemd's
    // Type=notify may consider the service started.
    notify::ready(&status);
    let died = |why: &str| {
        log::error!("{why}; stopping so that the service manager restarts edgeim");
        ExitCode::from(EXIT_FAILURE)
    };
    let code = crossbeam_channel::select! {
        recv(sig_rx) -> sig => match sig {
            Ok(sig) => {
                log::info!("signal {sig}: shutting down");
                ExitCode::SUCCESS
            }
            Err(_) => died("the signals thread stopped"),
        },
        recv(running.died()) -> why => died(&why.unwrap_or_default()),
    };
    notify::stopping();
    running.shutdown(server::SHUTDOWN_GRACE);
    log::info!("stopped");
    Ok(code)
}

/// Demo mode: the only way edgeim creates accounts with known passwords.
fn demo(opts: cli::DemoOptions) -> ExitCode {
    let made_up = opts.dir.is_none();
    let dir = opts.dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("edgeim-demo-{}", std::process::id()))
    });
    let mut config = Config {
        data_dir: dir.clone(),
        ..Config::default()
    };
    let ip = opts
        .listen
        .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
    config.http.listen =
        std::net::SocketAddr::new(ip, opts.http_port.unwrap_or(config.http.listen.port()));
    config.websocket.listen =
        std::net::SocketAddr::new(ip, opts.ws_port.unwrap_or(config.websocket.listen.port()));
    let path = users::path_in(&dir);
    for (name, pass) in [("alice", "alice-demo"), ("bob", "bob-demo")] {
        match users::add(&path, name, pass) {
            Ok(()) | Err(users::UsersError::Exists(_)) => {}
            Err(e) => {
                eprintln!("edgeim: {e}");
                return ExitCode::from(EXIT_FAILURE);
            }
        }
    }
    let banner = format!(
        "edgeim demo is running (data in {}).\n\
         Chat page: http://{{http}}/   (WebSocket: ws://{{ws}}/websocket)\n\
         Demo accounts (demo mode only): alice / alice-demo, bob / bob-demo\n\
         Open the page in two browsers (or a normal and a private window),\n\
         log in as alice in one and bob in the other. Ctrl-C stops.",
        dir.display()
    );
    match serve_or_not(&config, None, Some(&banner)) {
        Ok(code) => code,
        Err(code) => {
            // A demo that did not start leaves nothing behind.
            if made_up {
                let _ = std::fs::remove_dir_all(&dir);
            }
            code
        }
    }
}

fn user(action: UserAction, config: &Config) -> ExitCode {
    let path = users::path_in(&config.data_dir);
    let result = match action {
        UserAction::List => users::list(&path).map(|names| {
            for n in names {
                println!("{n}");
            }
        }),
        UserAction::Add(name) => match read_password(&format!("password for {name}: "), true) {
            Ok(p) => users::add(&path, name.as_str(), &p).map(|()| eprintln!("added {name}")),
            Err(e) => return fail(&e),
        },
        UserAction::Passwd(name) => {
            match read_password(&format!("new password for {name}: "), true) {
                Ok(p) => users::set_password(&path, name.as_str(), &p)
                    .map(|()| eprintln!("changed the password of {name}")),
                Err(e) => return fail(&e),
            }
        }
        UserAction::Remove(name) => {
            users::remove(&path, name.as_str()).map(|()| eprintln!("removed {name}"))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e.to_string()),
    }
}

/// The terminal client; after a piped password, the rest of stdin is the chat.
fn chat(opts: &chat::Options) -> ExitCode {
    let password = match read_password(&format!("password for {}: ", opts.user), false) {
        Ok(p) => p,
        Err(e) => return fail(&format!("chat: {e}")),
    };
    match chat::run(opts, &password, std::io::BufReader::new(std::io::stdin())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&format!("chat: {e}")),
    }
}

fn fail(e: &str) -> ExitCode {
    eprintln!("edgeim: {e}");
    ExitCode::from(EXIT_FAILURE)
}

/// One line from stdin, or a no-echo prompt on a terminal (asked twice
/// when `confirm`, for a new password).
fn read_password(prompt: &str, confirm: bool) -> Result<String, String> {
    if std::io::stdin().is_terminal() {
        let a = rpassword::prompt_password(prompt).map_err(|e| e.to_string())?;
        if !confirm {
            return Ok(a);
        }
        let b = rpassword::prompt_password("again: ").map_err(|e| e.to_string())?;
        if a != b {
            return Err("the passwords differ".into());
        }
        return Ok(a);
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("reading the password: {e}"))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}
