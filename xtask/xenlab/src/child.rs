//! Child processes that never outlive xtask: every QEMU that xtask starts (`run`, the benches,
//! the Xen lab's QEMU) goes through [`spawn`], and so does `cargo test` under `cargo xtask test`.
//!
//! - **Parent death.** The child asks the kernel to send it SIGKILL when its parent goes
//!   (`PR_SET_PDEATHSIG`), so no signal to xtask, SIGKILL included, leaves a QEMU behind. Linux
//!   sends it when the *thread* that spawned the child ends, not only the process: every caller
//!   here waits for its child in the thread that spawned it (and dropping a [`Child`] kills and
//!   reaps it), so the child never needs that thread to live longer than its caller. A child
//!   spawned in a thread that then ends is killed with it.
//! - **Its own process group.** A Ctrl-C in the terminal (SIGINT to the foreground group)
//!   reaches xtask, not QEMU directly; xtask then kills QEMU's whole group.
//! - **Signals to xtask.** [`stop_on_signals`], called first thing by `main`, turns SIGTERM,
//!   SIGINT and SIGHUP into: SIGKILL to every running child's process group, one line on stderr
//!   naming what was killed, then xtask ends by that same signal (its default action). So whoever
//!   waits for xtask sees "killed by SIGTERM" (a shell's `$?` shows 128 + N: 143 for SIGTERM, 130
//!   for SIGINT, 129 for SIGHUP), never an exit status: neither a guest's status nor one of
//!   xtask's own (such as the one for a QEMU killed by a signal that did not come from xtask:
//!   QEMU's own end, which `run` reports, unlike xtask being stopped). Directories registered with [`remove_if_stopped`] (the Xen lab's run directory) are
//!   removed too, and the clean-up steps registered with [`run_if_stopped`] (network
//!   namespaces) run.
//!
//! Waiting goes through `wait4`, which also gives the child's CPU time ([`Exit::cpu`]; the idle
//! test compares it with the wall time of a guest that sleeps).

use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, Once};
use std::time::Duration;

/// The running children, by process id (= process group id), with what they are.
static LIVE: Mutex<Vec<(libc::pid_t, &'static str)>> = Mutex::new(Vec::new());
/// Directories to remove when a signal stops xtask (the Xen lab's run directory).
static TEMP_DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
/// Clean-up steps to run when a signal stops xtask, by key (the network namespaces of
/// `--net tap` and the network bench: `ip netns delete`), after every child was killed.
static STOP_HOOKS: Mutex<Vec<StopHook>> = Mutex::new(Vec::new());
/// A clean-up step: its key and what runs with it.
type StopHook = (String, fn(&str));
/// Set once a signal stops xtask: waiters then never return (the signal thread ends xtask).
static STOPPING: AtomicBool = AtomicBool::new(false);

/// The signals [`stop_on_signals`] handles.
pub const STOP_SIGNALS: [(libc::c_int, &str); 3] = [
    (libc::SIGTERM, "SIGTERM"),
    (libc::SIGINT, "SIGINT"),
    (libc::SIGHUP, "SIGHUP"),
];

fn live() -> MutexGuard<'static, Vec<(libc::pid_t, &'static str)>> {
    LIVE.lock().unwrap_or_else(|p| p.into_inner())
}

/// How a child ended.
#[derive(Debug, Clone, Copy)]
pub struct Exit {
    /// Its exit status (or the signal that killed it).
    pub status: ExitStatus,
    /// The CPU time it used (user + system, its threads and its waited-for children).
    pub cpu: Duration,
}

/// A child started by [`spawn`]: in its own process group, killed when xtask dies.
#[derive(Debug)]
pub struct Child {
    inner: std::process::Child,
    pid: libc::pid_t,
    exit: Option<Exit>,
}

