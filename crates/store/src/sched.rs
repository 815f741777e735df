//! The log writer thread's scheduling class: `SCHED_BATCH` on Linux.
//!
//! The writer shares its core with the runtime that serves HTTP (on a one-core hub, or wherever
//! the scheduler puts both). Each append wakes it; under the default policy a woken thread may
//! preempt the one that woke it, so the writer ran as soon as the first publisher of a group
//! handed over its record: a commit of one, a switch back, the next record, another switch.
//! Measured with 16 HTTP publishers pinned to one core: 11,000 publishes/s, with about a tenth
//! of the hub's CPU in context switches. `SCHED_BATCH` (same nice value, same share of the CPU)
//! only drops that wake-up preemption, so the runtime finishes the requests it holds and the
//! writer then takes them as one group: 14,000 publishes/s in the same run.
//! No other platform has the class; there the writer keeps the default policy.

/// Puts the calling thread in `SCHED_BATCH`, keeping nice 0. Failure (a seccomp filter, a
/// process niced above 0 without `CAP_SYS_NICE`) leaves the default policy: slower, not wrong.
#[cfg(target_os = "linux")]
pub(crate) fn batch_current_thread() {
    use thread_priority::{
        NormalThreadSchedulePolicy, ThreadPriority, ThreadPriorityValue, ThreadSchedulePolicy,
        set_thread_priority_and_policy, thread_native_id,
    };
    // thread-priority maps its 0..=99 scale onto nice 19..=-20 for the normal classes; 48 is
    // nice 0, the default (checked by the test below).
    let Ok(value) = ThreadPriorityValue::try_from(48u8) else {
        return;
    };
    if let Err(e) = set_thread_priority_and_policy(
        thread_native_id(),
        ThreadPriority::Crossplatform(value),
        ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Batch),
    ) {
        tracing::debug!(error = ?e, "log writer keeps the default scheduling policy");
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn batch_current_thread() {}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use thread_priority::{NormalThreadSchedulePolicy, ThreadSchedulePolicy};

    /// nice of the calling thread, from /proc (field 19 of `stat`, after the `(comm)`).
    fn nice_of_current_thread() -> i64 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
        after_comm.split(' ').nth(16).unwrap().parse().unwrap()
    }

    #[test]
    fn the_writer_class_is_batch_at_nice_zero() {
        std::thread::spawn(|| {
            super::batch_current_thread();
            assert_eq!(
                thread_priority::thread_schedule_policy().unwrap(),
                ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Batch)
            );
            assert_eq!(nice_of_current_thread(), 0);
        })
        .join()
        .unwrap();
    }
}
