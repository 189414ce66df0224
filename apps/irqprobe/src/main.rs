//! Irqprobe: checks that a device interrupt arrives through the platform's interrupt seam
//! (`stardust::irq`), for the tests, on KVM-class monitors (QEMU `q35` and `microvm`).
//!
//! The device is the 8254 PIT, the simplest source that needs no driver: channel 0 as a rate
//! generator at about 1 kHz raises ISA IRQ 0, which arrives on GSI 2 (the MADT's interrupt
//! source override, and the convention without ACPI; QEMU's IOAPIC model wires it there). The
//! probe registers a handler for line 2 on its own CPU; the handler counts and unmasks the line
//! again (the oneshot contract: the platform masked it before the call), until it has counted
//! `N` interrupts (the first argument, default 20). Then it stops the PIT and prints
//! `irqprobe: N interrupts on line 2 (CPU c)`. Exit 1 when they did not all arrive within two
//! seconds (`irqprobe: only K interrupts ...`), 2 when the line cannot be registered.
//!
//! `irqprobe cpu C [N]` routes the line to CPU C instead (profile setting `cpus` above 1, with
//! threads): the handler must run there every time (`irqprobe: K of N interrupts ran on another
//! CPU than C`, exit 1, if not).
//!
//! `irqprobe evtchn [N]` (Xen PV and PVH, and the universal image on Xen) checks the same seam
//! on Xen's event channels, the lines of Xen's split drivers: it allocates an unbound port for
//! itself (`EVTCHNOP_alloc_unbound` with `DOMID_SELF`, as a frontend does) and binds a second
//! port to it (`EVTCHNOP_bind_interdomain`, as a backend does: a loopback pair), registers a
//! handler for the first through `stardust::irq`, then sends `N` events (default 20) on the
//! second, one at a time. The handler only counts: the platform masked the port before calling
//! it (oneshot), so each next event, sent while the port is masked, must be held by Xen (its
//! pending bit set, the handler not called) until the probe unmasks the port, and then arrive.
//! Last, two events sent while masked arrive as one after the unmask (a port is a bit, not a
//! queue), and nothing arrives after that. Prints `irqprobe: N events on port P (CPU c), each
//! held while masked until unmasked`, `irqprobe: two events sent while masked arrived as one`,
//! `irqprobe: ok`; exit 1 on a failed check (`irqprobe: FAIL: ...`), 2 when a port cannot be
//! allocated, bound or registered, 3 when not on Xen (`irqprobe: not on Xen: ...`).
//!
//! `irqprobe evtchn cpu C [N]` routes the port to CPU C (profile setting `cpus` above 1, with
//! threads; `EVTCHNOP_bind_vcpu` underneath): every event's handler must run there
//! (`irqprobe: FAIL: K of N events ran on another CPU than C` if not); a CPU that does not
//! exist cannot be registered (exit 2).
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU32, Ordering};
use stardust::irq::{self, Irq};
use stardust::time::Instant;
use stardust::{ExitCode, println};

/// The PIT's line: ISA IRQ 0 on GSI 2.
const PIT_LINE: Irq = Irq(2);
/// The PIT's input clock.
const PIT_HZ: u32 = 1_193_182;

static COUNT: AtomicU32 = AtomicU32::new(0);
/// The CPU the line is routed to, and how many interrupts ran elsewhere.
static TARGET: AtomicU32 = AtomicU32::new(0);
static ELSEWHERE: AtomicU32 = AtomicU32::new(0);
static WANTED: AtomicU32 = AtomicU32::new(20);

fn outb(port: u16, value: u8) {
    // SAFETY: the PIT's command (0x43) and channel 0 data (0x40) ports; the probe owns the PIT
    // (the platform used channel 0 only to calibrate the TSC at boot, if at all).
    unsafe {
        core::arch::asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack))
    };
}

/// The handler: the platform masked the line before calling it; counting on re-opens it.
fn on_tick(data: usize) {
    if stardust::current_cpu() as u32 != TARGET.load(Ordering::Relaxed) {
        ELSEWHERE.fetch_add(1, Ordering::Relaxed);
    }
    let n = COUNT.fetch_add(1, Ordering::Relaxed) + 1;
    if n < WANTED.load(Ordering::Relaxed) {
        irq::unmask(Irq(data as u32));
    }
}

