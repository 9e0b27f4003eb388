//! Pinning the bench's load generator and the center apart (Linux). On a machine of a few
//! cores the two otherwise compete for the same ones, and a ratio of throughputs then says as
//! much about the load generator as about the server (issue 13). The CPUs this process may use
//! are split in two halves: the center gets the first, the load generator the second. The
//! server's CPU per request, taken from its own accounting, does not depend on this; the
//! throughput ratio does, and the report says which split it was taken with.

use std::io;

/// The CPUs of each side, as kernel CPU numbers.
#[derive(Clone, Debug)]
pub struct Split {
    pub server: Vec<usize>,
    pub load: Vec<usize>,
}

impl Split {
    /// "CPU 0 / CPU 1": how the report names the split.
    pub fn describe(&self) -> String {
        let list = |cpus: &[usize]| cpus.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",");
        format!("center on CPU {}, load generator on CPU {}", list(&self.server), list(&self.load))
    }
}

fn allowed() -> io::Result<Vec<usize>> {
    // SAFETY: `set` is a plain bit set owned here; the kernel writes at most its size.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((0..libc::CPU_SETSIZE as usize).filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) }).collect())
}

/// The two halves of the CPUs this process may run on, or why there are none (one CPU).
pub fn split() -> Result<Split, String> {
    let cpus = allowed().map_err(|e| format!("the CPUs this process may use are not readable ({e})"))?;
    if cpus.len() < 2 {
        return Err(format!("{} CPU available: the load generator shares it with the center", cpus.len()));
    }
    let (server, load) = cpus.split_at(cpus.len() / 2);
    Ok(Split { server: server.to_vec(), load: load.to_vec() })
}

/// Restricts the calling thread (and the threads and processes it starts afterwards) to `cpus`.
/// Only async-signal-safe calls, so that it may run between `fork` and `exec`.
pub fn pin_current_thread(cpus: &[usize]) -> io::Result<()> {
    // SAFETY: as in `allowed`; CPU_SET only sets bits below CPU_SETSIZE, which `allowed` bounds.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus {
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    if unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pinned_thread_runs_only_where_it_was_pinned() {
        let cpus = allowed().expect("affinity readable");
        let first = cpus[0];
        // A thread of its own, so that the test's other threads keep every CPU.
        let seen = std::thread::spawn(move || {
            pin_current_thread(&[first]).expect("pinning");
            allowed().expect("affinity readable")
        })
        .join()
        .expect("thread");
        assert_eq!(seen, vec![first]);
    }
}
