//! Device interrupts: the seam between a platform's interrupt controller and the drivers.
//!
//! A platform names its interrupt lines with [`Irq`] (a GSI, an input of an IOAPIC, on KVM-class
//! monitors; an event-channel port on Xen) and its CPUs with [`CpuId`]. A driver registers a
//! [`Handler`] for its device's line on a CPU with `Platform::irq_register`.
//!
//! The handler contract is "oneshot", as Linux's threaded interrupts: when the line fires, the
//! platform **masks the line**, acknowledges its interrupt controller (EOI), then calls the
//! handler with interrupts masked, on the interrupted code's stack, on the CPU it was registered
//! for. The handler may wake threads (or tasks), and must not block. The line stays masked until
//! `Platform::irq_unmask` is called, after the device's own interrupt status was acknowledged
//! (virtio: its ISR). So a level-triggered line (PCI INTx, virtio-mmio) cannot storm while the
//! real work waits for a thread, and an edge lost while masked is caught by the driver's poll.
//!
//! [`HandlerTable`] is the table a platform dispatches from: a fixed number of slots, each a
//! line, a CPU and a handler with its data word; registration is rare (boot), dispatch is an
//! index and a lock-free read.

use core::fmt;
use core::sync::atomic::{AtomicU32, Ordering};

/// A CPU, numbered from 0 (the boot CPU) in the order the platform brought them up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct CpuId(pub u32);

/// An interrupt line in the platform's own numbering: a GSI (global system interrupt: the
/// IOAPIC input, 0-23 on the first IOAPIC, 24-47 on `microvm`'s second) on KVM-class monitors,
/// an event-channel port on Xen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Irq(pub u32);

impl fmt::Display for Irq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}", self.0)
    }
}

/// A device-interrupt handler: called with the data word given at registration (a pointer or an
/// index the driver chose), with interrupts masked, on the interrupted stack.
pub type Handler = fn(data: usize);

/// Why a handler could not be registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IrqError {
    /// The platform has no device interrupts (or none yet: before `Platform::init`).
    Unsupported,
    /// The platform has no such line (no IOAPIC input, no event channel).
    NoSuchLine(Irq),
    /// The line has a handler already.
    Busy(Irq),
    /// The platform has no such CPU.
    NoSuchCpu(CpuId),
    /// Every slot of the handler table is taken.
    TableFull,
}

impl fmt::Display for IrqError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IrqError::Unsupported => f.write_str("the platform has no device interrupts"),
            IrqError::NoSuchLine(irq) => write!(f, "no interrupt {irq} on this platform"),
            IrqError::Busy(irq) => write!(f, "interrupt {irq} has a handler already"),
            IrqError::NoSuchCpu(cpu) => write!(f, "no CPU {}", cpu.0),
            IrqError::TableFull => f.write_str("the interrupt handler table is full"),
        }
    }
}

// A slot's `line` word: 0 free, `u32::MAX` being written, else the line plus one (so an empty
// table is all zeros: a `static` of it takes no image bytes, it is in `.bss`).
/// A slot no line holds.
const FREE: u32 = 0;
/// A slot being filled in or emptied (its registration not readable).
const CLAIMED: u32 = u32::MAX;

/// The slot word of a line (lines `u32::MAX - 1` and up are refused before this).
const fn word(irq: Irq) -> u32 {
    irq.0 + 1
}

/// A table of `N` handler slots. A platform maps slot `i` to something of its own (IDT vector
/// `BASE + i` on KVM-class monitors) and calls [`HandlerTable::dispatch`] from there.
///
/// A slot's registration sits behind a spin lock that dispatch only *tries*: a platform
/// registers (and unregisters) a line while it is masked, so an interrupt never meets a slot
/// being written, and an interrupt handler never spins. One that did would be spurious, and
/// [`HandlerTable::dispatch`] says so.
#[derive(Debug)]
pub struct HandlerTable<const N: usize> {
    slots: [Slot; N],
}

#[derive(Debug)]
struct Slot {
    /// The line's word ([`FREE`], [`CLAIMED`] while registering), for lookups without the lock.
    line: AtomicU32,
    registration: spin::Mutex<Option<Registration>>,
}

impl Slot {
    const fn new() -> Self {
        Slot {
            line: AtomicU32::new(FREE),
            registration: spin::Mutex::new(None),
        }
    }
}

/// One registered slot, as [`HandlerTable::get`] reads it.
#[derive(Debug, Clone, Copy)]
pub struct Registration {
    /// The line.
    pub irq: Irq,
    /// The CPU the handler runs on.
    pub cpu: CpuId,
    /// The handler.
    pub handler: Handler,
    /// Its data word.
    pub data: usize,
}

impl<const N: usize> Default for HandlerTable<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> HandlerTable<N> {
    /// An empty table (usable in a `static`).
    pub const fn new() -> Self {
        HandlerTable {
            slots: [const { Slot::new() }; N],
        }
    }

    /// The slot that holds `irq`, if any.
    pub fn find(&self, irq: Irq) -> Option<usize> {
        self.slots
            .iter()
            .position(|s| irq.0 < CLAIMED - 1 && s.line.load(Ordering::Acquire) == word(irq))
    }

