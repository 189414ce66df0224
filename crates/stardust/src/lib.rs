//! Stardust for applications: everything an app may use, and nothing else of the kernel.
//!
//! An app is an ordinary `#![no_std]`, `#![no_main]` binary crate that depends on this crate
//! and marks its entry with `#[stardust::main]`:
//!
//! ```ignore
//! #![no_std]
//! #![no_main]
//!
//! #[stardust::main]
//! fn main() {
//!     stardust::println!("Hello from Stardust!");
//!     let args: stardust::alloc::vec::Vec<&str> = stardust::args().collect();
//!     log::info!("{} arguments", args.len());
//! }
//! ```
//!
//! The main function may return `()`, [`ExitCode`], a `u8` status, or `Result<(), E>` with
//! `E: Debug` (an error is printed and gives status 1). Build and boot it with
//! `cargo xtask run APP`.
//!
//! # Cargo features
//! One per profile slot value (`platform-kvm`, `platform-xen`, `platform-universal` (one image for
//! KVM-class monitors and Xen PVH), `console-serial`, `console-debugcon`, `console-xen`,
//! `console-auto`, `allocator-none`, `allocator-bump`, `allocator-buddy`,
//! `allocator-talc`, `scheduler-none`, `scheduler-coop`, `scheduler-preempt`, `scheduler-async`,
//! `net_device-*`, `block_device-*`, `filesystem-none`, `filesystem-sdfs` (which brings [`fs`]));
//! xtask enables exactly one per slot from the profile. `xen_guest_pvh` (not a slot: the
//! setting `xen_guest = "pvh"`) makes a `platform-xen` image a PVH guest. With `allocator-none` there is no heap and [`alloc`] must not be used.
#![no_std]

#[cfg(not(feature = "allocator-none"))]
pub extern crate alloc;
pub use heap::{FRAME_SIZE, FrameAllocator, Frames, HeapStats};
pub use log;
pub use stardust_macros::main;

/// The application's command-line arguments, each as `cargo xtask run APP -- ARGS...` was given
/// it (the kernel's options and the monitor's parameters are taken out; the encoding is in
/// README.md, "Kernel command line").
pub fn args() -> impl Iterator<Item = &'static str> + Clone {
    kernel::args()
}

/// Ends the program now with `code` as the exit status (0 = success). Any status 0-255 reaches
/// the caller of `cargo xtask run` unchanged, except the reserved ones (101-103: the kernel's,
/// 124-127: xtask's; README "Exit statuses"): exiting with one of those panics (status 101).
#[track_caller]
pub fn exit(code: impl Into<ExitCode>) -> ! {
    kernel::exit(code.into().0)
}

/// Heap statistics (bytes in use, peak, allocation and free counts, footprint), or `None` when
/// the profile has no allocator.
pub fn heap_stats() -> Option<HeapStats> {
    kernel::heap_stats()
}

/// Profile settings for apps (`[settings]` of the profile, `--set`): `KV_MAX_KEYS`
/// (`kv_max_keys`) and `KV_MAX_FRAME` (`kv_max_frame`), the key-value server's bounds.
pub mod settings {
    pub use kernel::settings::*;
}

/// Xen services, in images built for Xen (`platform = "xen"`, PV or PVH).
#[cfg(feature = "platform-xen")]
pub mod xen {
    pub use kernel::xen::{grant, xenstore};
}

/// Threads (`scheduler = "coop"` or `"preempt"`).
#[cfg(any(feature = "scheduler-coop", feature = "scheduler-preempt"))]
pub mod thread;

/// Networking (a profile with a NIC driver: `net_device = "virtio"`): TCP and UDP sockets
/// shaped like `std::net`'s, over the kernel's network stack (smoltcp). Blocking calls block the
/// calling thread (a receive interrupt wakes it); with `scheduler = "none"` they poll and idle.
/// Streams implement `embedded_io::{Read, Write}`; every method of crate `net`'s stream
/// (`read`, `write_all`, `set_read_timeout`, `shutdown`, ...) is reachable on them.
///
/// With `scheduler = "async"` the calls are async instead, and the blocking ones do not exist
/// (one would stop the executor, and with it the kernel's `net` task that polls the stack):
/// [`TcpListener::accept_async`](net::TcpListener), `TcpStream::connect_async`,
/// `UdpSocket::{send_to_async, recv_from_async}`, and streams implement
/// `embedded_io_async::{Read, Write}` (here as [`AsyncRead`](net::AsyncRead) and
/// [`AsyncWrite`](net::AsyncWrite); `write_all` is `AsyncWrite`'s). A task waiting on a socket
/// sleeps until the poll that makes it ready; the non-blocking `try_*` calls work under every
/// scheduler.
///
/// The address is the profile's `net_ip` (and `net_gateway`), or the kernel command line's
/// `ip=ADDR/PREFIX` (`ip=dhcp`, with the setting `net_dhcp = true`) and `gw=ADDR`. Without a NIC
/// the image runs on, and every socket fails with [`net::Error::NoNetwork`].
///
/// `UdpSocket` is there for an app that asks for it, to keep it out of the others' images: the
/// feature `net_udp` of its dependency on `stardust` (apps/echo).
#[cfg(any(
    feature = "net_device-virtio",
    feature = "net_device-netfront",
    feature = "net_device-auto"
))]
pub mod net {
    pub use core::net::{Ipv4Addr, SocketAddrV4};
    #[cfg(feature = "net_udp")]
    pub use kernel::net::UdpSocket;
    #[cfg(feature = "scheduler-async")]
    pub use kernel::net::{AsyncRead, AsyncWrite, embedded_io_async};
    pub use kernel::net::{
        Error, GlueStats, TcpListener, TcpStream, glue_stats, is_up, stats, stats_text,
    };
}

