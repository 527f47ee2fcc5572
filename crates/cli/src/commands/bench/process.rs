//! What the kernel tells of the bench's own process (its coordinator): resident memory and
//! CPU time; and its file-descriptor limit, raised as an operator would with `ulimit -n`.

use anyhow::{Context as _, bail};
use std::time::Duration;

/// Descriptors a bench process holds besides one per prover connection: the store's, the
/// listener, the runtime's, logs.
pub const FDS_BESIDES_PROVERS: u64 = 256;

/// Raises the soft limit on open files to the hard limit (what `ulimit -n $(ulimit -Hn)`
/// does in a shell) and returns it. Every connection is a descriptor, on both ends: the
/// usual soft limit of 1,024 stops a fleet long before 10,000 provers.
pub fn raise_fd_limit() -> anyhow::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read or write the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error()).context("getrlimit(RLIMIT_NOFILE)");
    }
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(std::io::Error::last_os_error())
                .context("setrlimit(RLIMIT_NOFILE) to the hard limit");
        }
    }
    #[allow(clippy::unnecessary_cast)] // rlim_t is u64 here, not on every platform.
    Ok(limit.rlim_cur as u64)
}

/// Fails unless this process may open `needed` files, naming the fix.
pub fn ensure_fd_limit(needed: u64) -> anyhow::Result<()> {
    let limit = raise_fd_limit()?;
    if limit < needed {
        bail!(
            "this run needs about {needed} open files but the hard limit is {limit}: raise it \
             (as root, `ulimit -Hn {needed}`, or LimitNOFILE= in a systemd unit; see README.md)"
        );
    }
    Ok(())
}

/// A `kB` figure of `/proc/self/status` (`VmRSS`: resident now, `VmHWM`: the peak).
pub fn status_kib(key: &str) -> anyhow::Result<u64> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().strip_suffix("kB")?.trim().parse().ok())
        .with_context(|| format!("no {key} in /proc/self/status"))
}

/// CPU time (user + system) this process has used so far, all threads.
pub fn cpu_time() -> anyhow::Result<Duration> {
    // SAFETY: getrusage writes only the struct passed; all-zero is a valid rusage.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return Err(std::io::Error::last_os_error()).context("getrusage");
    }
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    Ok(time(usage.ru_utime) + time(usage.ru_stime))
}