    /// Puts `handler` for `irq` on `cpu` into a free slot; returns the slot's index. Lines
    /// [`u32::MAX`] and `u32::MAX - 1` are refused (the table's markers need their words).
    pub fn register(
        &self,
        irq: Irq,
        cpu: CpuId,
        handler: Handler,
        data: usize,
    ) -> Result<usize, IrqError> {
        if irq.0 >= CLAIMED - 1 {
            return Err(IrqError::NoSuchLine(irq));
        }
        if self.find(irq).is_some() {
            return Err(IrqError::Busy(irq));
        }
        for (i, slot) in self.slots.iter().enumerate() {
            if slot
                .line
                .compare_exchange(FREE, CLAIMED, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                *slot.registration.lock() = Some(Registration {
                    irq,
                    cpu,
                    handler,
                    data,
                });
                slot.line.store(word(irq), Ordering::Release);
                return Ok(i);
            }
        }
        Err(IrqError::TableFull)
    }

    /// What slot `index` holds, or `None` (free, being written, out of range).
    pub fn get(&self, index: usize) -> Option<Registration> {
        let slot = self.slots.get(index)?;
        if matches!(slot.line.load(Ordering::Acquire), FREE | CLAIMED) {
            return None;
        }
        *slot.registration.try_lock()?
    }

    /// Calls slot `index`'s handler; returns whether there was one (an interrupt on a free slot
    /// is spurious: the caller counts it).
    pub fn dispatch(&self, index: usize) -> bool {
        match self.get(index) {
            Some(r) => {
                (r.handler)(r.data);
                true
            }
            None => false,
        }
    }

    /// Frees slot `index` (a device that went away). The platform masks the line first.
    pub fn unregister(&self, index: usize) {
        if let Some(slot) = self.slots.get(index) {
            let line = slot.line.load(Ordering::Acquire);
            if matches!(line, FREE | CLAIMED) {
                return;
            }
            if slot
                .line
                .compare_exchange(line, CLAIMED, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                *slot.registration.lock() = None;
                slot.line.store(FREE, Ordering::Release);
            }
        }
    }

    /// Every registered slot, in index order.
    pub fn registrations(&self) -> impl Iterator<Item = (usize, Registration)> + '_ {
        (0..N).filter_map(|i| self.get(i).map(|r| (i, r)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    static CALLS: AtomicUsize = AtomicUsize::new(0);
    fn count(data: usize) {
        CALLS.fetch_add(data, Ordering::SeqCst);
    }
    fn other(_data: usize) {}

    #[test]
    fn handlers_are_found_dispatched_and_freed() {
        let table: HandlerTable<3> = HandlerTable::new();
        assert!(!table.dispatch(0), "a free slot is spurious");
        let a = table.register(Irq(24), CpuId(0), count, 5).expect("free");
        let b = table.register(Irq(16), CpuId(1), other, 0).expect("free");
        assert_ne!(a, b);
        assert_eq!(table.find(Irq(24)), Some(a));
        assert_eq!(table.find(Irq(17)), None);
        assert_eq!(
            table.register(Irq(24), CpuId(0), other, 0),
            Err(IrqError::Busy(Irq(24)))
        );
        let before = CALLS.load(Ordering::SeqCst);
        assert!(table.dispatch(a));
        assert_eq!(CALLS.load(Ordering::SeqCst), before + 5);
        let r = table.get(b).expect("registered");
        assert_eq!((r.irq, r.cpu, r.data), (Irq(16), CpuId(1), 0));
        assert_eq!(table.registrations().count(), 2);
        table
            .register(Irq(3), CpuId(0), other, 0)
            .expect("the last slot");
        assert_eq!(
            table.register(Irq(4), CpuId(0), other, 0),
            Err(IrqError::TableFull)
        );
        table.unregister(a);
        assert!(!table.dispatch(a));
        assert_eq!(table.find(Irq(24)), None);
        assert_eq!(
            table.register(Irq(4), CpuId(0), other, 0),
            Ok(a),
            "the slot is reused"
        );
        assert!(table.get(99).is_none());
        for line in [u32::MAX, u32::MAX - 1] {
            assert_eq!(
                table.register(Irq(line), CpuId(0), other, 0),
                Err(IrqError::NoSuchLine(Irq(line)))
            );
            assert_eq!(table.find(Irq(line)), None);
        }
        table.unregister(a);
        assert_eq!(
            table.register(Irq(0), CpuId(0), other, 0),
            Ok(a),
            "line 0 is a line"
        );
        assert_eq!(table.find(Irq(0)), Some(a));
    }

    #[test]
    fn registration_races_give_each_line_one_slot() {
        let table: &'static HandlerTable<64> = Box::leak(Box::new(HandlerTable::new()));
        let threads: Vec<_> = (0..8u32)
            .map(|t| {
                std::thread::spawn(move || {
                    (0..8u32)
                        .filter_map(|i| table.register(Irq(t * 8 + i), CpuId(t), other, 0).ok())
                        .count()
                })
            })
            .collect();
        let total: usize = threads
            .into_iter()
            .map(|t| t.join().expect("no panic"))
            .sum();
        assert_eq!(total, 64);
        let mut lines: Vec<u32> = table.registrations().map(|(_, r)| r.irq.0).collect();
        lines.sort_unstable();
        assert_eq!(lines, (0..64).collect::<Vec<_>>());
    }
}
