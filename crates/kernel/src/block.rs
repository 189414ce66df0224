//! Glue: the disk (`block_device`), its interrupt and its waiting, and the handle apps get
//! through the facade's `stardust::block`.
//!
//! - At boot ([`init`], after the network's), the first virtio-blk device the platform found
//!   (`Platform::devices`: PCI on `q35`, virtio-mmio on `microvm`; the universal image finds it
//!   the same way when it runs on a KVM-class monitor) is brought up, logged (`block: virtio-blk
//!   at <where>: <K> KiB (<blocks> blocks of <size> bytes), read-write|read-only, flush|no flush,
//!   interrupt N`), and its interrupt registered. Without one: `block: no disk`, and
//!   [`disk`] says `None`.
//! - With `block_device = "blkfront"` (platform xen), the disk is the guest's first vbd
//!   (`device/vbd/N` in XenStore, the lowest N): blkfront connects to its backend, and its event
//!   channel is the interrupt line (`block: blkfront device/vbd/N: ...`, the same line).
//! - The driver is used synchronously through [`blockdev::Blocking`], behind one lock: a
//!   blocking mutex whose waiters sleep with a thread scheduler, a spin lock otherwise (one
//!   thread). The interrupt handler never takes it.
//! - [`IrqWait`] is the `Wait` that parks the calling thread until the disk interrupts (a latch:
//!   the handler sets a flag and wakes; oneshot as `platform::irq` says: the line stays masked
//!   until the driver acknowledged the device and [`IrqWait`] unmasks it). With `scheduler =
//!   "none"` (and under the async executor, whose task the call then blocks) the caller idles
//!   (`Platform::idle`, the timer armed for the give-up deadline) until the interrupt.
//! - A device that does not answer for [`WAIT_LIMIT_NS`] fails the call with
//!   `Error::Timeout`. Without an interrupt line the waiter polls every millisecond.

use crate::select::{SelectedBlockDevice, SelectedPlatform};
#[cfg(feature = "disk-virtio")]
use crate::virtio::{CANDIDATES, Where, transport};
use alloc::boxed::Box;
use blockdev::{BlockDevice, BlockIo, Blocking, Error, Info, Stats, Wait};
use core::fmt::Display;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use platform::Platform;
#[cfg(feature = "disk-virtio")]
use platform::device::{Device, VIRTIO_BLOCK};
use platform::irq::Irq;

/// How long a call waits for the disk's interrupt before it gives up (ns).
pub const WAIT_LIMIT_NS: u64 = 30_000_000_000;
/// Without an interrupt line, how often the waiter looks (ns).
const POLL_NS: u64 = 1_000_000;

/// The disk's interrupt line (`u32::MAX`: none).
static LINE: AtomicU32 = AtomicU32::new(u32::MAX);
/// The disk interrupted since the waiter last looked.
static PENDING: AtomicBool = AtomicBool::new(false);
/// The disk's interrupts so far.
static IRQS: AtomicU64 = AtomicU64::new(0);
/// What the disk is (set once, by [`init`]).
static INFO: spin::Once<Info> = spin::Once::new();

#[cfg(feature = "threads")]
type Lock<T> = crate::sync::Mutex<T>;
#[cfg(not(feature = "threads"))]
type Lock<T> = spin::Mutex<T>;

type Driver = Blocking<SelectedBlockDevice, IrqWait>;

/// The one disk (none until [`init`] found one). Boxed: `None` of the box is all zeros, in
/// `.bss`.
static DISK: Lock<Option<Box<Driver>>> = Lock::new(None);

fn now() -> u64 {
    SelectedPlatform::now_ns().unwrap_or(0)
}

/// The disk's interrupt handler (the line is masked until the waiter unmasks it).
fn disk_interrupt(_data: usize) {
    IRQS.fetch_add(1, Ordering::Relaxed);
    PENDING.store(true, Ordering::Release);
    park::wake();
}

/// On a XenStore event (blkfront's backend may have gone): the waiter looks at the device,
/// which answers what it can (see blkfront's docs) rather than leaving the call to its time
/// limit.
#[cfg(feature = "disk-blkfront")]
fn store_event() {
    PENDING.store(true, Ordering::Release);
    park::wake();
    #[cfg(feature = "threads")]
    backend_watch::wake();
}

