//! No signal to the xtask process leaves a QEMU behind (xtask/xenlab/src/child.rs): SIGTERM, SIGINT and
//! SIGHUP sent to xtask alone (not to its process group) make it kill its QEMU, say so, and end
//! by that same signal; SIGKILL ends it at once, and the kernel kills QEMU (`PR_SET_PDEATHSIG`).
//! Each test starts `cargo xtask run` on a guest that idles for 10 minutes (or, with `--gdb`,
//! stays halted), finds its QEMU among xtask's children in /proc, signals xtask, then checks
//! that this QEMU is gone. The same for the Xen lab's QEMU when the lab is built.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use stardust_tests::{image, workspace};
use std::os::unix::process::ExitStatusExt;

/// How long a QEMU may take to go, far beyond what the kernel needs (a missing kill fails the
/// test after this instead of hanging it).
const GONE_WITHIN: Duration = Duration::from_secs(60);

/// `/proc/PID/stat`: (ppid, state, start time in clock ticks, comm).
fn stat(pid: u32) -> Option<(u32, char, u64, String)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (head, rest) = text.rsplit_once(')')?;
    let comm = head.split_once('(')?.1.to_string();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the comm: state(3) ppid(4) ... starttime(22), numbered from 1 as in proc(5).
    let state = fields.first()?.chars().next()?;
    let ppid = fields.get(1)?.parse().ok()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((ppid, state, start, comm))
}

/// A QEMU process: its id and start time (so that a reused id is not taken for it).
#[derive(Debug, Clone, Copy)]
struct Qemu {
    pid: u32,
    start: u64,
}

impl Qemu {
    /// Still running (a zombie that nobody reaped has ended).
    fn alive(self) -> bool {
        matches!(stat(self.pid), Some((_, state, start, _))
            if start == self.start && state != 'Z' && state != 'X')
    }
}