/// The disk (a profile with a disk driver: `block_device = "virtio"` or `"blkfront"`): the one the kernel found
/// at boot, as a [`BlockIo`](block::BlockIo) of whole blocks (read, write, and flush, the
/// durability barrier: a write is durable once a flush after it returned). Calls block the
/// calling thread until the disk's interrupt (with `scheduler = "none"` they idle; under
/// `scheduler = "async"` they block the executor for the I/O). [`block::disk`] is `None`
/// without a disk. Writes to a disk that cannot flush are refused ([`block::Error::NoFlush`]),
/// as are writes to a read-only one ([`block::Error::ReadOnly`]).
#[cfg(any(
    feature = "block_device-virtio",
    feature = "block_device-blkfront",
    feature = "block_device-auto"
))]
pub mod block {
    pub use kernel::block::{Disk, WAIT_LIMIT_NS, disk};
    pub use kernel::blockdev::{BlockIo, Error, Info, SECTOR_SIZE, Stats};
}

#[cfg(feature = "filesystem-sdfs")]
pub mod fs;

/// Expands to the items of its first block when the image has a filesystem (a profile with
/// `filesystem` other than `none`: [`fs`] exists), to those of its `else` block otherwise, so that
/// an app compiles its file code only into images that have one (httpd's `/files/`):
///
/// ```ignore
/// stardust::if_filesystem! {
///     { mod files; use files::Files as Source; }
///     else { use http1::NoSource as Source; }
/// }
/// ```
#[cfg(feature = "filesystem-sdfs")]
#[macro_export]
macro_rules! if_filesystem {
    ({ $($yes:item)* } else { $($no:item)* }) => { $($yes)* };
}
/// See the other definition (this one: no filesystem).
#[cfg(not(feature = "filesystem-sdfs"))]
#[macro_export]
macro_rules! if_filesystem {
    ({ $($yes:item)* } else { $($no:item)* }) => { $($no)* };
}

/// Blocking synchronization between threads (`scheduler = "coop"` or `"preempt"`): [`Mutex`],
/// [`Condvar`], [`Semaphore`] and a bounded [`channel`]. Waiters are parked (the CPU runs other
/// threads or idles), never spinning.
///
/// [`Mutex`]: sync::Mutex
/// [`Condvar`]: sync::Condvar
/// [`Semaphore`]: sync::Semaphore
/// [`channel`]: sync::channel
#[cfg(any(feature = "scheduler-coop", feature = "scheduler-preempt"))]
pub mod sync {
    pub use kernel::sync::{
        Condvar, Mutex, MutexGuard, Receiver, RecvError, Semaphore, SendError, Sender, channel,
    };
}

/// Async tasks (`scheduler = "async"`): an executor of `Future`s whose wakers are driven by
/// timers and interrupts; the CPU idles when no task is ready. `#[stardust::main] async fn
/// main()` runs on it.
#[cfg(feature = "scheduler-async")]
pub mod task {
    use core::future::Future;
    use kernel::EXECUTOR;
    pub use kernel::sched_async::{Elapsed, ExecutorStats, JoinHandle, Sleep, yield_now};

    /// Async synchronization: [`Mutex`](sync::Mutex), [`Semaphore`](sync::Semaphore) and a
    /// bounded [`channel`](sync::channel), whose waiters are tasks, not threads.
    pub mod sync {
        pub use kernel::sched_async::sync::*;
    }

    type Platform = kernel::SelectedPlatform;

    /// Runs `future` (and the tasks it spawns) to completion on the executor.
    pub fn block_on<F: Future>(future: F) -> F::Output {
        EXECUTOR.block_on(future)
    }