/// blkfront's look at its backend when no call is in progress: a small thread asks the device
/// (`poll_interrupt`) on every XenStore event, so that a backend that goes away while the disk
/// is idle (`xl block-detach`) is answered at once and the detach finishes. Without threads,
/// the next call sees it.
#[cfg(all(feature = "disk-blkfront", feature = "threads"))]
mod backend_watch {
    use crate::threads::{Kernel, WaitQueue};
    use core::sync::atomic::{AtomicBool, Ordering};

    static QUEUE: WaitQueue<Kernel> = WaitQueue::new();
    static EVENT: AtomicBool = AtomicBool::new(false);

    /// From the XenStore event's handler.
    pub fn wake() {
        EVENT.store(true, Ordering::Release);
        QUEUE.notify_all();
    }

    /// Starts the thread (once the disk is in place).
    pub fn start() {
        let spawned = crate::threads::spawn(
            Some(alloc::string::String::from("vbd-watch")),
            16 * 1024,
            alloc::boxed::Box::new(|| {
                loop {
                    QUEUE.wait_if(|| !EVENT.load(Ordering::Acquire), None);
                    EVENT.store(false, Ordering::Release);
                    super::with(|d| {
                        blockdev::BlockDevice::poll_interrupt(d.device_mut());
                    });
                }
            }),
        );
        if spawned.is_err() {
            log::warn!("block: no vbd-watch thread: a detach is seen at the next call");
        }
    }
}

#[cfg(feature = "threads")]
mod park {
    //! The calling thread sleeps on a wait queue the handler wakes.
    use super::PENDING;
    use crate::threads::{Kernel, WaitQueue};
    use core::sync::atomic::Ordering;

    static WAITERS: WaitQueue<Kernel> = WaitQueue::new();

    pub fn wake() {
        WAITERS.notify_all();
    }

    /// Until the interrupt (checked under the queue's lock: no lost wake-up) or `deadline`.
    pub fn until(deadline: u64) {
        WAITERS.wait_if(|| !PENDING.load(Ordering::Acquire), Some(deadline));
    }

    pub fn sleep(deadline: u64) {
        crate::threads::sleep_until(deadline);
    }
}

#[cfg(not(feature = "threads"))]
mod park {
    //! No threads: the caller idles until the interrupt or the timer.
    use super::PENDING;
    use crate::select::SelectedPlatform;
    use core::sync::atomic::Ordering;
    use platform::Platform;

    pub fn wake() {}

    /// Until an interrupt (the disk's, the timer's for `deadline`, any other) comes.
    pub fn until(deadline: u64) {
        let enabled = SelectedPlatform::interrupts_disable();
        if !PENDING.load(Ordering::Acquire) {
            // Interrupts are masked from the check on, and `idle` unmasks them as it halts:
            // the disk's interrupt cannot slip in between.
            let _ = SelectedPlatform::set_timer(deadline);
            SelectedPlatform::idle();
        }
        SelectedPlatform::interrupts_restore(enabled);
    }

    pub fn sleep(deadline: u64) {
        let enabled = SelectedPlatform::interrupts_disable();
        if SelectedPlatform::set_timer(deadline) {
            SelectedPlatform::idle();
        }
        SelectedPlatform::interrupts_restore(enabled);
    }
}

/// The `Wait` of the kernel's disk: a latch on its interrupt (see the module docs).
#[derive(Debug, Default)]
pub struct IrqWait {
    /// The interrupt this waiter consumed, whose line is still masked.
    fired: bool,
}

impl Wait for IrqWait {
    fn wait(&mut self) -> bool {
        let line = LINE.load(Ordering::Acquire);
        if line == u32::MAX {
            park::sleep(now().saturating_add(POLL_NS));
            return true;
        }
        let deadline = now().saturating_add(WAIT_LIMIT_NS);
        loop {
            if PENDING.swap(false, Ordering::AcqRel) {
                self.fired = true;
                return true;
            }
            if now() >= deadline {
                log::warn!(
                    "block: no answer from the disk in {} s",
                    WAIT_LIMIT_NS / 1_000_000_000
                );
                return false;
            }
            park::until(deadline);
        }
    }

