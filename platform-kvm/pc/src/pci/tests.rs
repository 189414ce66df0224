//! A fake configuration space shaped like QEMU `q35` with virtio-net (modern and transitional),
//! a 64-bit BAR and a multi-function device; then broken and seeded random ones.
use super::*;
use platform::fuzz::{Rng, cases};
use std::collections::BTreeMap;
use std::vec::Vec;

#[derive(Clone, Debug)]
struct FakeFunction {
    regs: [u32; 64],
    /// The writable bits of each BAR dword (0: unimplemented, reads 0).
    bar_masks: [u32; 6],
}

impl FakeFunction {
    fn new(vendor: u16, device: u16, class: u32, header_type: u8) -> Self {
        let mut regs = [0u32; 64];
        regs[0] = u32::from(device) << 16 | u32::from(vendor);
        regs[2] = class << 8 | 1;
        regs[3] = u32::from(header_type) << 16;
        regs[15] = 0xff;
        FakeFunction {
            regs,
            bar_masks: [0; 6],
        }
    }
    fn mem32(mut self, i: usize, size: u32, prefetchable: bool) -> Self {
        self.regs[4 + i] = if prefetchable { 8 } else { 0 };
        self.bar_masks[i] = !(size - 1) & !0xf;
        self
    }
    fn mem64(mut self, i: usize, size: u64) -> Self {
        self.regs[4 + i] = 0b1100;
        self.bar_masks[i] = !(size - 1) as u32 & !0xf;
        self.bar_masks[i + 1] = (!(size - 1) >> 32) as u32;
        self
    }
    fn io(mut self, i: usize, size: u32, port: u32) -> Self {
        self.regs[4 + i] = port | 1;
        self.bar_masks[i] = !(size - 1) & 0xfffc;
        self
    }
    fn pin(mut self, pin: u8, line: u8) -> Self {
        self.regs[15] = u32::from(pin) << 8 | u32::from(line);
        self
    }
    /// Capabilities as (ID, offset), linked in this order.
    fn caps(mut self, caps: &[(u8, u8)]) -> Self {
        self.regs[1] |= STATUS_CAPABILITIES;
        self.regs[13] = caps.first().map_or(0, |c| u32::from(c.1));
        for (i, &(id, at)) in caps.iter().enumerate() {
            let next = caps.get(i + 1).map_or(0, |c| c.1);
            self.regs[usize::from(at / 4)] = u32::from(next) << 8 | u32::from(id);
        }
        self
    }
    fn command(&self) -> u32 {
        self.regs[1] & 0xffff
    }
}

#[derive(Default)]
struct Fake {
    functions: BTreeMap<(u8, u8), FakeFunction>,
    /// When set: a read returns garbage with this chance (percent).
    chaos: Option<(Rng, u64)>,
}

impl Fake {
    fn with(mut self, device: u8, function: u8, f: FakeFunction) -> Self {
        self.functions.insert((device, function), f);
        self
    }
    fn get(&self, device: u8, function: u8) -> &FakeFunction {
        &self.functions[&(device, function)]
    }
}

impl ConfigSpace for Fake {
    fn read(&mut self, at: Address, offset: u8) -> u32 {
        assert!(offset & 3 == 0 && at.device < 32 && at.function < 8);
        if let Some((r, percent)) = &mut self.chaos
            && r.chance(*percent)
        {
            return r.edgy_u32();
        }
        match self.functions.get(&(at.device, at.function)) {
            Some(f) if at.bus == 0 => f.regs[usize::from(offset / 4)],
            _ => u32::MAX,
        }
    }
    fn write(&mut self, at: Address, offset: u8, value: u32) {
        assert!(offset & 3 == 0 && at.device < 32 && at.function < 8);
        let Some(f) = self.functions.get_mut(&(at.device, at.function)) else {
            return;
        };
        match offset {
            0x04 => f.regs[1] = f.regs[1] & 0xffff_0000 | value & 0xffff,
            0x10..0x28 => {
                let i = usize::from(offset - 0x10) / 4;
                let mask = f.bar_masks[i];
                f.regs[4 + i] = f.regs[4 + i] & !mask | value & mask;
            }
            _ => {}
        }
    }
}

