//! TAP networking in a network namespace that xtask creates and removes (`run --net tap`, the
//! network bench).
//!
//! [`NetNs::create`] makes the namespace `stardust-<pid>-<n>` (`ip netns add`), brings its
//! loopback up and adds a TAP device [`TAP_NAME`] with [`HOST_CIDR`] (10.0.0.1/24), up. QEMU
//! runs inside it (`ip netns exec NS qemu-system-x86_64 ... -netdev tap,ifname=tap0,...`, see
//! [`TapNic`]), and so do the clients ([`NetNs::command`] for programs such as `wrk`,
//! [`NetNs::enter`] for a thread of xtask itself: `setns(2)` moves only the calling thread).
//! The guest is [`GUEST_IP`] (10.0.0.2/24, gateway 10.0.0.1: [`guest_kargs`]). Nothing of it is
//! visible from the host's own network: no route, no bridge, no address outside the namespace.
//!
//! The namespace is removed when xtask ends, on every path:
//! - normal end and errors: [`NetNs`] removes it when dropped;
//! - SIGTERM, SIGINT, SIGHUP: the signal thread ([`crate::child`]) kills QEMU and runs the
//!   removal registered with [`crate::child::run_if_stopped`];
//! - SIGKILL (nothing runs): the name carries the pid, so the next [`NetNs::create`] removes every
//!   `stardust-<pid>-<n>` whose process is gone ([`remove_stale`]).
//!
//! Needs root (or CAP_NET_ADMIN and CAP_SYS_ADMIN) and `ip` from iproute2.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result, bail};

/// What every namespace name starts with.
pub const PREFIX: &str = "stardust-";
/// The TAP device's name inside the namespace.
pub const TAP_NAME: &str = "tap0";
/// The host side's address (the TAP device's), with its prefix length.
pub const HOST_CIDR: &str = "10.0.0.1/24";
/// The host side's address.
pub const HOST_IP: &str = "10.0.0.1";
/// The guest's address.
pub const GUEST_IP: &str = "10.0.0.2";
/// The guest's address with its prefix length.
pub const GUEST_CIDR: &str = "10.0.0.2/24";
/// Where `ip netns` keeps its namespaces (bind mounts).
pub const NETNS_DIR: &str = "/run/netns";

/// The kernel options that give a Stardust guest its address on the TAP network (option names
/// fixed by NET-DESIGN.md: `ip=`, `gw=`).
pub fn guest_kargs() -> String {
    format!("ip={GUEST_CIDR} gw={HOST_IP}")
}

/// The namespace name for process `pid`, its `n`-th.
pub fn name_for(pid: u32, n: u32) -> String {
    format!("{PREFIX}{pid}-{n}")
}

/// The pid in a name made by [`name_for`], or `None` for any other name.
pub fn pid_of(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?;
    let (pid, n) = rest.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(pid) || !digits(n) {
        return None;
    }
    pid.parse().ok().filter(|p| *p > 0)
}

/// The names among `names` that are ours and whose process is not alive (by `alive(pid)`).
pub fn stale(names: &[String], alive: impl Fn(u32) -> bool) -> Vec<&str> {
    names
        .iter()
        .filter_map(|n| pid_of(n).filter(|p| !alive(*p)).map(|_| n.as_str()))
        .collect()
}

/// Whether process `pid` exists.
pub fn process_alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

/// The names of the namespaces `ip netns` knows.
pub fn list() -> Vec<String> {
    std::fs::read_dir(NETNS_DIR)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Removes the namespaces of xtask processes that are gone (killed by SIGKILL, say); returns
/// their names.
pub fn remove_stale() -> Vec<String> {
    let names = list();
    let gone: Vec<String> = stale(&names, process_alive)
        .into_iter()
        .map(str::to_string)
        .collect();
    for n in &gone {
        delete(n);
    }
    gone
}

/// `ip netns delete NAME`, quietly (the signal path and `Drop` call it; nothing to report to).
fn delete(name: &str) {
    let _ = Command::new("ip")
        .args(["netns", "delete", name])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("could not run `ip` (install iproute2: `cargo xtask setup`)")?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Why TAP networking cannot be set up here, or `None`.
pub fn unavailable() -> Option<String> {
    if !crate::child::is_root() {
        return Some("TAP networking needs root (ip netns, ip tuntap)".into());
    }
    if crate::child::find_in_path("ip").is_none() {
        return Some("`ip` (iproute2) is not installed: run `cargo xtask setup`".into());
    }
    if !Path::new("/dev/net/tun").exists() {
        return Some("/dev/net/tun does not exist (no TUN/TAP support)".into());
    }
    None
}

/// The NIC of a QEMU line on a TAP device in a namespace: QEMU runs inside `netns`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapNic {
    /// The namespace QEMU runs in.
    pub netns: String,
    /// The TAP device (in that namespace).
    pub ifname: String,
}

impl TapNic {
    /// QEMU's `-netdev`/`-device` arguments: virtio-net on PCI (q35) or on virtio-mmio
    /// (`microvm`: `virtio-net-device`). No vhost: the same path for every guest.
    pub fn qemu_args(&self, machine: crate::qemu::Machine) -> Vec<String> {
        let mut a = vec![
            "-netdev".into(),
            format!(
                "tap,id=n0,ifname={},script=no,downscript=no,vhost=off",
                self.ifname
            ),
        ];
        // The same device as on user networking (MAC, modern virtio).
        a.extend(crate::net::device_args(
            machine,
            "n0",
            crate::net::GUEST_MAC,
        ));
        a
    }

    /// What runs `program` inside the namespace: `ip netns exec NS program`.
    pub fn wrap(&self, program: &Path) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.netns]).arg(program);
        cmd
    }
}

