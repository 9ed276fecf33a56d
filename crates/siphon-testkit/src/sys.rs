//! The two system calls std does not offer: sending a signal other than
//! SIGKILL, and asking for the effective user id.
//!
//! Both are plain integer-in, integer-out calls with no memory-safety
//! preconditions; they are `unsafe` only because every foreign function is.

/// Sends `signal` to process `pid`. Returns whether the kernel accepted it.
#[allow(unsafe_code)] // kill(2) takes two integers and touches no memory of ours.
pub(crate) fn send_signal(pid: u32, signal: libc::c_int) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        // 0 and negative pids address process groups: never what we mean.
        return false;
    }
    // SAFETY: kill(2) has no pointer arguments and no preconditions.
    unsafe { libc::kill(pid, signal) == 0 }
}

/// Whether this process runs with effective user id 0.
#[allow(unsafe_code)] // geteuid(2) takes nothing, cannot fail and touches no memory.
pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid(2) has no arguments and no preconditions.
    unsafe { libc::geteuid() == 0 }
}