    /// Spawns a task; await the handle for its output.
    pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        EXECUTOR.spawn(future)
    }

    /// Completes `ns` nanoseconds from now (never earlier).
    pub fn sleep(ns: u64) -> Sleep<Platform> {
        EXECUTOR.sleep(ns)
    }

    /// Completes at `deadline_ns` on the monotonic clock ([`crate::time::Instant::as_nanos`]).
    pub fn sleep_until(deadline_ns: u64) -> Sleep<Platform> {
        EXECUTOR.sleep_until(deadline_ns)
    }

    /// `future`'s output, or [`Elapsed`] if `ns` nanoseconds pass first.
    pub fn timeout<F: Future>(
        ns: u64,
        future: F,
    ) -> impl Future<Output = Result<F::Output, Elapsed>> {
        EXECUTOR.timeout(ns, future)
    }

    /// The executor's counters (polls, idles, tasks spawned).
    pub fn stats() -> ExecutorStats {
        EXECUTOR.stats()
    }
}

/// Time: the platform's monotonic clock ([`Instant`](time::Instant)), the wall clock, and
/// sleeping (with threads, only the calling thread sleeps).
pub mod time {
    pub use core::time::Duration;

    /// A point on the monotonic clock (nanoseconds from an arbitrary origin).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
    pub struct Instant(u64);

    impl Instant {
        /// Now (0 on a platform without a clock).
        pub fn now() -> Instant {
            Instant(kernel::now_ns().unwrap_or(0))
        }

        /// Nanoseconds on the platform clock.
        pub fn as_nanos(self) -> u64 {
            self.0
        }

        /// Time since `earlier` (zero if `earlier` is later).
        pub fn duration_since(self, earlier: Instant) -> Duration {
            Duration::from_nanos(self.0.saturating_sub(earlier.0))
        }

        /// Time since this instant.
        pub fn elapsed(self) -> Duration {
            Instant::now().duration_since(self)
        }
    }

    impl core::ops::Add<Duration> for Instant {
        type Output = Instant;
        fn add(self, d: Duration) -> Instant {
            Instant(
                self.0
                    .saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
            )
        }
    }

    impl core::ops::Sub for Instant {
        type Output = Duration;
        fn sub(self, earlier: Instant) -> Duration {
            self.duration_since(earlier)
        }
    }

    /// Monotonic nanoseconds (Xen: the PV clock; KVM: the calibrated TSC), or `None` without a
    /// clock.
    pub fn now_ns() -> Option<u64> {
        kernel::now_ns()
    }

    /// Wall-clock nanoseconds since the Unix epoch (UTC), where the platform has a wall clock
    /// (KVM: the CMOS RTC; Xen: the shared info's wall clock).
    pub fn wall_clock_ns() -> Option<u64> {
        kernel::wall_clock_ns()
    }

    /// Sleeps at least `ns` nanoseconds, idle on the platform's one-shot timer (KVM: the
    /// LAPIC timer; Xen: `set_timer_op` and `SCHEDOP_block`). With threads only the calling
    /// thread sleeps; under `scheduler = "async"` this blocks the whole executor (use
    /// `task::sleep` there).
    pub fn sleep_ns(ns: u64) {
        if let Some(now) = kernel::now_ns() {
            kernel::sleep_until_ns(now.saturating_add(ns));
        }
    }
}

/// Device interrupts, for drivers and probes (apps seldom need them): register a handler for a
/// line on a CPU, unmask the line after each call. The contract is "oneshot": the platform
/// masks the line before it calls the handler (with interrupts masked, on the interrupted
/// stack; it may wake threads and must not block), and [`irq::unmask`] opens it again once the
/// device's own interrupt status was acknowledged. A line is a GSI (IOAPIC input) on KVM-class
/// monitors, an event-channel port on Xen. On KVM-class monitors lines exist only in images with
/// device support: a NIC driver (`net_device`), or the facade's feature `devices`, which an app
/// asks for in its `Cargo.toml` (`stardust = { ..., features = ["devices"] }`).
pub mod irq {
    pub use kernel::irq::{CpuId, Handler, Irq, IrqError};

    /// Registers `handler(data)` for `irq` on `cpu`, and unmasks the line.
    pub fn register(irq: Irq, cpu: CpuId, handler: Handler, data: usize) -> Result<(), IrqError> {
        kernel::irq_register(irq, cpu, handler, data)
    }

    /// Unmasks `irq` (after its handler ran and the device was acknowledged).
    pub fn unmask(irq: Irq) {
        kernel::irq_unmask(irq)
    }

    /// The CPU the caller runs on.
    pub fn current_cpu() -> CpuId {
        kernel::current_cpu()
    }

