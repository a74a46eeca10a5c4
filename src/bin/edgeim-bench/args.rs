//! The command line: [`Options`], the [`Scenario`] it names and that
//! scenario's parameters ([`Flow`], [`Hold`], [`Pacing`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

pub(crate) struct Options {
    /// `--spawn`: an edgeim binary to start, or a mosquitto one (its file
    /// name says so); both, one of each, to compare them run by run.
    pub(crate) spawn: Option<PathBuf>,
    pub(crate) spawn_mosquitto: Option<PathBuf>,
    /// `--mqtt HOST:PORT`: a running MQTT broker instead of edgeim.
    pub(crate) mqtt: Option<String>,
    pub(crate) server: String,
    pub(crate) ws: String,
    pub(crate) pid: Option<u32>,
    pub(crate) password: String,
    pub(crate) runs: usize,
    pub(crate) scenario: Scenario,
}

/// How a flow's senders pace themselves.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Pacing {
    /// Closed loop: at most this many texts waiting for their 9001.
    Window(usize),
    /// Open loop: this many texts per second in total, on a fixed schedule.
    Rate(f64),
}

/// N senders, each sending every text to its own `recipients` receivers.
#[derive(Clone, Debug)]
pub(crate) struct Flow {
    pub(crate) pairs: usize,
    /// Receivers per sender: 1 for pairs and rate, R for fanout.
    pub(crate) recipients: usize,
    pub(crate) seconds: f64,
    pub(crate) size: usize,
    pub(crate) pacing: Pacing,
    pub(crate) drain: f64,
    /// Write up to a window of texts and flush once (the generator's
    /// old pattern) instead of one frame per write call, as browsers,
    /// phones and the terminal client send.
    pub(crate) batched: bool,
}

/// Many registered connections, opened from a few threads (idle, ramp).
#[derive(Clone, Debug)]
pub(crate) struct Hold {
    pub(crate) clients: usize,
    pub(crate) threads: usize,
    /// How long idle holds them (ramp: 0).
    pub(crate) seconds: f64,
}

/// The hostile probe: each attack's length.
#[derive(Clone, Debug)]
pub(crate) struct Probe {
    pub(crate) seconds: f64,
}

pub(crate) enum Scenario {
    Pairs(Flow),
    Rate(Flow),
    Fanout(Flow),
    Idle(Hold),
    Ramp(Hold),
    Probe(Probe),
}

/// Clients per user in idle and ramp (each has its own clientName); the
/// spawned server's max_clients_per_user is raised to this.
pub(crate) const CLIENTS_PER_USER: usize = 250;

impl Scenario {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Scenario::Pairs(_) => "pairs",
            Scenario::Rate(_) => "rate",
            Scenario::Fanout(_) => "fanout",
            Scenario::Idle(_) => "idle",
            Scenario::Ramp(_) => "ramp",
            Scenario::Probe(_) => "probe",
        }
    }

    /// How many users (u0..uN) the scenario logs in as.
    pub(crate) fn users(&self) -> usize {
        match self {
            Scenario::Pairs(f) | Scenario::Rate(f) | Scenario::Fanout(f) => {
                f.pairs * (1 + f.recipients)
            }
            Scenario::Idle(h) | Scenario::Ramp(h) => h.clients.div_ceil(CLIENTS_PER_USER),
            Scenario::Probe(_) => crate::probe::PROBE_USERS,
        }
    }

    /// Whether a spawned server gets the raised limits (so that load is
    /// not refused); the probe tests the default ones.
    pub(crate) fn raised_limits(&self) -> bool {
        !matches!(self, Scenario::Probe(_))
    }

    /// The scenario's parameters, as they appear in the JSON line.
    pub(crate) fn params(&self) -> Vec<(&'static str, Value)> {
        match self {
            Scenario::Idle(h) => vec![
                ("connections", json!(h.clients)),
                ("seconds", json!(h.seconds)),
                ("threads", json!(h.threads)),
            ],
            Scenario::Ramp(h) => vec![("clients", json!(h.clients)), ("threads", json!(h.threads))],
            Scenario::Probe(p) => vec![("seconds", json!(p.seconds))],
            Scenario::Pairs(f) | Scenario::Rate(f) | Scenario::Fanout(f) => {
                let mut p = if f.recipients > 1 {
                    vec![("recipients", json!(f.recipients))]
                } else {
                    vec![("pairs", json!(f.pairs))]
                };
                p.extend([("seconds", json!(f.seconds)), ("size", json!(f.size))]);
                p.push((
                    "writes",
                    json!(if f.batched {
                        "batched"
                    } else {
                        "one_frame_each"
                    }),
                ));
                match f.pacing {
                    Pacing::Window(w) => p.push(("window", json!(w))),
                    Pacing::Rate(r) => p.push(("rate", json!(r))),
                }
                p
            }
        }
    }
}

