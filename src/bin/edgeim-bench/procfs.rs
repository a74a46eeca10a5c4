//! What `/proc` says about a process: CPU time, RSS, threads, open files.

use std::process::Command;

/// The kernel's clock ticks per second for /proc times (`getconf CLK_TCK`;
/// 100 when getconf is missing, which is right on every Linux we target).
pub(crate) fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// utime+stime of a process in seconds (`pid` "self" for the generator).
pub(crate) fn cpu_seconds(pid: &str, ticks: f64) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces: fields start after its ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Field 3 (state) is f[0]; utime is field 14, stime field 15.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / ticks)
}

/// VmRSS of a process in KiB.
pub(crate) fn rss_kib(pid: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU seconds of the server and of the generator at one moment.
pub(crate) struct CpuSample {
    pub(crate) server: Option<f64>,
    pub(crate) client: Option<f64>,
}

/// The soft limit on open files of a process ("self" or a pid).
pub(crate) fn open_files_limit(pid: &str) -> Option<usize> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// (voluntary, involuntary) context switches of each thread of a process,
/// by thread id, from `/proc/PID/task/*/status`. A thread that ended is
/// no longer listed, so its switches are lost (see [`crate::cost`]).
pub(crate) fn ctx_switches(pid: &str) -> Option<Vec<(u32, u64, u64)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let Ok(entry) = entry else { continue };
        let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        // A thread may end between the listing and the read: skip it.
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        if let Some((v, n)) = parse_ctx_switches(&status) {
            out.push((tid, v, n));
        }
    }
    Some(out)
}

/// (voluntary_ctxt_switches, nonvoluntary_ctxt_switches) of a status file.
pub(crate) fn parse_ctx_switches(status: &str) -> Option<(u64, u64)> {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.trim_start_matches(':').trim().parse::<u64>().ok())
    };
    Some((
        field("voluntary_ctxt_switches")?,
        field("nonvoluntary_ctxt_switches")?,
    ))
}

/// `write_bytes` of `/proc/PID/io`: bytes of page cache the process
/// dirtied for files (what will go to the disk), all its threads, the
/// ended ones included. Needs the right to ptrace it (the same user, or
/// root).
pub(crate) fn write_bytes(pid: &str) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    io.lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
}

/// The kernel's memory for thread stacks and for its slab caches (sockets
/// among them), machine-wide, in KiB: `KernelStack` + `Slab` of
/// `/proc/meminfo`. Invisible in a process's RSS; ~24 KiB per thread.
pub(crate) fn kernel_kib() -> Option<(f64, f64)> {
    parse_kernel_kib(&std::fs::read_to_string("/proc/meminfo").ok()?)
}

pub(crate) fn parse_kernel_kib(meminfo: &str) -> Option<(f64, f64)> {
    let field = |name: &str| {
        meminfo.lines().find_map(|l| {
            let rest = l.strip_prefix(name)?.strip_prefix(':')?;
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
    };
    Some((field("KernelStack")?, field("Slab")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_memory_is_read_from_meminfo() {
        let m = "MemTotal:  100 kB\nSlab:   2048 kB\nSReclaimable: 5 kB\nKernelStack:  512 kB\n";
        assert_eq!(parse_kernel_kib(m), Some((512.0, 2048.0)));
        assert_eq!(parse_kernel_kib("MemTotal: 1 kB\n"), None);
        assert!(kernel_kib().is_some());
    }

    #[test]
    fn context_switches_are_read_from_a_status_file() {
        let status = "Name:\tedgeim\nvoluntary_ctxt_switches:\t120\n\
                      nonvoluntary_ctxt_switches:\t7\n";
        assert_eq!(parse_ctx_switches(status), Some((120, 7)));
        assert_eq!(parse_ctx_switches("Name:\tx\n"), None);
    }

    #[test]
    fn this_process_can_be_read() {
        let me = std::process::id().to_string();
        assert!(ctx_switches(&me).is_some_and(|t| !t.is_empty()));
        assert!(cpu_seconds(&me, 100.0).is_some());
    }
}