/// Waits for the QEMU that `xtask` starts with `marker` in its command line (not, say, a
/// `qemu-system-x86_64 --version`); panics (with xtask's stderr) if xtask ends first.
fn qemu_of(xtask: &mut Child, stderr: &Path, marker: &str) -> Qemu {
    let parent = xtask.id();
    // Long enough for cargo to build xtask first on a loaded machine.
    let deadline = Instant::now() + Duration::from_secs(600);
    while Instant::now() < deadline {
        let found = std::fs::read_dir("/proc")
            .expect("/proc")
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .find_map(|pid| match stat(pid) {
                Some((ppid, _, start, comm))
                    if ppid == parent
                        && comm.starts_with("qemu")
                        && std::fs::read(format!("/proc/{pid}/cmdline"))
                            .is_ok_and(|c| String::from_utf8_lossy(&c).contains(marker)) =>
                {
                    Some(Qemu { pid, start })
                }
                _ => None,
            });
        if let Some(q) = found {
            return q;
        }
        if let Ok(Some(status)) = xtask.try_wait() {
            panic!(
                "xtask ended ({status}) before it started QEMU:\n{}",
                std::fs::read_to_string(stderr).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = xtask.kill();
    panic!("xtask started no QEMU");
}

/// The image the KVM tests boot: timeprobe, which `idle MS` keeps asleep.
fn timeprobe() -> PathBuf {
    image("timeprobe", "default").1.elf
}

/// Starts `cargo xtask ARGS` (cargo execs xtask in its own process), stderr to a file.
fn start_xtask(args: &[&str], name: &str) -> (Child, PathBuf) {
    let err = std::env::temp_dir().join(format!(
        "stardust-signals-{}-{name}.stderr",
        std::process::id()
    ));
    let file = std::fs::File::create(&err).expect("a stderr file");
    let child = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(&workspace().root)
        .args(["run", "--quiet", "--package", "xtask", "--"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .expect("cargo runs");
    (child, err)
}

/// Sends `sig` to xtask alone once its QEMU runs; checks how xtask ended, what it said, and
/// that the QEMU (the one with `marker` in its command line) is gone. Returns xtask's process id.
fn signal_leaves_no_qemu(
    args: &[&str],
    marker: &str,
    name: &str,
    sig: libc::c_int,
    sig_name: &str,
) -> u32 {
    let (mut xtask, err) = start_xtask(args, name);
    let pid = xtask.id();
    let qemu = qemu_of(&mut xtask, &err, marker);
    // SAFETY: a plain syscall to our own child (its process alone, not its group).
    assert_eq!(unsafe { libc::kill(xtask.id() as libc::pid_t, sig) }, 0);
    let status: ExitStatus = xtask.wait().expect("xtask ends");
    let deadline = Instant::now() + GONE_WITHIN;
    while qemu.alive() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let stderr = std::fs::read_to_string(&err).unwrap_or_default();
    let _ = std::fs::remove_file(&err);
    if qemu.alive() {
        // SAFETY: a plain syscall: clean up what the test found left behind.
        unsafe { libc::kill(qemu.pid as libc::pid_t, libc::SIGKILL) };
        panic!(
            "{name}: QEMU (pid {}) still ran after {sig_name} to xtask ({status}):\n{stderr}",
            qemu.pid
        );
    }
    // Ended by that same signal: a shell shows 128 + N, and no exit status is confused with it.
    assert_eq!(status.signal(), Some(sig), "{name}: {status}\n{stderr}");
    if sig != libc::SIGKILL {
        let said = format!("xtask: stopped by {sig_name}; killed ");
        assert!(
            stderr.contains(&said) && stderr.contains(&format!("(pid {})", qemu.pid)),
            "{name}: no {said:?} line naming pid {}:\n{stderr}",
            qemu.pid
        );
    }
    pid
}

/// `run --image timeprobe.elf -- idle 600000`: a guest that sleeps for 10 minutes.
fn idle_run(sig: libc::c_int, sig_name: &str) {
    let elf = timeprobe();
    let elf = elf.to_str().expect("a UTF-8 path");
    let args = [
        "run",
        "--image",
        elf,
        "--timeout",
        "900",
        "--",
        "idle",
        "600000",
    ];
    signal_leaves_no_qemu(&args, elf, &format!("run-{sig_name}"), sig, sig_name);
}

/// `run --image timeprobe.elf --gdb`: halted until a debugger continues it, without a time limit.
fn gdb_run(sig: libc::c_int, sig_name: &str) {
    let elf = timeprobe();
    let elf = elf.to_str().expect("a UTF-8 path");
    let args = ["run", "--image", elf, "--gdb"];
    signal_leaves_no_qemu(&args, elf, &format!("gdb-{sig_name}"), sig, sig_name);
}

#[test]
fn sigterm_to_xtask_kills_its_qemu() {
    idle_run(libc::SIGTERM, "SIGTERM");
}

#[test]
fn sigint_to_xtask_kills_its_qemu() {
    idle_run(libc::SIGINT, "SIGINT");
}

#[test]
fn sighup_to_xtask_kills_its_qemu() {
    idle_run(libc::SIGHUP, "SIGHUP");
}

#[test]
fn sigkill_to_xtask_kills_its_qemu() {
    idle_run(libc::SIGKILL, "SIGKILL");
}

#[test]
fn signals_to_xtask_kill_a_halted_gdb_qemu() {
    for (sig, name) in [
        (libc::SIGTERM, "SIGTERM"),
        (libc::SIGINT, "SIGINT"),
        (libc::SIGHUP, "SIGHUP"),
        (libc::SIGKILL, "SIGKILL"),
    ] {
        gdb_run(sig, name);
    }
}

/// The Xen lab's QEMU (Xen + dom0; the guests run inside it), with the reference guest that
/// hangs: SIGTERM and SIGKILL while the lab boots.
#[test]
fn signals_to_xtask_kill_the_xen_labs_qemu() {
    let lab = xtask::xenlab::Lab::from_env();
    if let Err(why) = lab.availability() {
        println!("skipped: signals_to_xtask_kill_the_xen_labs_qemu: {why}");
        return;
    }
    let args = ["xen-lab", "run", "--ref", "pvhang", "--timeout", "600"];
    // The lab's QEMU (xtask also runs `qemu-system-x86_64 --version` before it).
    let lab_qemu = "payload.img";
    let xtask = signal_leaves_no_qemu(&args, lab_qemu, "lab-SIGTERM", libc::SIGTERM, "SIGTERM");
    // Stopped by SIGTERM, xtask removed its run directory (with the payload disk) too.
    assert_eq!(run_dirs(&lab.dir, xtask), Vec::<String>::new());
    let killed = signal_leaves_no_qemu(&args, lab_qemu, "lab-SIGKILL", libc::SIGKILL, "SIGKILL");
    // SIGKILL leaves it; the next lab run removes it.
    assert_eq!(run_dirs(&lab.dir, killed).len(), 1, "{}", lab.dir.display());
    signal_leaves_no_qemu(&args, lab_qemu, "lab-SIGINT", libc::SIGINT, "SIGINT");
    assert_eq!(run_dirs(&lab.dir, killed), Vec::<String>::new());
}

/// The lab's run directories (`run-<pid>-<nanos>`) of the xtask with process id `pid`.
fn run_dirs(lab: &Path, pid: u32) -> Vec<String> {
    std::fs::read_dir(lab)
        .expect("the lab directory")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(&format!("run-{pid}-")))
        .collect()
}