#[stardust::main]
fn main() -> ExitCode {
    let mut args = stardust::args().peekable();
    if args.peek() == Some(&"evtchn") {
        args.next();
        let mut target = None;
        if args.peek() == Some(&"cpu") {
            args.next();
            target = args.next().and_then(|a| a.parse::<u32>().ok());
            if target.is_none() {
                println!("irqprobe: `evtchn cpu` needs a CPU number");
                return ExitCode(2);
            }
        }
        let wanted = args.next().and_then(|a| a.parse().ok()).unwrap_or(20u32);
        return evtchn::probe(wanted.max(1), target);
    }
    // `cpu N`: the line goes to CPU N rather than the caller's.
    let mut target = None;
    if args.peek() == Some(&"cpu") {
        args.next();
        target = args.next().and_then(|a| a.parse::<u32>().ok());
        if target.is_none_or(|c| c as usize >= stardust::cpus()) {
            println!("irqprobe: cpu N needs a CPU below {}", stardust::cpus());
            return ExitCode(2);
        }
    }
    let wanted = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(20u32)
        .max(1);
    WANTED.store(wanted, Ordering::Relaxed);
    // Channel 0, low then high byte, mode 2 (rate generator), binary: ~1 kHz.
    let reload = (PIT_HZ / 1000) as u16;
    outb(0x43, 0x34);
    outb(0x40, reload as u8);
    outb(0x40, (reload >> 8) as u8);
    let cpu = target.map_or_else(irq::current_cpu, irq::CpuId);
    TARGET.store(cpu.0, Ordering::Relaxed);
    if let Err(e) = irq::register(PIT_LINE, cpu, on_tick, PIT_LINE.0 as usize) {
        println!("irqprobe: cannot register line {}: {e}", PIT_LINE.0);
        return ExitCode(2);
    }
    let start = Instant::now();
    while COUNT.load(Ordering::Relaxed) < wanted && start.elapsed().as_millis() < 2000 {
        stardust::time::sleep_ns(1_000_000);
    }
    // Mode 0 with no count loaded: the output stays low, no more edges.
    outb(0x43, 0x30);
    let got = COUNT.load(Ordering::Relaxed);
    if got < wanted {
        println!(
            "irqprobe: only {got} interrupts on line {} in 2 s (wanted {wanted})",
            PIT_LINE.0
        );
        return ExitCode(1);
    }
    let elsewhere = ELSEWHERE.load(Ordering::Relaxed);
    if elsewhere != 0 {
        println!(
            "irqprobe: {elsewhere} of {got} interrupts ran on another CPU than {}",
            cpu.0
        );
        return ExitCode(1);
    }
    println!(
        "irqprobe: {got} interrupts on line {} (CPU {})",
        PIT_LINE.0, cpu.0
    );
    ExitCode(0)
}

/// `irqprobe evtchn`: the seam on Xen's event channels (see the crate docs).
mod evtchn {
    use core::sync::atomic::{AtomicU32, Ordering};
    use stardust::irq::{self, xen};
    use stardust::time::Instant;
    use stardust::{ExitCode, println};

    /// Events the handler saw.
    static EVENTS: AtomicU32 = AtomicU32::new(0);

    /// The CPU the port is routed to.
    static TARGET: AtomicU32 = AtomicU32::new(0);
    /// Events whose handler ran on another CPU than [`TARGET`].
    static ELSEWHERE: AtomicU32 = AtomicU32::new(0);

    /// The handler: counts (and where it ran), and leaves the port masked (the probe unmasks
    /// it).
    fn on_event(_port: usize) {
        if stardust::current_cpu() as u32 != TARGET.load(Ordering::Relaxed) {
            ELSEWHERE.fetch_add(1, Ordering::Relaxed);
        }
        EVENTS.fetch_add(1, Ordering::Relaxed);
    }

    fn events() -> u32 {
        EVENTS.load(Ordering::Relaxed)
    }

