//! The process's file descriptor table, grown once, up front, to the open-file limit.
//!
//! Linux grows a process's descriptor table by doubling as descriptors are allocated, and when
//! several threads share the table each growth waits for an RCU grace period (`expand_files`
//! -> `synchronize_rcu`), several milliseconds on a small VM. A hub accepting 15,000
//! connections crosses six doublings: `perf record -e sched:sched_switch` showed the thread
//! asleep in `accept4` (and the load generator's in `socket`) each time, its core idle while
//! the backlog waited. Growing the table while the process is still single-threaded costs no
//! grace period; it is kernel memory, about 8 bytes per slot.

use std::os::fd::AsFd;

/// Grows the descriptor table to cover the soft `RLIMIT_NOFILE`, at most `cap` slots, by
/// duplicating stderr to the highest such descriptor and closing the copy; returns the
/// descriptor used. Call it before any thread starts (a multi-threaded process pays the grace
/// period once here instead). Best effort: `None` when the limit is unknown or the call fails,
/// and the table then grows on demand as before.
pub fn presize_fd_table(cap: u64) -> Option<i32> {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current?;
    let top = i32::try_from(limit.min(cap).checked_sub(1)?).ok()?;
    let copy = rustix::io::fcntl_dupfd_cloexec(std::io::stderr().as_fd(), top).ok()?;
    drop(copy);
    Some(top)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `FDSize` in `/proc/self/status`: the slots the descriptor table has now.
    fn fd_table_size() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("FDSize:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    #[test]
    fn the_table_covers_the_limit_up_to_the_cap_and_no_descriptor_stays_open() {
        let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap();
        // Within what every CI machine allows and above a fresh process's 64 or 256 slots.
        let cap = soft.min(1000);
        let top = presize_fd_table(cap).unwrap();
        assert_eq!(u64::try_from(top).unwrap(), cap - 1);
        assert!(fd_table_size() >= cap, "FDSize {} < {cap}", fd_table_size());
        // The copy was closed: its number is free again.
        assert!(!std::path::Path::new(&format!("/proc/self/fd/{top}")).exists());
    }
}
