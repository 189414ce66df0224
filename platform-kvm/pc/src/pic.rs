//! The legacy 8259 programmable interrupt controllers: remapped off the exception vectors and
//! masked, so they never raise an interrupt (the platform timer is the local APIC's).

use arch_x86_64::cpu;

/// Remaps the two 8259 PICs to vectors 0x20..0x30 ([`cpu::PIC_VECTORS`]) and masks every line
/// (a monitor without PICs ignores the writes).
pub fn disable() {
    // SAFETY: the standard initialisation sequence of the cascaded 8259 pair (ICW1: edge,
    // cascade, ICW4 follows; ICW2: vector bases 0x20 and 0x28; ICW3: slave on IRQ 2; ICW4:
    // 8086 mode), then every line masked. Nothing else drives the PICs.
    unsafe {
        cpu::outb(0x20, 0x11);
        cpu::outb(0xa0, 0x11);
        cpu::outb(0x21, 0x20);
        cpu::outb(0xa1, 0x28);
        cpu::outb(0x21, 0x04);
        cpu::outb(0xa1, 0x02);
        cpu::outb(0x21, 0x01);
        cpu::outb(0xa1, 0x01);
        cpu::outb(0x21, 0xff);
        cpu::outb(0xa1, 0xff);
    }
}
