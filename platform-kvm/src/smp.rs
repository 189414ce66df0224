//! The other CPUs on KVM-class monitors: found in ACPI's MADT ([`pc::cpus`]), started with
//! INIT-SIPI-SIPI through the local APIC into the arch crate's real-mode trampoline
//! ([`arch_x86_64::smp`]), one at a time.
//!
//! The sequence per CPU follows what Linux does on current CPUs (`wakeup_secondary_cpu_via_init`
//! with `init_udelay = 0`): INIT, a startup IPI, and a second one if the CPU has not taken its
//! mailbox within 200 us; the MP specification's 10 ms wait after INIT is for 1990s hardware,
//! and the monitors here have none. A CPU that is not up within [`START_BOUND_US`] is sent INIT
//! again (which parks it, so a late start cannot run on stacks given to the next), reported and
//! left out.
//!
//! Without ACPI (`microvm,acpi=off`, Firecracker) there is no MADT, so no list: one CPU, and
//! the kernel says so.
//!
//! Inter-processor interrupts use one vector, [`IPI_VECTOR`]: [`send_ipi`] wakes a CPU from its
//! idle halt, and [`shoot_down`] asks every other CPU to drop a page from its TLB (a page the
//! calling CPU just unmapped: a thread's guard page) and waits until each did, so that no CPU
//! can still reach the page through a stale translation. Each CPU has one request slot; an
//! initiator holds one lock while its requests are out, and any CPU waiting (for that lock or
//! for the answers) serves its own slot as it spins, so two CPUs that shoot down at once, with
//! interrupts masked or not, cannot wait on each other.

use crate::Kvm;
use arch_x86_64::{cpu, percpu, smp, tsc};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use pc::apic;
use platform::irq::CpuId;
use platform::{BootInfo, CpuStacks, Platform};

/// How long a started CPU has to come up.
const START_BOUND_US: u64 = 200_000;

/// The local APIC ids of the CPUs to start (the boot CPU's among them), from `find_cpus`.
static IDS: [AtomicU32; percpu::MAX_CPUS] = [const { AtomicU32::new(0) }; percpu::MAX_CPUS];
/// How many of IDS are valid.
static COUNT: AtomicUsize = AtomicUsize::new(0);
/// The trampoline's page (0: none found).
static TRAMPOLINE: AtomicU64 = AtomicU64::new(0);
/// The kernel's function for a started CPU (a `fn(CpuId) -> !`).
static KERNEL_MAIN: AtomicUsize = AtomicUsize::new(0);
/// How many CPUs run (0 until `start`: one).
static UP: AtomicUsize = AtomicUsize::new(0);

/// The vector of inter-processor interrupts (wake-up and TLB shoot-down).
pub const IPI_VECTOR: u8 = 0x31;
/// Per CPU: the page it is asked to drop from its TLB (0: no request).
static FLUSH: [AtomicU64; percpu::MAX_CPUS] = [const { AtomicU64::new(0) }; percpu::MAX_CPUS];
/// Held by the CPU whose shoot-down requests are out.
static SHOOTING: AtomicBool = AtomicBool::new(false);
/// How long a shoot-down waits for a CPU's answer before it says so and goes on.
const SHOOT_DOWN_BOUND_US: u64 = 1_000_000;

arch_x86_64::interrupt_entry!("stardust_ipi_entry", "stardust_apic_ipi");

unsafe extern "C" {
    /// The IPI's entry stub.
    static stardust_ipi_entry: u8;
}

/// The IPI: acknowledged, then the CPU serves its shoot-down slot. A wake-up needs nothing
/// more: the interrupt itself ended the halt.
#[unsafe(no_mangle)]
extern "C" fn stardust_apic_ipi() {
    apic::eoi();
    serve_flush();
}

/// Drops the page this CPU was asked to from its TLB, and answers.
fn serve_flush() {
    let slot = &FLUSH[percpu::current().id().0 as usize % percpu::MAX_CPUS];
    let page = slot.load(Ordering::Acquire);
    if page != 0 {
        cpu::flush_page(page);
        slot.store(0, Ordering::Release);
    }
}

/// Interrupts CPU `cpu` (it leaves its idle halt). False when it is not up.
pub(crate) fn send_ipi(cpu: CpuId) -> bool {
    match percpu::block(cpu) {
        Some(b) if b.online() && cpu != percpu::current().id() => {
            apic::send_fixed(b.apic_id(), IPI_VECTOR)
        }
        _ => false,
    }
}

/// Makes every other CPU drop `page` from its TLB; returns once each did (or, past a bound,
/// after saying which did not).
pub(crate) fn shoot_down(page: u64) {
    if UP.load(Ordering::Acquire) <= 1 || page == 0 {
        return;
    }
    let me = percpu::current().id();
    while SHOOTING
        .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        serve_flush();
        core::hint::spin_loop();
    }
    let others = || percpu::online().filter(move |b| b.id() != me);
    for b in others() {
        FLUSH[b.id().0 as usize].store(page, Ordering::Release);
        apic::send_fixed(b.apic_id(), IPI_VECTOR);
    }
    let hz = Kvm::tsc_frequency().unwrap_or(1_000_000_000);
    let answered = || {
        serve_flush();
        others().all(|b| FLUSH[b.id().0 as usize].load(Ordering::Acquire) == 0)
    };
    if !wait_until(hz, SHOOT_DOWN_BOUND_US, answered) {
        for b in others() {
            if FLUSH[b.id().0 as usize].swap(0, Ordering::AcqRel) != 0 {
                log::error!(
                    "CPU {} did not drop page {page:#x} from its TLB within {} ms",
                    b.id().0,
                    SHOOT_DOWN_BOUND_US / 1000
                );
            }
        }
    }
    SHOOTING.store(false, Ordering::Release);
}