/// 00.0 host bridge, 01.0 VGA, 02.0 virtio-net (modern), 03.0 virtio-net (transitional), 1f.0
/// LPC (multi-function) with 1f.2 AHCI and 1f.3 SMBus.
fn q35() -> Fake {
    Fake::default()
        .with(0, 0, FakeFunction::new(0x8086, 0x29c0, 0x06_00_00, 0))
        .with(
            1,
            0,
            FakeFunction::new(0x1234, 0x1111, 0x03_00_00, 0)
                .mem32(0, 16 << 20, true)
                .mem32(2, 0x1000, false),
        )
        .with(
            2,
            0,
            FakeFunction::new(0x1af4, 0x1041, 0x02_00_00, 0)
                .mem32(1, 0x1000, false)
                .mem64(4, 0x4000)
                .pin(1, 0x0b)
                .caps(&[(0x11, 0x98), (0x09, 0x84), (0x09, 0x70), (0x09, 0x60)]),
        )
        .with(
            3,
            0,
            FakeFunction::new(0x1af4, 0x1000, 0x02_00_00, 0)
                .io(0, 32, 0xc040)
                .mem32(1, 0x1000, false)
                .mem64(4, 0x4000)
                .pin(1, 0x0a),
        )
        .with(0x1f, 0, FakeFunction::new(0x8086, 0x2918, 0x06_01_00, 0x80))
        .with(
            0x1f,
            2,
            FakeFunction::new(0x8086, 0x2922, 0x01_06_01, 0)
                .io(4, 32, 0xc060)
                .mem32(5, 0x1000, false)
                .pin(1, 0x0a),
        )
        .with(
            0x1f,
            3,
            FakeFunction::new(0x8086, 0x2930, 0x0c_05_00, 0)
                .io(4, 64, 0x0700)
                .pin(1, 0x0a),
        )
}

fn run(fake: &mut Fake, window: core::ops::Range<u64>) -> (Scan, Vec<Device>) {
    let mut out = [Device::default(); 16];
    let scan = scan(fake, &mut MmioWindow::new(window), &mut out);
    (scan, out[..scan.found].to_vec())
}

/// Every assigned memory BAR is in the window, aligned to its size, below 4 GiB when 32-bit,
/// and overlaps no other.
fn check_assignments(devices: &[Device], window: &core::ops::Range<u64>) {
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    for d in devices {
        for b in d.memory_bars() {
            let end = b.address + b.size;
            assert!(b.size.is_power_of_two(), "{d:?}");
            assert!(window.start <= b.address && end <= window.end, "{d:?}");
            assert_eq!(b.address % b.size.max(0x1000), 0, "{d:?}");
            if b.kind == BarKind::Memory32 {
                assert!(end <= 1 << 32, "{d:?}");
            }
            ranges.push((b.address, end));
        }
    }
    ranges.sort();
    for w in ranges.windows(2) {
        assert!(w[0].1 <= w[1].0, "overlap: {ranges:x?}");
    }
}

#[test]
fn q35_finds_every_function_in_order() {
    let mut fake = q35();
    let (scan, devices) = run(&mut fake, Q35_MMIO_WINDOW);
    assert_eq!(scan.skipped, 0);
    let ids: Vec<_> = devices
        .iter()
        .map(|d| (d.address.to_string(), d.vendor, d.device, d.class))
        .collect();
    assert_eq!(
        ids,
        [
            ("00:00.0".into(), 0x8086, 0x29c0, [6, 0, 0]),
            ("00:01.0".into(), 0x1234, 0x1111, [3, 0, 0]),
            ("00:02.0".into(), 0x1af4, 0x1041, [2, 0, 0]),
            ("00:03.0".into(), 0x1af4, 0x1000, [2, 0, 0]),
            ("00:1f.0".into(), 0x8086, 0x2918, [6, 1, 0]),
            ("00:1f.2".into(), 0x8086, 0x2922, [1, 6, 1]),
            ("00:1f.3".into(), 0x8086, 0x2930, [0xc, 5, 0]),
        ]
    );
    assert_eq!(
        devices[4].header_type, 0,
        "the multi-function bit is not the type"
    );
    check_assignments(&devices, &Q35_MMIO_WINDOW);
}

#[test]
fn virtio_net_gets_its_bars_decoding_and_bus_mastering() {
    let mut fake = q35();
    let (_, devices) = run(&mut fake, Q35_MMIO_WINDOW);
    let net = devices
        .iter()
        .find(|d| d.device == 0x1041)
        .expect("virtio-net");
    assert_eq!(net.interrupt_pin, Some(1));
    assert_eq!(net.interrupt_line, 0x0b);
    assert_eq!(
        net.capabilities(),
        [(0x11, 0x98), (9, 0x84), (9, 0x70), (9, 0x60)]
    );
    assert_eq!(net.capability(9), Some(0x84));
    assert_eq!(net.capability(5), None);
    let bar1 = net.bars[1].expect("BAR 1");
    let bar4 = net.bars[4].expect("BAR 4");
    assert_eq!((bar1.kind, bar1.size), (BarKind::Memory32, 0x1000));
    assert_eq!((bar4.kind, bar4.size), (BarKind::Memory64, 0x4000));
    assert!(net.bars[0].is_none() && net.bars[5].is_none(), "{net:?}");
    // The registers hold the addresses (type bits kept), and decoding is on.
    let f = fake.get(2, 0);
    assert_eq!(f.regs[5], bar1.address as u32);
    assert_eq!(
        u64::from(f.regs[9]) << 32 | u64::from(f.regs[8] & !0xf),
        bar4.address
    );
    assert_eq!(f.regs[8] & 0xf, 0b1100);
    assert_eq!(f.command(), COMMAND_MEMORY | COMMAND_BUS_MASTER);
}

