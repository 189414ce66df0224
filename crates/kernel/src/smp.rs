//! The CPUs after the boot CPU (profile setting `cpus` above 1): each gets its stacks from the
//! frame allocator before the heap takes the rest, then the platform starts it
//! (`Platform::start_cpus`) and it waits in the platform's idle for work.
//!
//! Work in progress (issue "Multi-core"): the schedulers still run every thread on the boot
//! CPU, so the others only idle. Their stacks have no guard pages yet.

use crate::config;
use crate::select::SelectedPlatform;
use platform::irq::CpuId;
use platform::{CpuStacks, FreeMemory, PAGE_SIZE, Platform};

/// Bytes of each started CPU's own stack (its idle loop and the interrupts it takes there).
const STACK_SIZE: u64 = 16 * 1024;

/// Starts up to `config::CPUS - 1` more CPUs, of the `machine` CPUs the platform found, and
/// says how many run.
pub fn start(free: &mut FreeMemory, machine: usize) {
    let fault = arch_x86_64::percpu::IST_STACK_SIZE as u64;
    let mut stacks = |_: CpuId| -> Option<CpuStacks> {
        let base = free.alloc_frames((STACK_SIZE + fault) / PAGE_SIZE).ok()?.0;
        Some(CpuStacks {
            fault: base + fault,
            stack: base + fault + STACK_SIZE,
        })
    };
    let up = SelectedPlatform::start_cpus(&mut stacks, other_cpu);
    let wanted = config::CPUS.min(machine);
    let cpus = if up == 1 { "CPU" } else { "CPUs" };
    if up < wanted {
        log::warn!(
            "only {up} of {wanted} CPUs up (the machine has {machine}; profile setting cpus = {})",
            config::CPUS
        );
    } else {
        log::info!(
            "{up} {cpus} up (the machine has {machine}; profile setting cpus = {})",
            config::CPUS
        );
    }
}

/// What a started CPU runs once the platform set it up: it idles (the schedulers do not use it
/// yet).
fn other_cpu(cpu: CpuId) -> ! {
    log::debug!("CPU {} up", cpu.0);
    loop {
        SelectedPlatform::idle();
    }
}