/// Starts `cmd` (`what` names it in messages: "QEMU") so that it cannot outlive xtask: in its
/// own process group, with `PR_SET_PDEATHSIG` = SIGKILL, registered for [`stop_on_signals`].
/// Wait for it in the thread that called this (see the module docs).
pub fn spawn(cmd: &mut Command, what: &'static str) -> io::Result<Child> {
    let parent = std::process::id() as libc::pid_t;
    cmd.process_group(0);
    // SAFETY: the closure runs in the forked child before exec and calls only
    // async-signal-safe functions (prctl, getppid, _exit); it touches no memory of the parent's
    // other threads.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            // xtask may have died between fork and prctl: then no signal would ever come.
            if libc::getppid() != parent {
                libc::_exit(137);
            }
            Ok(())
        });
    }
    // Registered under the lock that a stopping signal takes, so that a signal during the
    // spawn kills this child too (or xtask ends first and the kernel kills it).
    let mut live = live();
    let inner = cmd.spawn()?;
    let pid = inner.id() as libc::pid_t;
    live.push((pid, what));
    Ok(Child {
        inner,
        pid,
        exit: None,
    })
}

/// Runs `cmd` to its end through [`spawn`] and collects its stdout and stderr (stdin is null),
/// like [`Command::output`]: for the short QEMU calls (`--version`).
pub fn output(cmd: &mut Command, what: &'static str) -> io::Result<std::process::Output> {
    use std::io::Read;
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = spawn(cmd, what)?;
    let err = child.take_stderr().map(|mut e| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = e.read_to_end(&mut buf);
            buf
        })
    });
    let mut stdout = Vec::new();
    if let Some(mut out) = child.take_stdout() {
        out.read_to_end(&mut stdout)?;
    }
    let status = child.wait()?.status;
    let stderr = err.and_then(|t| t.join().ok()).unwrap_or_default();
    Ok(std::process::Output {
        status,
        stdout,
        stderr,
    })
}

impl Child {
    /// Its process id (also its process group id).
    pub fn id(&self) -> u32 {
        self.pid as u32
    }

    /// Its stdout, when piped (once).
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.inner.stdout.take()
    }

    /// Its stderr, when piped (once).
    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.inner.stderr.take()
    }

    /// Kills its whole process group with SIGKILL (nothing once it has been reaped).
    pub fn kill(&mut self) {
        if self.exit.is_none() {
            // SAFETY: a plain syscall; the group is ours and not yet reaped, so its id cannot
            // have been reused.
            unsafe { libc::kill(-self.pid, libc::SIGKILL) };
        }
    }

    /// How it ended, if it has; reaps it.
    pub fn try_wait(&mut self) -> io::Result<Option<Exit>> {
        if self.exit.is_some() {
            return Ok(self.exit);
        }
        // Under the lock a stopping signal takes: that one never kills a reaped (reusable) id.
        let mut live = live();
        let mut status: libc::c_int = 0;
        // SAFETY: all-zero bytes are a valid `rusage` (integers and timevals).
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let reaped = loop {
            // SAFETY: valid pointers to locals; `pid` is our own unreaped child.
            let r = unsafe { libc::wait4(self.pid, &mut status, libc::WNOHANG, &mut usage) };
            if r >= 0 {
                break r == self.pid;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        };
        if !reaped {
            return Ok(None);
        }
        live.retain(|(pid, _)| *pid != self.pid);
        drop(live);
        let time = |t: libc::timeval| {
            Duration::from_secs(t.tv_sec.max(0) as u64)
                + Duration::from_micros(t.tv_usec.max(0) as u64)
        };
        self.exit = Some(Exit {
            status: ExitStatus::from_raw(status),
            cpu: time(usage.ru_utime) + time(usage.ru_stime),
        });
        if STOPPING.load(Ordering::SeqCst) {
            // Killed because xtask is stopping: its end is no outcome to report; the signal
            // thread ends xtask.
            loop {
                std::thread::park();
            }
        }
        Ok(self.exit)
    }

    /// Waits until it ends, and reaps it.
    pub fn wait(&mut self) -> io::Result<Exit> {
        loop {
            if let Some(exit) = self.try_wait()? {
                return Ok(exit);
            }
            // Block until it has exited, without reaping it (try_wait reaps it under the lock).
            // SAFETY: all-zero bytes are a valid `siginfo_t`.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            // SAFETY: a valid pointer to a local; `pid` is our own unreaped child.
            let r = unsafe {
                libc::waitid(
                    libc::P_PID,
                    self.pid as libc::id_t,
                    &mut info,
                    libc::WEXITED | libc::WNOWAIT,
                )
            };
            if r != 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
}

impl Drop for Child {
    /// A child whose owner returns early (an error) is killed and reaped, never left running.
    fn drop(&mut self) {
        if self.exit.is_none() {
            self.kill();
            let _ = self.wait();
        }
    }
}

/// Makes SIGTERM, SIGINT and SIGHUP stop xtask cleanly: every child from [`spawn`] is killed
/// (SIGKILL to its process group), a line on stderr says so, and xtask ends by that same signal.
///
/// Call it first in `main`, before any thread exists: it blocks the signals in the calling
/// thread, every thread spawned later inherits that, and one thread takes them with `sigwait`.
/// (Children get an empty signal mask back: `std::process::Command` resets it.) The tests'
/// processes do not call it: their QEMUs still die with them through `PR_SET_PDEATHSIG`.
pub fn stop_on_signals() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let set = signal_set(STOP_SIGNALS.iter().map(|(s, _)| *s));
        // SAFETY: a valid signal set; changes only this thread's mask.
        let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
        if r != 0 {
            eprintln!("xtask: warning: cannot block SIGTERM/SIGINT/SIGHUP (error {r})");
            return;
        }
        let spawned = std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                loop {
                    let mut sig: libc::c_int = 0;
                    // SAFETY: a valid signal set and a pointer to a local.
                    if unsafe { libc::sigwait(&set, &mut sig) } == 0 {
                        stop(sig);
                    }
                }
            });
        if let Err(e) = spawned {
            // Unblock again: without the thread the signals must keep their default action.
            // SAFETY: as above.
            unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()) };
            eprintln!("xtask: warning: no signal thread ({e})");
        }
    });
}