/// The numeric options; which apply depends on the scenario.
pub(crate) const OPTION_KEYS: [&str; 10] = [
    "pairs",
    "seconds",
    "window",
    "size",
    "rate",
    "drain",
    "recipients",
    "connections",
    "clients",
    "threads",
];
/// The spawned server's limits.max_recipients, and fanout's ceiling.
pub(crate) const MAX_RECIPIENTS: usize = 1000;

pub(crate) fn parse_args() -> Result<Option<Options>, String> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_env();
    let mut spawns: Vec<PathBuf> = Vec::new();
    let mut mqtt = None;
    let mut batched = false;
    let mut server = None;
    let mut ws = None;
    let mut pid = None;
    let mut password = "bench-password".to_string();
    let mut runs = 1usize;
    let mut scenario: Option<String> = None;
    let mut flow_opts: HashMap<&'static str, f64> = HashMap::new();
    let err = |e: lexopt::Error| e.to_string();
    while let Some(arg) = p.next().map_err(err)? {
        match arg {
            Short('h') | Long("help") => return Ok(None),
            Long("spawn") => spawns.push(PathBuf::from(p.value().map_err(err)?)),
            Long("mqtt") => mqtt = Some(p.value().map_err(err)?.string().map_err(err)?),
            Long("batched") => batched = true,
            Long("server") => server = Some(p.value().map_err(err)?.string().map_err(err)?),
            Long("ws") => ws = Some(p.value().map_err(err)?.string().map_err(err)?),
            Long("pid") => pid = Some(p.value().map_err(err)?.parse().map_err(err)?),
            Long("password") => password = p.value().map_err(err)?.string().map_err(err)?,
            Long("runs") => runs = p.value().map_err(err)?.parse().map_err(err)?,
            Long(name) if OPTION_KEYS.contains(&name) => {
                let key = OPTION_KEYS
                    .iter()
                    .copied()
                    .find(|k| *k == name)
                    .unwrap_or_default();
                let v: f64 = p.value().map_err(err)?.parse().map_err(err)?;
                if !(v.is_finite() && v > 0.0) {
                    return Err(format!("--{key} must be a number greater than 0"));
                }
                flow_opts.insert(key, v);
            }
            Value(v) if scenario.is_none() => scenario = Some(v.string().map_err(err)?),
            _ => return Err(arg.unexpected().to_string()),
        }
    }
    let (spawn, spawn_mosquitto) = split_spawns(spawns)?;
    let spawning = spawn.is_some() || spawn_mosquitto.is_some();
    if spawning && (server.is_some() || ws.is_some() || pid.is_some() || mqtt.is_some()) {
        return Err(
            "--spawn starts its own server: leave out --server, --ws, --mqtt and --pid".into(),
        );
    }
    if mqtt.is_some() && (server.is_some() || ws.is_some()) {
        return Err("--mqtt is the server under test: leave out --server and --ws".into());
    }
    if !(1..=1000).contains(&runs) {
        return Err("--runs must be between 1 and 1000".into());
    }
    let get = |k: &str, default: f64| flow_opts.get(k).copied().unwrap_or(default);
    let whole = |k: &str, default: f64, max: f64| -> Result<usize, String> {
        let v = get(k, default);
        if v.fract() != 0.0 || v > max {
            return Err(format!("--{k} must be a whole number up to {max}"));
        }
        Ok(v as usize)
    };
    let name = scenario.ok_or("no scenario given")?;
    let allowed: &[&str] = match name.as_str() {
        "pairs" => &["pairs", "seconds", "window", "size", "drain"],
        "rate" => &["rate", "seconds", "pairs", "size", "drain"],
        "fanout" => &["recipients", "seconds", "window", "size", "drain"],
        "idle" => &["connections", "seconds", "threads"],
        "ramp" => &["clients", "threads"],
        "probe" => &["seconds"],
        other => return Err(format!("unknown scenario {other:?}")),
    };
    if let Some(k) = flow_opts.keys().find(|k| !allowed.contains(k)) {
        return Err(format!("--{k} does not apply to {name}"));
    }
    let is_flow = matches!(name.as_str(), "pairs" | "rate" | "fanout");
    if batched && !is_flow {
        return Err(format!("--batched does not apply to {name}"));
    }
    if (mqtt.is_some() || spawn_mosquitto.is_some()) && !is_flow {
        return Err(format!(
            "{name} runs against edgeim only (MQTT: pairs, rate, fanout)"
        ));
    }
    let flow = |pairs: usize, recipients: usize, seconds: f64, pacing: Pacing| {
        Ok::<Flow, String>(Flow {
            pairs,
            recipients,
            seconds: get("seconds", seconds).min(3600.0),
            size: whole("size", 120.0, 60_000.0)?,
            pacing,
            drain: get("drain", 5.0).min(60.0),
            batched,
        })
    };
    let window = || whole("window", 20.0, 100_000.0).map(Pacing::Window);
    let scenario = match name.as_str() {
        "pairs" => Scenario::Pairs(flow(whole("pairs", 50.0, 5_000.0)?, 1, 10.0, window()?)?),
        "rate" => Scenario::Rate(flow(
            whole("pairs", 50.0, 5_000.0)?,
            1,
            10.0,
            Pacing::Rate(get("rate", 10_000.0)),
        )?),
        "fanout" => Scenario::Fanout(flow(
            1,
            whole("recipients", 100.0, MAX_RECIPIENTS as f64)?,
            5.0,
            Pacing::Window(whole("window", 5.0, 100_000.0)?),
        )?),
        "idle" => Scenario::Idle(Hold {
            clients: whole("connections", 10_000.0, 1_000_000.0)?,
            threads: whole("threads", 8.0, 256.0)?,
            seconds: get("seconds", 5.0).min(3600.0),
        }),
        "probe" => {
            if runs > 1 {
                return Err("probe runs once: leave out --runs".into());
            }
            Scenario::Probe(Probe {
                seconds: get("seconds", 3.0).min(60.0),
            })
        }
        _ => Scenario::Ramp(Hold {
            clients: whole("clients", 2_000.0, 1_000_000.0)?,
            threads: whole("threads", 8.0, 256.0)?,
            seconds: 0.0,
        }),
    };
    Ok(Some(Options {
        spawn,
        spawn_mosquitto,
        mqtt,
        server: server.unwrap_or_else(|| "http://127.0.0.1:8080".into()),
        ws: ws.unwrap_or_else(|| "ws://127.0.0.1:8081/websocket".into()),
        pid,
        password,
        runs,
        scenario,
    }))
}