#[test]
fn io_bars_are_reported_where_they_are_and_not_moved() {
    let mut fake = q35();
    let (_, devices) = run(&mut fake, Q35_MMIO_WINDOW);
    let legacy = devices
        .iter()
        .find(|d| d.device == 0x1000)
        .expect("virtio-net (legacy)");
    let io = legacy.bars[0].expect("BAR 0");
    assert_eq!((io.kind, io.address, io.size), (BarKind::Io, 0xc040, 32));
    assert_eq!(fake.get(3, 0).regs[4], 0xc041);
    let smbus = devices.iter().find(|d| d.device == 0x2930).expect("SMBus");
    assert_eq!(smbus.memory_bars().count(), 0);
    assert_eq!(
        fake.get(0x1f, 3).command(),
        0,
        "no memory BAR: nothing enabled"
    );
    assert_eq!(fake.get(0, 0).command(), 0);
}

#[test]
fn bars_are_aligned_to_their_size() {
    // A window starting off a 16 MiB boundary: the VGA framebuffer must still be aligned.
    let window = 0xc000_1000..0xd000_0000;
    let (_, devices) = run(&mut q35(), window.clone());
    check_assignments(&devices, &window);
    let vga = devices[1].bars[0].expect("framebuffer");
    assert_eq!(vga.address, 0xc100_0000);
}

#[test]
fn an_all_ones_config_space_has_no_devices() {
    let mut fake = Fake::default();
    let (scan, _) = run(&mut fake, Q35_MMIO_WINDOW);
    assert_eq!(scan, Scan::default());
}

#[test]
fn absurd_and_malformed_bars_skip_the_device_with_decoding_off() {
    for (f, reason) in [
        // 2^62 bytes: never fits.
        (
            FakeFunction::new(0x1af4, 0x1041, 0x02_00_00, 0).mem64(0, 1 << 62),
            SkipReason::WindowFull,
        ),
        // Larger than the window.
        (
            FakeFunction::new(0x1af4, 0x1041, 0x02_00_00, 0).mem32(0, 1 << 31, false),
            SkipReason::WindowFull,
        ),
        // 64-bit in the last slot.
        (
            FakeFunction::new(0x1af4, 0x1041, 0x02_00_00, 0)
                .mem64(4, 0x1000)
                .mem32(4, 16, false),
            SkipReason::BadBar,
        ),
        // Reserved type (below 1 MiB).
        (
            {
                let mut f =
                    FakeFunction::new(0x1af4, 0x1041, 0x02_00_00, 0).mem32(0, 0x1000, false);
                f.regs[4] = 0b010;
                f
            },
            SkipReason::BadBar,
        ),
        // Not a power of two.
        (
            {
                let mut f = FakeFunction::new(0x1af4, 0x1041, 0x02_00_00, 0);
                f.bar_masks[0] = 0xfff0_f000;
                f
            },
            SkipReason::BadBar,
        ),
        (
            FakeFunction::new(0x1af4, 0x1041, 0x02_00_00, 0x02),
            SkipReason::BadHeader,
        ),
    ] {
        let f = {
            let mut f = f;
            if reason == SkipReason::BadBar && f.bar_masks[5] != 0 {
                // The 64-bit-in-slot-5 case: make slot 5 the 64-bit one.
                f.regs[9] = 0b100;
            }
            f.regs[1] |= COMMAND_MEMORY | COMMAND_IO;
            f
        };
        let mut fake = Fake::default().with(2, 0, f).with(
            3,
            0,
            FakeFunction::new(0x1af4, 0x1041, 0x02_00_00, 0).mem32(1, 0x1000, false),
        );
        let (scan, devices) = run(&mut fake, Q35_MMIO_WINDOW);
        assert_eq!(
            (scan.found, scan.skipped, scan.last_skip),
            (1, 1, Some(reason))
        );
        assert_eq!(devices[0].address.device, 3);
        // The good device got the window's start: the bad one took nothing.
        assert_eq!(
            devices[0].bars[1].expect("BAR 1").address,
            Q35_MMIO_WINDOW.start
        );
        if reason != SkipReason::BadHeader {
            assert_eq!(
                fake.get(2, 0).command() & (COMMAND_MEMORY | COMMAND_IO),
                0,
                "{reason:?}"
            );
        }
    }
}