/// A network namespace with a TAP device, removed when dropped.
#[derive(Debug)]
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Removes stale namespaces of dead xtask processes, then creates a fresh one with its TAP
    /// device up at [`HOST_CIDR`] and its loopback up.
    pub fn create() -> Result<NetNs> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        if let Some(why) = unavailable() {
            bail!("{why}");
        }
        for gone in remove_stale() {
            eprintln!("xtask: removed the stale network namespace {gone} (its xtask is gone)");
        }
        let name = name_for(std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        // Registered first: a signal during the set-up still removes it.
        crate::child::run_if_stopped(&name, delete);
        let ns = NetNs { name };
        ip(&["netns", "add", &ns.name])?;
        ip(&["-n", &ns.name, "link", "set", "lo", "up"])?;
        ip(&[
            "-n", &ns.name, "tuntap", "add", "dev", TAP_NAME, "mode", "tap",
        ])?;
        ip(&["-n", &ns.name, "addr", "add", HOST_CIDR, "dev", TAP_NAME])?;
        ip(&["-n", &ns.name, "link", "set", TAP_NAME, "up"])?;
        Ok(ns)
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The NIC QEMU gets in it.
    pub fn nic(&self) -> TapNic {
        TapNic {
            netns: self.name.clone(),
            ifname: TAP_NAME.into(),
        }
    }

    /// `program` to run inside the namespace (`ip netns exec NS program`).
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Moves the calling thread into the namespace (`setns(2)`: only this thread; sockets it
    /// opens afterwards live there). For a thread of its own, spawned for that.
    pub fn enter(&self) -> Result<()> {
        let path = Path::new(NETNS_DIR).join(&self.name);
        let file =
            std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        use std::os::fd::AsRawFd;
        // SAFETY: a plain syscall on a file descriptor we own for the call's duration.
        let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        if r != 0 {
            bail!(
                "setns into {}: {}",
                self.name,
                std::io::Error::last_os_error()
            );
        }
        Ok(())
    }

    /// Whether the namespace still exists.
    pub fn exists(&self) -> bool {
        Path::new(NETNS_DIR).join(&self.name).exists()
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        delete(&self.name);
        crate::child::forget_stop_hook(&self.name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_pid() {
        assert_eq!(name_for(1234, 0), "stardust-1234-0");
        assert_eq!(pid_of("stardust-1234-0"), Some(1234));
        assert_eq!(pid_of(&name_for(7, 12)), Some(7));
        for other in [
            "stardust-",
            "stardust-12",
            "stardust-x-1",
            "stardust-12-",
            "stardust-12-1a",
            "stardust-0-1",
            "other-12-1",
            "stardust-12-1-2",
        ] {
            assert_eq!(pid_of(other), None, "{other}");
        }
    }

    #[test]
    fn only_our_namespaces_of_dead_processes_are_stale() {
        let names: Vec<String> = [
            "stardust-10-0",
            "stardust-11-3",
            "stardust-10-1",
            "mine",
            "stardust-lab",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let alive = |pid: u32| pid == 11;
        assert_eq!(stale(&names, alive), ["stardust-10-0", "stardust-10-1"]);
        assert!(stale(&names, |_| true).is_empty());
        assert!(process_alive(std::process::id()));
    }

    #[test]
    fn qemu_nic_arguments() {
        let nic = TapNic {
            netns: "stardust-1-0".into(),
            ifname: "tap0".into(),
        };
        assert_eq!(
            nic.qemu_args(crate::qemu::Machine::Q35).join(" "),
            "-netdev tap,id=n0,ifname=tap0,script=no,downscript=no,vhost=off \
             -device virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56,disable-legacy=on,romfile="
        );
        let microvm = nic.qemu_args(crate::qemu::Machine::Microvm);
        assert!(microvm[5].starts_with("virtio-net-device,"), "{microvm:?}");
        assert_eq!(guest_kargs(), "ip=10.0.0.2/24 gw=10.0.0.1");
    }
}
