//! A guest in the background: QEMU runs while the caller talks to the guest (over forwarded
//! ports), waits for console lines, and stops it. For the network tests and benches.
//!
//! [`start`] spawns QEMU through [`crate::child::spawn`] (its own process group, killed when
//! xtask or the test process dies) from a supervisor thread that owns it for its whole life
//! (the parent-death signal follows the spawning thread: see [`crate::child`]), so a [`Guest`]
//! may move between threads. The console is collected on a reader thread as it comes;
//! [`Guest::wait_for_line`] waits for a line that contains a needle. [`Guest::stop`] kills QEMU
//! (if it still runs) and returns the [`Boot`]: console, QEMU's stderr and the [`Outcome`]
//! ([`Outcome::Stopped`] when it was still running). Dropping a `Guest` kills QEMU too: none is
//! ever left behind.

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Error, Result, bail};

use crate::qemu::{Boot, Outcome, QemuConfig, decode_status};

/// What the reader and supervisor threads share with the [`Guest`].
#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// The console so far (bytes: a line may be cut inside a UTF-8 sequence).
    console: Vec<u8>,
    /// When each `\n` arrived, from the spawn.
    line_times: Vec<Duration>,
    /// Set once QEMU has ended and the console is complete.
    ended: Option<Outcome>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A QEMU running in the background (see the module docs).
pub struct Guest {
    shared: Arc<Shared>,
    /// Dropped (or sent to) to stop QEMU.
    stop: Option<mpsc::Sender<()>>,
    supervisor: Option<JoinHandle<Result<Boot, String>>>,
    pid: u32,
    started: Instant,
}

impl std::fmt::Debug for Guest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guest")
            .field("pid", &self.pid)
            .field("running", &self.is_running())
            .finish()
    }
}

/// Starts `cfg` in the background, killed after `timeout` if given (its outcome is then
/// [`Outcome::TimedOut`]). Fails when QEMU cannot be started at all.
pub fn start(cfg: &QemuConfig, timeout: Option<Duration>) -> Result<Guest> {
    if !cfg.kernel.is_file() {
        bail!("image {} does not exist", cfg.kernel.display());
    }
    if let Some(disk) = &cfg.disk {
        disk.prepare_log()?;
    }
    let shared = Arc::new(Shared::default());
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let (pid_tx, pid_rx) = mpsc::channel::<Result<(u32, Instant), String>>();
    let cfg = cfg.clone();
    let sup_shared = Arc::clone(&shared);
    let supervisor = thread::Builder::new()
        .name("qemu-guest".into())
        .spawn(move || supervise(&cfg, timeout, &sup_shared, &stop_rx, &pid_tx))
        .map_err(|e| Error::msg(format!("starting the QEMU supervisor thread: {e}")))?;
    match pid_rx.recv() {
        Ok(Ok((pid, started))) => Ok(Guest {
            shared,
            stop: Some(stop_tx),
            supervisor: Some(supervisor),
            pid,
            started,
        }),
        Ok(Err(e)) => {
            let _ = supervisor.join();
            bail!("{e}")
        }
        Err(_) => {
            let _ = supervisor.join();
            bail!("the QEMU supervisor thread ended before starting QEMU")
        }
    }
}

/// The supervisor thread: spawns QEMU, reads its output, waits for its end or a stop.
fn supervise(
    cfg: &QemuConfig,
    timeout: Option<Duration>,
    shared: &Arc<Shared>,
    stop: &mpsc::Receiver<()>,
    started: &mpsc::Sender<Result<(u32, Instant), String>>,
) -> Result<Boot, String> {
    // With a TAP NIC, `ip netns exec NS qemu ...` (ip execs QEMU: the pid stays QEMU's).
    let mut cmd = cfg.command();
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = match crate::child::spawn(&mut cmd, "QEMU") {
        Ok(child) => child,
        Err(e) => {
            let msg = format!("could not start {}: {e}", cfg.qemu.display());
            let _ = started.send(Err(msg.clone()));
            return Err(msg);
        }
    };
    let _ = started.send(Ok((child.id(), start)));
    let reader = child.take_stdout().map(|mut out| {
        let shared = Arc::clone(shared);
        thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = out.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                let at = start.elapsed();
                let mut state = shared.lock();
                state.console.extend_from_slice(&chunk[..n]);
                let lines = chunk[..n].iter().filter(|b| **b == b'\n').count();
                state.line_times.extend(std::iter::repeat_n(at, lines));
                drop(state);
                shared.changed.notify_all();
            }
        })
    });
    let stderr = child.take_stderr().map(|err| {
        thread::spawn(move || {
            let mut all = String::new();
            for line in BufReader::new(err).lines().map_while(|l| l.ok()) {
                all.push_str(&line);
                all.push('\n');
            }
            all
        })
    });
    let (exit, why) = loop {
        match child.try_wait() {
            Ok(Some(exit)) => break (exit, None),
            Ok(None) => {}
            Err(e) => {
                child.kill();
                return Err(format!("waiting for QEMU: {e}"));
            }
        }
        let expired = timeout.is_some_and(|t| start.elapsed() > t);
        let stopped = match stop.recv_timeout(Duration::from_millis(2)) {
            Ok(()) | Err(RecvTimeoutError::Disconnected) => true,
            Err(RecvTimeoutError::Timeout) => false,
        };
        if expired || stopped {
            child.kill();
            let exit = child.wait().map_err(|e| format!("waiting for QEMU: {e}"))?;
            let why = if expired {
                timeout.map(Outcome::TimedOut)
            } else {
                Some(Outcome::Stopped)
            };
            break (exit, why);
        }
    };
    let elapsed = start.elapsed();
    if let Some(reader) = reader {
        let _ = reader.join();
    }
    let stderr = stderr
        .map(|t| t.join().unwrap_or_default())
        .unwrap_or_default();
    let mut state = shared.lock();
    let stdout = String::from_utf8_lossy(&state.console).into_owned();
    let outcome = why.unwrap_or_else(|| decode_status(exit.status.code(), &stderr, &stdout));
    state.ended = Some(outcome.clone());
    let line_times = state.line_times.clone();
    drop(state);
    shared.changed.notify_all();
    Ok(Boot {
        outcome,
        stdout,
        stderr,
        elapsed,
        cpu: exit.cpu,
        line_times,
    })
}