#[test]
fn a_capability_loop_or_a_wild_pointer_skips_the_device() {
    // (the first pointer, then (offset, next) of each entry)
    for (first, entries) in [
        (0x98, &[(0x98, 0x84), (0x84, 0x70), (0x70, 0x98)][..]),
        (0x40, &[(0x40, 0x40)]),
        (0xfc, &[(0xfc, 0xfc)]),
        (0x20, &[]),
        (0x41, &[]),
        (0x98, &[(0x98, 0x3c)]),
    ] {
        let mut f = FakeFunction::new(0x1af4, 0x1041, 0x02_00_00, 0).caps(&[]);
        f.regs[13] = first;
        for &(at, next) in entries {
            f.regs[at / 4] = next << 8 | 0x09;
        }
        let mut fake = Fake::default().with(0, 0, f);
        let (scan, _) = run(&mut fake, Q35_MMIO_WINDOW);
        assert_eq!(
            (scan.found, scan.last_skip),
            (0, Some(SkipReason::BadCapabilities)),
            "{first:x} {entries:x?}"
        );
    }
}

#[test]
fn a_full_list_counts_the_rest_as_skipped() {
    let mut out = [Device::default(); 3];
    let scan = scan(&mut q35(), &mut MmioWindow::new(Q35_MMIO_WINDOW), &mut out);
    assert_eq!((scan.found, scan.skipped), (3, 4));
    assert_eq!(scan.last_skip, Some(SkipReason::ListFull));
}

/// The q35 bus with random registers set to edgy values, random BAR masks, extra random
/// functions, and some reads returning garbage.
fn mutate(fake: &mut Fake, r: &mut Rng) {
    for _ in 0..r.below(4) {
        let f = FakeFunction::new(
            r.edgy(16) as u16,
            r.edgy(16) as u16,
            r.edgy(24) as u32,
            r.edgy(8) as u8,
        );
        fake.functions
            .insert((r.below(32) as u8, r.below(8) as u8), f);
    }
    let keys: Vec<_> = fake.functions.keys().copied().collect();
    for _ in 0..r.below(8) {
        let f = fake.functions.get_mut(&r.pick(&keys)).expect("a key");
        if r.chance(50) {
            let i = r.below(6) as usize;
            f.bar_masks[i] = r.edgy_u32();
            if r.chance(50) {
                f.regs[4 + i] = r.edgy_u32();
            }
        } else {
            let i = r.pick(&[0usize, 1, 2, 3, 4, 9, 13, 15, 16, 17, 24, 38, 63]);
            f.regs[i] = r.edgy_u32();
        }
    }
    if r.chance(30) {
        fake.chaos = Some((Rng::new(r.next_u64()), r.pick(&[1, 5, 50, 100])));
    }
}

#[test]
fn random_config_spaces_never_panic_nor_overlap() {
    let mut r = Rng::new(0x9c1_0001);
    let (mut found, mut skipped) = (0usize, 0usize);
    for case in 0..cases(5_000) {
        let mut fake = q35();
        mutate(&mut fake, &mut r);
        let (start, end) = r.pick(&[
            (Q35_MMIO_WINDOW.start, Q35_MMIO_WINDOW.end),
            (0xffff_f000, 0x1_0000_1000),
            (u64::MAX - 0x10_0000, u64::MAX),
            (0, 0),
        ]);
        let window = start..end;
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let (scan, devices) = run(&mut fake, window.clone());
            check_assignments(&devices, &window);
            scan
        }));
        match result {
            Ok(scan) => {
                found += scan.found;
                skipped += scan.skipped;
            }
            Err(_) => panic!("case {case} panicked (seed 0x9c10001)"),
        }
    }
    assert!(found > 0 && skipped > 0, "found {found}, skipped {skipped}");
}