    /// Waits (sleeping, so the vCPU blocks between events) until the handler counted `n`, at
    /// most two seconds; returns the count.
    fn wait_for(n: u32) -> u32 {
        let start = Instant::now();
        while events() < n && start.elapsed().as_millis() < 2000 {
            stardust::time::sleep_ns(1_000_000);
        }
        events()
    }

    /// Lets Xen deliver anything it would (a few timer wake-ups), then returns the count.
    fn settle() -> u32 {
        stardust::time::sleep_ns(5_000_000);
        events()
    }

    fn fail(what: core::fmt::Arguments<'_>) -> ExitCode {
        println!("irqprobe: FAIL: {what}");
        ExitCode(1)
    }

    pub fn probe(wanted: u32, target: Option<u32>) -> ExitCode {
        let port = match xen::alloc_unbound(xen::DOMID_SELF) {
            Ok(p) => p,
            Err(e) if e == xen::NOT_XEN => {
                println!("irqprobe: not on Xen: no event channels ({e})");
                return ExitCode(3);
            }
            Err(e) => {
                println!("irqprobe: cannot allocate an event channel: {e}");
                return ExitCode(2);
            }
        };
        let other = match xen::bind_interdomain(xen::DOMID_SELF, port) {
            Ok(p) => p,
            Err(e) => {
                println!("irqprobe: cannot bind to port {}: {e}", port.0);
                return ExitCode(2);
            }
        };
        println!(
            "irqprobe: event channel ports {} (handler) and {} (sender), a loopback pair",
            port.0, other.0
        );
        let cpu = target.map_or_else(irq::current_cpu, irq::CpuId);
        TARGET.store(cpu.0, Ordering::Relaxed);
        if let Err(e) = irq::register(port, cpu, on_event, port.0 as usize) {
            println!("irqprobe: cannot register port {}: {e}", port.0);
            return ExitCode(2);
        }
        if settle() != 0 {
            return fail(format_args!(
                "an event on port {} before any was sent",
                port.0
            ));
        }
        for n in 1..=wanted {
            if let Err(e) = xen::send(other) {
                return fail(format_args!("send on port {}: {e}", other.0));
            }
            if n > 1 {
                // The port is masked since the last call: Xen holds the event.
                let got = settle();
                if got != n - 1 {
                    return fail(format_args!(
                        "event {n} arrived while port {} was masked ({got} events)",
                        port.0
                    ));
                }
                if !xen::is_pending(port) {
                    return fail(format_args!(
                        "event {n} not pending on masked port {}",
                        port.0
                    ));
                }
                irq::unmask(port);
            }
            let got = wait_for(n);
            if got != n {
                return fail(format_args!(
                    "{got} events on port {} in 2 s after sending {n}",
                    port.0
                ));
            }
        }
        println!(
            "irqprobe: {wanted} events on port {} (CPU {}), each held while masked until unmasked",
            port.0, cpu.0
        );
        // Two sends while masked set one pending bit: one event after the unmask, then none.
        for _ in 0..2 {
            if let Err(e) = xen::send(other) {
                return fail(format_args!("send on port {}: {e}", other.0));
            }
        }
        let before = settle();
        irq::unmask(port);
        let after = wait_for(wanted + 1);
        irq::unmask(port);
        let last = settle();
        if before != wanted || after != wanted + 1 || last != wanted + 1 {
            return fail(format_args!(
                "two sends while masked: {} events before the unmask, {} after, {} later \
                 (wanted {wanted}, {}, {})",
                before,
                after,
                last,
                wanted + 1,
                wanted + 1
            ));
        }
        println!("irqprobe: two events sent while masked arrived as one");
        let elsewhere = ELSEWHERE.load(Ordering::Relaxed);
        if elsewhere != 0 {
            return fail(format_args!(
                "{elsewhere} of {} events ran on another CPU than {}",
                wanted + 1,
                cpu.0
            ));
        }
        for p in [other, port] {
            if let Err(e) = xen::close(p) {
                return fail(format_args!("closing port {}: {e}", p.0));
            }
        }
        // A closed port has no handler: sending on it is refused.
        if xen::send(other).is_ok() {
            return fail(format_args!("send on closed port {} accepted", other.0));
        }
        println!("irqprobe: ok");
        ExitCode(0)
    }
}
