//! The few `/proc` figures the harness reports: a server's resident memory and CPU time.
//!
//! A server is a process and its descendants: most peers are one process, but Pushpin is a
//! runner with three services under it (connection manager, proxy, handler), and a peer's cost is
//! all of them.

use std::time::Duration;

/// `VmRSS` of `pid` and its descendants, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let own = process_rss_kib(pid)?;
    Some(
        own + descendants(pid)
            .into_iter()
            .filter_map(process_rss_kib)
            .sum::<u64>(),
    )
}

fn process_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// User plus system CPU time, all threads included: of this process (`None`), or of a pid and
/// its descendants.
pub fn cpu_time(pid: Option<u32>) -> Option<Duration> {
    let Some(pid) = pid else {
        return process_cpu_time("/proc/self/stat");
    };
    let own = process_cpu_time(&format!("/proc/{pid}/stat"))?;
    Some(
        own + descendants(pid)
            .into_iter()
            .filter_map(|p| process_cpu_time(&format!("/proc/{p}/stat")))
            .sum::<Duration>(),
    )
}

/// The pids under `pid` (children, their children, ...), from each process's parent in
/// `/proc/*/stat`.
fn descendants(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let parents: Vec<(u32, u32)> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| Some((p, parent(p)?)))
        .collect();
    let mut found = Vec::new();
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        for &(child, _) in parents.iter().filter(|(_, parent)| *parent == p) {
            found.push(child);
            frontier.push(child);
        }
    }
    found
}

fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the name (which may hold spaces and parentheses): state, then the parent's pid.
    stat[stat.rfind(')')? + 2..]
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn process_cpu_time(path: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on every Linux ABI we run on; asking sysconf would need libc.
    Some(Duration::from_millis(ticks * 10))
}

/// Busy time (everything but idle and iowait) of the given CPUs since boot, from `/proc/stat`.
/// Minus the server's and the generator's own CPU time, it shows what else ran on their cores
/// during a measurement (the machine is shared: a compile next door skews every figure).
pub fn cpus_busy(cpus: &[usize]) -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let mut ticks = 0u64;
    for &cpu in cpus {
        let name = format!("cpu{cpu}");
        let line = stat
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name.as_str()))?;
        let f: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal: guest time is already in user.
        ticks += f
            .iter()
            .take(8)
            .enumerate()
            .filter(|(i, _)| *i != 3 && *i != 4)
            .map(|(_, v)| v)
            .sum::<u64>();
    }
    Some(Duration::from_millis(ticks * 10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let me = std::process::id();
        assert!(rss_kib(me).unwrap() > 0);
        assert!(cpu_time(None).is_some());
        assert!(cpu_time(Some(me)).is_some());
        assert!(cpus_busy(&[0]).is_some());
    }

    #[test]
    fn a_child_counts_toward_its_parent() {
        let me = std::process::id();
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let found = descendants(me);
        let own = process_rss_kib(me).unwrap();
        let with_child = rss_kib(me).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(found.contains(&child.id()), "{found:?}");
        assert!(with_child > own, "{with_child} vs {own}");
    }
}