#[test]
fn the_virtio_filter_leaves_every_other_function_alone() {
    let mut fake = q35();
    let before = fake.functions.clone();
    let mut out = [Device::default(); 16];
    let scan = scan_filtered(
        &mut fake,
        &mut MmioWindow::new(Q35_MMIO_WINDOW),
        &mut out,
        |vendor, _| vendor == VIRTIO_VENDOR,
    );
    assert_eq!((scan.found, scan.skipped, scan.ignored), (2, 0, 5));
    let kept: Vec<_> = out[..scan.found]
        .iter()
        .map(|d| d.address.to_string())
        .collect();
    assert_eq!(kept, ["00:02.0", "00:03.0"]);
    check_assignments(&out[..scan.found], &Q35_MMIO_WINDOW);
    for (key, f) in &fake.functions {
        let old = &before[key];
        if old.regs[0] as u16 == VIRTIO_VENDOR {
            assert_eq!(
                f.command() & 0b110,
                0b110,
                "{key:?}: memory and bus master on"
            );
        } else {
            assert_eq!(f.regs, old.regs, "{key:?} was touched");
        }
    }
    // The modern virtio-net's 64-bit BAR is the first thing in the window.
    assert!(
        out[0]
            .memory_bars()
            .all(|b| b.address >= Q35_MMIO_WINDOW.start)
    );
}

#[test]
fn virtio_types_from_pci_ids() {
    assert_eq!(virtio_type(0x1af4, 0x1000), Some(1));
    assert_eq!(virtio_type(0x1af4, 0x1041), Some(1));
    assert_eq!(virtio_type(0x1af4, 0x1001), Some(2));
    assert_eq!(virtio_type(0x1af4, 0x1042), Some(2));
    assert_eq!(virtio_type(0x1af4, 0x1005), Some(4));
    assert_eq!(virtio_type(0x1af4, 0x1040), None);
    assert_eq!(virtio_type(0x1af4, 0x1110), None);
    assert_eq!(virtio_type(0x8086, 0x1041), None);
}

#[test]
fn q35_intx_follows_the_ich9_swizzle() {
    let q = HostBridge::of(0x8086, 0x29c0);
    assert_eq!(q, HostBridge::Q35);
    // The interrupt line (qboot's 8259 IRQ) is ignored on q35.
    assert_eq!(intx_gsi(q, 1, 1, 10), Some(21));
    assert_eq!(intx_gsi(q, 2, 1, 11), Some(22));
    assert_eq!(intx_gsi(q, 3, 1, 0xff), Some(23));
    assert_eq!(intx_gsi(q, 4, 1, 0), Some(20));
    assert_eq!(intx_gsi(q, 2, 2, 0), Some(23));
    assert_eq!(intx_gsi(q, 2, 3, 0), Some(20));
    assert_eq!(intx_gsi(q, 24, 4, 0), Some(23));
    // The chipset's own devices: D{n}IR reset value 0x3210, no swizzle.
    assert_eq!(intx_gsi(q, 31, 1, 10), Some(16));
    assert_eq!(intx_gsi(q, 25, 4, 10), Some(19));
    assert_eq!(intx_gsi(q, 30, 2, 10), Some(21));
    // No pin.
    assert_eq!(intx_gsi(q, 2, 0, 10), None);
    assert_eq!(intx_gsi(q, 2, 5, 10), None);
    assert_eq!(intx_gsi(q, 32, 1, 10), None);
}

#[test]
fn other_host_bridges_use_the_interrupt_line() {
    let pc = HostBridge::of(0x8086, 0x1237);
    assert_eq!(pc, HostBridge::Other);
    assert_eq!(intx_gsi(pc, 2, 1, 11), Some(11));
    assert_eq!(intx_gsi(pc, 2, 1, 0xff), None);
    assert_eq!(intx_gsi(pc, 2, 1, 0), None);
    assert_eq!(intx_gsi(pc, 2, 0, 11), None);
}

#[test]
fn random_intx_routes_stay_on_the_pirq_inputs() {
    let mut r = Rng::new(0x1a7_0001);
    for _ in 0..cases(20_000) {
        let (device, pin, line) = (r.edgy(8) as u8, r.edgy(8) as u8, r.edgy(8) as u8);
        let q = intx_gsi(HostBridge::Q35, device, pin, line);
        let other = intx_gsi(HostBridge::Other, device, pin, line);
        if device >= 32 || !(1..=4).contains(&pin) {
            assert_eq!((q, other), (None, None), "{device} {pin} {line}");
            continue;
        }
        let gsi = q.expect("a pin on q35 always has a route");
        assert!((16..24).contains(&gsi), "{device} {pin}: {gsi}");
        // The swizzle: device d's pin p shares its PIRQ with device d + 1's pin p - 1.
        if device < 24 && pin > 1 {
            assert_eq!(intx_gsi(HostBridge::Q35, device + 1, pin - 1, line), q);
        }
        assert_eq!(
            other,
            (line != 0 && line != 0xff).then_some(u32::from(line))
        );
    }
}