/// Has `dir` removed should a signal stop xtask (until [`forget_temp_dir`]); the owner removes
/// it otherwise. (SIGKILL leaves it.)
pub fn remove_if_stopped(dir: &Path) {
    TEMP_DIRS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(dir.to_path_buf());
}

/// Undoes [`remove_if_stopped`].
pub fn forget_temp_dir(dir: &Path) {
    TEMP_DIRS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|d| d != dir);
}

/// Has `hook(key)` run should a signal stop xtask (until [`forget_stop_hook`]), after every
/// child was killed: for what outlives a process and is not a directory (a network namespace).
/// The owner undoes it itself otherwise. (SIGKILL leaves it: the owner's next start cleans up.)
pub fn run_if_stopped(key: &str, hook: fn(&str)) {
    STOP_HOOKS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((key.to_string(), hook));
}

/// Undoes [`run_if_stopped`] for `key`.
pub fn forget_stop_hook(key: &str) {
    STOP_HOOKS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|(k, _)| k != key);
}

fn signal_set(signals: impl Iterator<Item = libc::c_int>) -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set; all-zero bytes are a valid starting value.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to the local set; the signals are valid signal numbers.
    unsafe {
        libc::sigemptyset(&mut set);
        for s in signals {
            libc::sigaddset(&mut set, s);
        }
    }
    set
}

/// Kills every child, says so, and ends xtask by `sig`. The lock on the children is held to the
/// end, so no child is spawned or reaped after this starts.
fn stop(sig: libc::c_int) -> ! {
    let live = live();
    STOPPING.store(true, Ordering::SeqCst);
    for (pid, _) in live.iter() {
        // SAFETY: a plain syscall; every registered child is unreaped (reaping takes this lock).
        unsafe { libc::kill(-*pid, libc::SIGKILL) };
    }
    let name = STOP_SIGNALS
        .iter()
        .find(|(s, _)| *s == sig)
        .map_or("a signal", |(_, n)| n);
    let killed: Vec<String> = live
        .iter()
        .map(|(pid, what)| format!("{what} (pid {pid})"))
        .collect();
    if killed.is_empty() {
        eprintln!("xtask: stopped by {name}");
    } else {
        eprintln!("xtask: stopped by {name}; killed {}", killed.join(", "));
    }
    if let Ok(dirs) = TEMP_DIRS.try_lock() {
        for dir in dirs.iter() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    if let Ok(hooks) = STOP_HOOKS.try_lock() {
        for (key, hook) in hooks.iter() {
            hook(key);
        }
    }
    let set = signal_set(std::iter::once(sig));
    // SAFETY: plain syscalls: restore the default action, then deliver the signal to this
    // thread with it unblocked, which ends the process.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::raise(sig);
    }
    // Not reached (the default action of these signals ends the process).
    std::process::exit(128 + sig)
}

