//! Thread priorities: the background threads (election, snapshots) run below the event
//! loops, in CPU and, for the snapshot, in I/O.

/// Lowers the calling thread's scheduling priority by `by` nice steps from the thread's
/// current value (at most to 19, the lowest), so a server run under `nice` keeps the
/// same order among its threads. Linux applies `setpriority(PRIO_PROCESS, tid)` to one
/// thread. Failure (a seccomp profile, a sandbox) only costs priority, so it is
/// reported, naming `what`, and ignored.
pub fn lower_thread_nice(by: i32, what: &str) {
    // SAFETY: gettid has no preconditions; getpriority and setpriority read only their
    // integer arguments. getpriority's -1 is also a valid nice value, so errno tells.
    let rc = unsafe {
        let tid = libc::gettid() as libc::id_t;
        *libc::__errno_location() = 0;
        let cur = libc::getpriority(libc::PRIO_PROCESS, tid);
        let cur = if cur == -1 && *libc::__errno_location() != 0 {
            0
        } else {
            cur
        };
        libc::setpriority(libc::PRIO_PROCESS, tid, (cur + by).min(19))
    };
    if rc != 0 {
        eprintln!(
            "ringkeeper: cannot lower the {what}'s priority by {by}: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Puts the calling thread's I/O in the idle class: where the I/O scheduler orders by
/// class (mq-deadline, bfq; their aging keeps it from starving), every other request
/// goes to the device first. Failure is reported, naming `what`, and ignored.
pub fn set_thread_io_idle(what: &str) {
    const IOPRIO_WHO_PROCESS: libc::c_long = 1;
    const IOPRIO_CLASS_IDLE: libc::c_long = 3;
    const IOPRIO_CLASS_SHIFT: libc::c_long = 13;
    // SAFETY: gettid has no preconditions; ioprio_set reads only its integer arguments.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_ioprio_set,
            IOPRIO_WHO_PROCESS,
            libc::gettid() as libc::c_long,
            IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT,
        )
    };
    if rc != 0 {
        eprintln!(
            "ringkeeper: cannot lower the {what}'s I/O priority: {}",
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each on a thread of its own: the changes are the calling thread's alone.
    #[test]
    fn a_thread_lowers_its_own_nice_and_io_class_and_no_other() {
        // SAFETY (both closures): plain system calls reading their integer arguments.
        let nice =
            || unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) };
        let io_class = || unsafe {
            libc::syscall(
                libc::SYS_ioprio_get,
                1 as libc::c_long, // IOPRIO_WHO_PROCESS
                libc::gettid() as libc::c_long,
            ) >> 13
        };
        let before = std::thread::spawn(move || (nice(), io_class()))
            .join()
            .unwrap();
        let after = std::thread::spawn(move || {
            lower_thread_nice(3, "test thread");
            set_thread_io_idle("test thread");
            (nice(), io_class())
        })
        .join()
        .unwrap();
        assert_eq!(
            after.0,
            (before.0 + 3).min(19),
            "nice lowered by 3 from where it was"
        );
        assert_eq!(after.1, 3, "idle I/O class");
        let other = std::thread::spawn(move || (nice(), io_class()))
            .join()
            .unwrap();
        assert_eq!(other, before, "another thread keeps its priorities");
    }
}