    fn acknowledged(&mut self) {
        let line = LINE.load(Ordering::Acquire);
        if core::mem::take(&mut self.fired) && line != u32::MAX {
            // The driver acknowledged the device (`poll_interrupt`): the line may fire again.
            SelectedPlatform::irq_unmask(Irq(line));
        }
    }
}

/// A disk a probe brought up.
struct Found {
    device: SelectedBlockDevice,
    /// What and where it is, for the log line.
    name: Name,
    /// Its interrupt line (on Xen: its event channel).
    irq: Option<Irq>,
}

/// The profile's disk type from virtio-blk's.
#[cfg(feature = "disk-virtio")]
fn wrap_virtio(d: crate::select::VirtioBlockDevice) -> SelectedBlockDevice {
    #[cfg(feature = "block_device-auto")]
    return blockdev::Either::A(d);
    #[cfg(not(feature = "block_device-auto"))]
    d
}

/// The profile's disk type from blkfront's.
#[cfg(feature = "disk-blkfront")]
fn wrap_blkfront(d: crate::select::XenBlockDevice) -> SelectedBlockDevice {
    #[cfg(feature = "block_device-auto")]
    return blockdev::Either::B(d);
    #[cfg(not(feature = "block_device-auto"))]
    d
}

/// A disk's driver and place, as the boot log names it.
enum Name {
    /// virtio-blk at a PCI or virtio-mmio address.
    #[cfg(feature = "disk-virtio")]
    Virtio(Where),
    /// blkfront on a vbd node (`device/vbd/51712`).
    #[cfg(feature = "disk-blkfront")]
    Blkfront(xen_services::frontend::Path),
}

impl Display for Name {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            #[cfg(feature = "disk-virtio")]
            Name::Virtio(at) => write!(f, "virtio-blk at {at}"),
            #[cfg(feature = "disk-blkfront")]
            Name::Blkfront(node) => write!(f, "blkfront {}", node.as_str()),
        }
    }
}

/// The profile's disk driver on the first disk it finds.
#[cfg(feature = "block_device-virtio")]
fn probe() -> Option<Found> {
    probe_virtio()
}

/// The profile's disk driver on the first disk it finds.
#[cfg(feature = "block_device-blkfront")]
fn probe() -> Option<Found> {
    probe_blkfront()
}

/// The universal image's disk: blkfront's vbd on Xen, virtio-blk's on a KVM-class monitor.
#[cfg(feature = "block_device-auto")]
fn probe() -> Option<Found> {
    if crate::select::on_xen() {
        probe_blkfront()
    } else {
        probe_virtio()
    }
}

/// The first virtio-blk device the platform found that comes up (logging those that do not,
/// or that there is none).
#[cfg(feature = "disk-virtio")]
fn probe_virtio() -> Option<Found> {
    let mut found: [Option<Device>; CANDIDATES] = [None; CANDIDATES];
    let mut n = 0;
    SelectedPlatform::devices(&mut |d| {
        if d.virtio_type == Some(VIRTIO_BLOCK) && n < CANDIDATES {
            found[n] = Some(*d);
            n += 1;
        }
    });
    for d in found.iter().flatten() {
        let at = Where(d.bus);
        // One log line for either failure (the transport's, the driver's).
        let device = match transport(d) {
            Ok(t) => crate::select::VirtioBlockDevice::new(t)
                .map(wrap_virtio)
                .map_err(|e| Box::new(e) as Box<dyn Display>),
            Err(e) => Err(Box::new(e) as Box<dyn Display>),
        };
        match device {
            Ok(device) => {
                return Some(Found {
                    device,
                    name: Name::Virtio(at),
                    irq: d.irq,
                });
            }
            Err(e) => log::warn!("block: virtio-blk at {at}: {e}; skipped"),
        }
    }
    if n == 0 {
        log::info!("block: no disk");
    } else {
        log::warn!("block: no disk came up ({n} found)");
    }
    None
}