/// Whether `path` names a mosquitto binary (by its file name).
pub(crate) fn is_mosquitto(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.contains("mosquitto"))
}

/// The `--spawn` paths as (edgeim, mosquitto): at most one of each.
pub(crate) fn split_spawns(
    spawns: Vec<PathBuf>,
) -> Result<(Option<PathBuf>, Option<PathBuf>), String> {
    let (mut edgeim, mut mosquitto) = (None, None);
    for path in spawns {
        let slot = if is_mosquitto(&path) {
            &mut mosquitto
        } else {
            &mut edgeim
        };
        if slot.replace(path).is_some() {
            return Err("--spawn twice takes one edgeim and one mosquitto binary".into());
        }
    }
    Ok((edgeim, mosquitto))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_spawns_are_one_edgeim_and_one_mosquitto() {
        let p = |s: &str| PathBuf::from(s);
        assert_eq!(
            split_spawns(vec![p("/usr/sbin/mosquitto"), p("target/release/edgeim")]),
            Ok((
                Some(p("target/release/edgeim")),
                Some(p("/usr/sbin/mosquitto"))
            ))
        );
        assert!(split_spawns(vec![p("a/edgeim"), p("b/edgeim")]).is_err());
        assert!(split_spawns(vec![p("mosquitto"), p("x/mosquitto")]).is_err());
    }
}