    /// Xen event channels of the guest's own, as interrupt lines (`Irq(port)`): allocate a
    /// port ([`alloc_unbound`](xen::alloc_unbound), which a split driver's frontend offers its
    /// backend; with [`DOMID_SELF`](xen::DOMID_SELF) and
    /// [`bind_interdomain`](xen::bind_interdomain), a loopback pair), [`register`] a handler
    /// for it, [`send`](xen::send) on the other end. Off Xen (platform `kvm`, the universal image
    /// on a KVM-class monitor) every call fails with [`NOT_XEN`](xen::NOT_XEN).
    pub mod xen {
        pub use kernel::xen_events::{
            DOMID_SELF, NOT_XEN, XenError, alloc_unbound, bind_interdomain, close, is_pending, send,
        };
    }
}

/// The CPU's cycle counter: raw and monotonic, for timing code (benchmarks). The scheduler
/// issue brings clocks and sleeping.
pub fn cycles() -> u64 {
    kernel::cycles()
}

/// How fast [`cycles`] counts, in Hz, where the platform can tell (calibrated at boot).
pub fn cycles_per_second() -> Option<u64> {
    kernel::cycles_per_second()
}

/// The page-frame allocator: page-aligned, page-granular memory taken from the heap (stacks,
/// DMA buffers). It returns `None` when memory runs out (and always without an allocator).
pub fn frames() -> &'static impl FrameAllocator {
    kernel::frames()
}

/// Test hook (not an API): unmaps the 4 KiB page at `page` like a thread stack's guard page.
///
/// # Safety
/// `page` is page-aligned memory from [`frames`] that the caller owns and never touches again
/// until [`__test_unguard_page`].
#[doc(hidden)]
pub unsafe fn __test_guard_page(page: u64) -> bool {
    // SAFETY: forwarded to the caller.
    unsafe { kernel::guard_page(page) }
}

/// Test hook (not an API): maps a page [`__test_guard_page`] unmapped again.
///
/// # Safety
/// `page` was unmapped by [`__test_guard_page`].
#[doc(hidden)]
pub unsafe fn __test_unguard_page(page: u64) {
    // SAFETY: forwarded to the caller.
    unsafe { kernel::unguard_page(page) }
}

/// How many CPUs run, the boot CPU included (the profile's `cpus` at most; see the README).
pub fn cpus() -> usize {
    kernel::smp::cpus()
}

/// The number of the CPU the caller runs on (0 to [`cpus`] - 1; a thread that is not bound to
/// a CPU may run on another by the time it looks).
pub fn current_cpu() -> usize {
    kernel::current_cpu().0 as usize
}

/// Test hook (not an API): gives CPU `cpu` (not CPU 0) the job `f(arg)`, which it runs when
/// idle; false when the CPU is not up or has a job not yet joined.
#[doc(hidden)]
pub fn __test_start_on(cpu: usize, f: fn(usize) -> usize, arg: usize) -> bool {
    kernel::smp::start_on(cpu, f, arg)
}

/// Test hook (not an API): waits for CPU `cpu`'s job and returns its result (`None`: none).
#[doc(hidden)]
pub fn __test_join(cpu: usize) -> Option<usize> {
    kernel::smp::join(cpu)
}

#[doc(hidden)]
pub fn _print(args: core::fmt::Arguments<'_>) {
    kernel::print(args)
}

/// Prints to the console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::_print(format_args!($($arg)*)) };
}

/// Prints to the console, with a newline.
#[macro_export]
macro_rules! println {
    () => { $crate::_print(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::_print(format_args!("{}\n", format_args!($($arg)*))) };
}

/// An exit status (0 = success). `cargo xtask run` exits with it unchanged; the reserved ones
/// (101-103, 124-127: README "Exit statuses") are refused with a panic (status 101).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitCode(pub u8);

impl ExitCode {
    /// Status 0.
    pub const SUCCESS: ExitCode = ExitCode(0);
    /// Status 1.
    pub const FAILURE: ExitCode = ExitCode(1);
}

impl From<u8> for ExitCode {
    fn from(code: u8) -> Self {
        ExitCode(code)
    }
}

/// What a main function may return.
pub trait Termination {
    /// The exit status this result stands for.
    fn report(self) -> u8;
}

impl Termination for () {
    fn report(self) -> u8 {
        0
    }
}

impl Termination for ExitCode {
    fn report(self) -> u8 {
        self.0
    }
}

impl Termination for u8 {
    fn report(self) -> u8 {
        self
    }
}

impl<E: core::fmt::Debug> Termination for Result<(), E> {
    fn report(self) -> u8 {
        match self {
            Ok(()) => 0,
            Err(e) => {
                println!("Error: {e:?}");
                1
            }
        }
    }
}