/// blkfront on the guest's first vbd (`device/vbd/N`, the lowest N the toolstack wrote), its
/// event channel as the interrupt line; or why there is none.
#[cfg(feature = "disk-blkfront")]
fn probe_blkfront() -> Option<Found> {
    let node = if crate::select::on_xen() {
        crate::xen_host::first_device("vbd")
    } else {
        None
    };
    let Some(node) = node else {
        log::info!("block: no disk");
        return None;
    };
    match crate::select::XenBlockDevice::connect(crate::xen_host::KernelXenHost, node.as_str()) {
        Ok(device) => {
            let irq = Some(Irq(device.event_channel()));
            // blkfront watches its backend's state; a waiter wakes to look when XenStore speaks
            platform_xen::xenstore::on_event(store_event);
            Some(Found {
                device: wrap_blkfront(device),
                name: Name::Blkfront(node),
                irq,
            })
        }
        Err(e) => {
            log::warn!("block: blkfront {}: {e}; skipped", node.as_str());
            log::warn!("block: no disk came up (1 found)");
            None
        }
    }
}

/// Brings up the first disk the platform found, logging it (or why there is none), and
/// registers its interrupt.
// Not inlined into the boot function: its frame (smoltcp's and the drivers' structures built
// before they move to their statics) is released before `main` runs on the same stack.
#[inline(never)]
pub fn init() {
    let Some(Found {
        device,
        name,
        irq: line,
    }) = probe()
    else {
        return;
    };
    let info = device.info();
    let registered = line.map(|irq| {
        LINE.store(irq.0, Ordering::Release);
        crate::boot::irq_register(irq, SelectedPlatform::current_cpu(), disk_interrupt, 0)
    });
    let irq = match (registered, line) {
        (Some(Ok(())), Some(irq)) => Some(irq.0),
        (Some(Err(e)), _) => {
            log::warn!("block: {e}: polling every {} ms", POLL_NS / 1_000_000);
            LINE.store(u32::MAX, Ordering::Release);
            None
        }
        _ => None,
    };
    log::info!(
        "block: {name}: {} KiB ({} blocks of {} bytes), {}, {}, {}",
        info.bytes() / 1024,
        info.blocks,
        info.block_size,
        if info.read_only {
            "read-only"
        } else {
            "read-write"
        },
        if info.flush {
            "flush"
        } else {
            "no flush (writes refused)"
        },
        Interrupt(irq),
    );
    INFO.call_once(|| info);
    // Set once (at boot): forgetting the `None` it replaces brings no drop of a driver
    // into the image.
    core::mem::forget(
        DISK.lock()
            .replace(Box::new(Blocking::new(device, IrqWait::default()))),
    );
    #[cfg(all(feature = "disk-blkfront", feature = "threads"))]
    if matches!(name, Name::Blkfront(_)) {
        backend_watch::start();
    }
}

/// The interrupt part of the log line.
struct Interrupt(Option<u32>);

impl core::fmt::Display for Interrupt {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Some(line) => write!(f, "interrupt {line}"),
            None => f.write_str("no interrupt (polled)"),
        }
    }
}

/// The disk found at boot, or `None` (no disk driver found one).
pub fn disk() -> Option<Disk> {
    INFO.get().map(|_| Disk(()))
}

/// A handle on the disk: synchronous [`BlockIo`] (reads, writes and flushes of whole blocks,
/// long ranges split into requests that are all in flight at once). Copies share the one disk;
/// calls from several threads take turns (one lock).
#[derive(Debug, Clone, Copy)]
pub struct Disk(());

fn with<R>(f: impl FnOnce(&mut Driver) -> R) -> R {
    let mut guard = DISK.lock();
    let driver = guard
        .as_mut()
        .expect("a Disk exists only once the disk does");
    f(driver)
}

impl Disk {
    /// The driver's counters.
    pub fn stats(&self) -> Stats {
        with(|d| d.device().stats())
    }

    /// The disk's interrupts so far.
    pub fn interrupts(&self) -> u64 {
        IRQS.load(Ordering::Relaxed)
    }
}

impl BlockIo for Disk {
    fn info(&self) -> Info {
        *INFO.get().expect("a Disk exists only once the disk does")
    }

    fn read(&mut self, block: u64, buf: &mut [u8]) -> Result<(), Error> {
        with(|d| d.read(block, buf))
    }

    fn write(&mut self, block: u64, buf: &[u8]) -> Result<(), Error> {
        with(|d| d.write(block, buf))
    }

    fn flush(&mut self) -> Result<(), Error> {
        with(|d| d.flush())
    }
}