/// A stdout handle that writes to our stderr, so child output never mixes into our stdout.
pub fn stderr_stdio() -> Stdio {
    use std::os::fd::AsFd;
    match std::io::stderr().as_fd().try_clone_to_owned() {
        Ok(fd) => Stdio::from(fd),
        Err(_) => Stdio::inherit(),
    }
}

/// Finds an executable on `$PATH`.
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Is this process root (effective uid 0)?
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|uids| uids.split_whitespace().nth(1))
            .is_some_and(|euid| euid == "0")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_runs_in_its_own_group_with_a_parent_death_signal() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "cat /proc/self/stat; exit 3"])
            .stdout(std::process::Stdio::piped());
        let mut child = spawn(&mut cmd, "sh").expect("sh starts");
        let pid = child.id();
        assert!(live().iter().any(|(p, _)| *p as u32 == pid));
        let mut out = String::new();
        std::io::Read::read_to_string(&mut child.take_stdout().expect("piped"), &mut out)
            .expect("reads");
        let exit = child.wait().expect("waits");
        assert_eq!(exit.status.code(), Some(3));
        assert!(!live().iter().any(|(p, _)| *p as u32 == pid));
        // /proc/self/stat: pid (comm) state ppid pgrp ...
        let after_comm = out.rsplit_once(')').expect("stat line").1;
        let fields: Vec<&str> = after_comm.split_whitespace().collect();
        assert_eq!(fields[2], pid.to_string(), "pgrp of {out}");
    }

    #[test]
    fn dropping_a_child_kills_it_and_kill_reaches_the_group() {
        let mut cmd = Command::new("sleep");
        cmd.arg("600");
        let mut child = spawn(&mut cmd, "sleep").expect("sleep starts");
        assert!(child.try_wait().expect("polls").is_none());
        child.kill();
        let exit = child.wait().expect("waits");
        assert_eq!(exit.status.signal(), Some(libc::SIGKILL));
        let child = spawn(Command::new("sleep").arg("600"), "sleep").expect("sleep starts");
        let pid = child.id();
        drop(child);
        // Gone, or (its id reused) no longer our child.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .unwrap_or("");
        assert_ne!(ppid, std::process::id().to_string(), "{stat}");
    }

    #[test]
    fn a_child_dies_with_the_thread_that_spawned_it() {
        // The thread ends without waiting or dropping: only PR_SET_PDEATHSIG can kill `sleep`.
        let pid = std::thread::spawn(|| {
            let child = spawn(Command::new("sleep").arg("600"), "sleep").expect("sleep starts");
            let pid = child.id();
            std::mem::forget(child);
            pid
        })
        .join()
        .expect("the thread ends");
        // SAFETY: all-zero bytes are a valid `siginfo_t`.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // Polled, with a deadline far beyond the kernel's (immediate) signal: a missing death
        // signal fails the test instead of hanging it.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let r = loop {
            // SAFETY: a valid pointer to a local; `pid` is our unreaped child.
            let r = unsafe {
                libc::waitid(
                    libc::P_PID,
                    pid as libc::id_t,
                    &mut info,
                    libc::WEXITED | libc::WNOHANG,
                )
            };
            // SAFETY: filled in (or left zero) by waitid.
            if r != 0 || unsafe { info.si_pid() } != 0 {
                break r;
            }
            if std::time::Instant::now() > deadline {
                // SAFETY: a plain syscall on our own child.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
                panic!("sleep (pid {pid}) outlived the thread that spawned it");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(r, 0);
        // SAFETY: filled in by waitid for a child that ended.
        let (code, status) = unsafe { (info.si_code, info.si_status()) };
        assert_eq!((code, status), (libc::CLD_KILLED, libc::SIGKILL));
        live().retain(|(p, _)| *p as u32 != pid);
    }

    #[test]
    fn output_collects_both_streams() {
        let out = output(
            Command::new("sh").args(["-c", "echo out; echo err >&2; exit 4"]),
            "sh",
        )
        .expect("sh runs");
        assert_eq!(out.status.code(), Some(4));
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
    }

    #[test]
    fn cpu_time_is_measured() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"]);
        let exit = spawn(&mut cmd, "sh")
            .expect("sh starts")
            .wait()
            .expect("waits");
        assert!(exit.status.success());
        assert!(exit.cpu > Duration::ZERO, "{exit:?}");
    }
}
