//! What the load generator reads from the kernel: CPU time and memory of a process from
//! /proc, the clock tick, and the open-file limit.

use std::fs;

/// Which process to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proc {
    /// This process.
    Me,
    /// Another process.
    Pid(u32),
}

impl Proc {
    fn path(self, file: &str) -> String {
        match self {
            Proc::Me => format!("/proc/self/{file}"),
            Proc::Pid(pid) => format!("/proc/{pid}/{file}"),
        }
    }
}

/// Clock ticks per second of /proc/PID/stat times (`sysconf(_SC_CLK_TCK)`, usually 100).
pub fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// utime + stime of the process, in seconds.
pub fn cpu_seconds(p: Proc) -> Result<f64, String> {
    let path = p.path("stat");
    let stat = fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let ticks = parse_stat_cpu_ticks(&stat).ok_or_else(|| format!("{path}: unexpected format"))?;
    Ok(ticks as f64 / clock_ticks_per_second())
}

/// utime (field 14) + stime (field 15) of a /proc/PID/stat line. The command name (field 2)
/// may hold spaces and parentheses, so fields are counted after its last `)`.
pub fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace();
    // After the name come field 3 (state) onwards: utime is the 12th, stime the 13th.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// `pid` and every live process below it (nginx's workers under its master, for example).
pub fn process_tree(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(child) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(ppid) = fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|s| parse_stat_ppid(&s))
            {
                parents.push((child, ppid));
            }
        }
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let p = tree[i];
        tree.extend(parents.iter().filter(|&&(_, pp)| pp == p).map(|&(c, _)| c));
        i += 1;
    }
    tree
}

/// The parent PID (field 4) of a /proc/PID/stat line.
fn parse_stat_ppid(stat: &str) -> Option<u32> {
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

/// utime + stime of `pid` and its live descendants, in seconds. Fails when `pid` itself is
/// gone; descendants that vanish meanwhile are skipped.
pub fn tree_cpu_seconds(pid: u32) -> Result<f64, String> {
    let own = cpu_seconds(Proc::Pid(pid))?;
    let rest: f64 = process_tree(pid)
        .into_iter()
        .skip(1)
        .filter_map(|p| cpu_seconds(Proc::Pid(p)).ok())
        .sum();
    Ok(own + rest)
}

/// A `Vm*` value summed over `pid` and its live descendants, in KiB.
pub fn tree_status_kib(pid: u32, key: &str) -> Option<u64> {
    let own = status_kib(Proc::Pid(pid), key)?;
    let rest: u64 = process_tree(pid)
        .into_iter()
        .skip(1)
        .filter_map(|p| status_kib(Proc::Pid(p), key))
        .sum();
    Some(own + rest)
}

/// A `Vm*` line of /proc/PID/status, in KiB (`VmHWM` = peak RSS, `VmRSS` = current).
pub fn status_kib(p: Proc, key: &str) -> Option<u64> {
    let status = fs::read_to_string(p.path("status")).ok()?;
    parse_status_kib(&status, key)
}

fn parse_status_kib(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Raises the soft open-file limit to the hard limit; returns the soft limit in force.
pub fn raise_fd_limit() -> Result<u64, String> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid pointer to an rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(format!("getrlimit: {}", std::io::Error::last_os_error()));
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: valid pointer to an rlimit.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        }
    }
    Ok(lim.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_and_status() {
        let stat =
            "1234 (neo nex) (x)) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0 1 2 3";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(325));
        assert_eq!(parse_stat_ppid(stat), Some(1));
        let status = "Name:\tneonex\nVmHWM:\t   51234 kB\nVmRSS:\t   40000 kB\n";
        assert_eq!(parse_status_kib(status, "VmHWM"), Some(51234));
        assert_eq!(parse_status_kib(status, "VmRSS"), Some(40000));
        assert_eq!(parse_status_kib(status, "VmSwap"), None);
    }

    #[test]
    fn reads_own_process() {
        assert!(cpu_seconds(Proc::Me).unwrap() >= 0.0);
        assert!(status_kib(Proc::Me, "VmRSS").unwrap() > 0);
        assert!(raise_fd_limit().unwrap() > 0);
        let me = std::process::id();
        assert_eq!(process_tree(me)[0], me);
        assert!(tree_cpu_seconds(me).unwrap() >= 0.0);
        assert!(tree_status_kib(me, "VmRSS").unwrap() > 0);
    }
}