/// [`Platform::find_cpus`]: the MADT's processors, the boot CPU's first, up to `max`.
pub(crate) fn find(boot: &BootInfo, max: usize) -> usize {
    let own = percpu::current().apic_id();
    let processors = match pc::cpus::Processors::from_madt(&arch_x86_64::BootMemory, boot.rsdp.0) {
        Ok(p) => p,
        Err(e) => {
            log::info!("one CPU: no ACPI table lists the machine's CPUs ({e})");
            return 1;
        }
    };
    let keep = max.clamp(1, percpu::MAX_CPUS);
    IDS[0].store(own, Ordering::Relaxed);
    let mut kept = 1;
    for &id in processors.apic_ids() {
        if id != own && kept < keep {
            IDS[kept].store(id, Ordering::Relaxed);
            kept += 1;
        }
    }
    COUNT.store(kept, Ordering::Release);
    TRAMPOLINE.store(
        pc::cpus::trampoline_page(&boot.memory).unwrap_or(0),
        Ordering::Relaxed,
    );
    processors.listed.max(1)
}

/// Spins until `done()` or `us` microseconds of TSC time passed; returns `done()`.
fn wait_until(tsc_hz: u64, us: u64, done: impl Fn() -> bool) -> bool {
    let end = tsc::now().saturating_add(tsc_hz / 1_000_000 * us);
    while tsc::now() < end {
        if done() {
            return true;
        }
        core::hint::spin_loop();
    }
    done()
}

/// [`Platform::start_cpus`].
pub(crate) fn start(
    stacks: &mut dyn FnMut(CpuId) -> Option<CpuStacks>,
    main: fn(CpuId) -> !,
) -> usize {
    let count = COUNT.load(Ordering::Acquire);
    if count <= 1 {
        return 1;
    }
    let page = TRAMPOLINE.load(Ordering::Relaxed);
    let tsc_hz = Kvm::tsc_frequency();
    let (Some(tsc_hz), true, true) = (tsc_hz, page != 0, crate::apic_ready()) else {
        log::warn!(
            "one CPU: starting others needs a local APIC, a TSC frequency and a free page of RAM \
             below 640 KiB"
        );
        return 1;
    };
    KERNEL_MAIN.store(main as usize, Ordering::Release);
    // SAFETY: the stub above saves every caller-saved register and returns by `iretq`; the
    // IDT is shared, so the CPUs started below have the gate too.
    unsafe { cpu::set_interrupt_gate(IPI_VECTOR, (&raw const stardust_ipi_entry) as u64) };
    // SAFETY: `trampoline_page` chose a page of RAM below 640 KiB that no other region
    // overlaps; the frame allocator starts at 1 MiB, so nothing else uses it; the kernel's
    // tables map all RAM read-write and the boot tables the first GiB.
    let vector = unsafe { smp::install_trampoline(page) };
    let mut up = 1u32;
    for slot in &IDS[1..count] {
        let id = slot.load(Ordering::Relaxed);
        let cpu = CpuId(up);
        let Some(s) = stacks(cpu) else {
            log::warn!("CPU {up} (APIC id {id}): no memory for its stacks; left out");
            break;
        };
        percpu::set_ist_stack(cpu, s.fault);
        smp::prepare(cpu, s.stack, other_cpu_main);
        let online = || percpu::block(cpu).is_some_and(|b| b.online());
        let sent = apic::send_init(id) && apic::send_startup(id, vector);
        if sent && !wait_until(tsc_hz, 200, || smp::arrived(cpu)) {
            apic::send_startup(id, vector);
        }
        if sent && wait_until(tsc_hz, START_BOUND_US, online) {
            up += 1;
        } else {
            // Parked again: should it start late, it cannot take the next CPU's mailbox.
            apic::send_init(id);
            log::warn!(
                "CPU with APIC id {id} did not start within {} ms; left out",
                START_BOUND_US / 1000
            );
        }
    }
    UP.store(up as usize, Ordering::Release);
    up as usize
}

/// What a started CPU runs first (from the arch crate's trampoline, on its own stack, with the
/// kernel's page tables and interrupts masked).
fn other_cpu_main(cpu: CpuId) -> ! {
    cpu::init_cpu(cpu);
    // SAFETY: the boot CPU set its APIC up before starting this one (`apic_ready` in `start`);
    // interrupts are masked; `init_cpu` just loaded the shared IDT.
    unsafe { apic::init_other_cpu() };
    let main = KERNEL_MAIN.load(Ordering::Acquire);
    // SAFETY: KERNEL_MAIN holds the `fn(CpuId) -> !` that `start` stored before it started
    // any CPU.
    let main: fn(CpuId) -> ! = unsafe { core::mem::transmute::<usize, fn(CpuId) -> !>(main) };
    main(cpu)
}