/// The first complete console line (ended by `\n`, without `\r`) that contains `needle`.
fn find_line(console: &[u8], needle: &str) -> Option<String> {
    let end = console.iter().rposition(|b| *b == b'\n')?;
    String::from_utf8_lossy(&console[..=end])
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .find(|l| l.contains(needle))
        .map(str::to_string)
}

impl Guest {
    /// QEMU's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether QEMU still runs.
    pub fn is_running(&self) -> bool {
        self.shared.lock().ended.is_none()
    }

    /// The console so far (`\r` kept).
    pub fn console(&self) -> String {
        String::from_utf8_lossy(&self.shared.lock().console).into_owned()
    }

    /// Waits until a complete console line contains `needle` (searched from the console's
    /// start, so a line that came before the call counts) and returns that line. Fails when
    /// `timeout` passes first, or when QEMU ends first (a guest that exited, panicked or whose
    /// QEMU failed), with the outcome and the console so far.
    pub fn wait_for_line(&self, needle: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        loop {
            if let Some(line) = find_line(&state.console, needle) {
                return Ok(line);
            }
            let console = || String::from_utf8_lossy(&state.console).into_owned();
            if let Some(outcome) = &state.ended {
                bail!(
                    "QEMU ended before a console line contained {needle:?}: {}\n--- console ---\n{}",
                    outcome.message(),
                    console()
                );
            }
            let now = Instant::now();
            if now >= deadline {
                bail!(
                    "no console line contained {needle:?} within {:.1} s ({:.1} s since QEMU \
                     started; it still runs)\n--- console ---\n{}",
                    timeout.as_secs_f64(),
                    self.started.elapsed().as_secs_f64(),
                    console()
                );
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Waits for QEMU to end by itself (the guest exits), at most `timeout`; then returns the
    /// boot. Past `timeout` QEMU is stopped ([`Outcome::Stopped`]).
    pub fn wait(mut self, timeout: Duration) -> Result<Boot> {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        while state.ended.is_none() {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        drop(state);
        self.finish()
    }

    /// Kills QEMU if it still runs, and returns the boot: console, QEMU's stderr, outcome
    /// ([`Outcome::Stopped`] if it was still running, else how it ended by itself).
    pub fn stop(mut self) -> Result<Boot> {
        self.finish()
    }

    fn finish(&mut self) -> Result<Boot> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.supervisor.take().map(JoinHandle::join) {
            Some(Ok(Ok(boot))) => Ok(boot),
            Some(Ok(Err(e))) => bail!("{e}"),
            Some(Err(_)) => bail!("the QEMU supervisor thread panicked"),
            None => bail!("the guest was already stopped"),
        }
    }
}

impl Drop for Guest {
    /// Never leaves QEMU behind: stops it and waits for its end.
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_complete_lines_are_found() {
        assert_eq!(find_line(b"net: 10.0.2.15/24 up", "net:"), None);
        assert_eq!(
            find_line(b"boot\r\nnet: 10.0.2.15/24 up\r\nnet: part", "net:"),
            Some("net: 10.0.2.15/24 up".into())
        );
        assert_eq!(find_line(b"a\nb\n", "c"), None);
        assert_eq!(find_line(b"", ""), None);
        assert_eq!(find_line(b"\n", ""), Some(String::new()));
    }

    fn cfg() -> QemuConfig {
        QemuConfig {
            qemu: "/no/such/qemu".into(),
            accel: crate::qemu::Accel::Tcg,
            machine: crate::qemu::Machine::Microvm,
            memory: 32 << 20,
            cpus: 1,
            console: crate::qemu::Console::Serial,
            kernel: "no/such/image.elf".into(),
            kargs: String::new(),
            app_args: Vec::new(),
            gdb: None,
            debug_exit: true,
            machine_opts: String::new(),
            nic: None,
            tap: None,
            extra_args: Vec::new(),
            disk: None,
        }
    }

    #[test]
    fn a_missing_image_is_refused() {
        let mut cfg = cfg();
        let e = start(&cfg, None).expect_err("no image").to_string();
        assert!(e.contains("no/such/image.elf does not exist"), "{e}");
        cfg.kernel = "Cargo.toml".into();
        let e = start(&cfg, None).expect_err("no QEMU").to_string();
        assert!(e.contains("could not start /no/such/qemu"), "{e}");
    }
}
