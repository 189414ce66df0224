use super::*;
use platform::fuzz::{Rng, cases};
use std::collections::HashMap;
use std::format;
use std::string::{String, ToString};
use std::vec::Vec;

fn t(base: u64, size: u64, gsi: u32) -> Transport {
    Transport { base, size, gsi }
}

#[test]
fn the_forms_monitors_write_parse() {
    // QEMU microvm with acpi=off (the last of its 8 transports), and Firecracker.
    assert_eq!(
        parse_device("512@0xfeb00e00:12"),
        Ok(t(0xfeb0_0e00, 512, 12))
    );
    assert_eq!(parse_device("4K@0xd0000000:5"), Ok(t(0xd000_0000, 4096, 5)));
    // Linux's variants: lower-case suffixes, 0X, a decimal base, a platform-device id.
    assert_eq!(parse_device("4k@0Xd0001000:6"), Ok(t(0xd000_1000, 4096, 6)));
    assert_eq!(parse_device("1M@4096:0"), Ok(t(4096, 1 << 20, 0)));
    assert_eq!(parse_device("1g@0x0:7:3"), Ok(t(0, 1 << 30, 7)));
    assert_eq!(
        parse_device("256@0xAbC00:4294967295"),
        Ok(t(0xabc00, 256, u32::MAX))
    );
}

#[test]
fn garbage_is_refused_with_the_reason() {
    use DeviceParamError::*;
    let cases: &[(&str, DeviceParamError)] = &[
        ("", BadSize),
        ("@0x1000:5", BadSize),
        ("0x200@0x1000:5", NoBase), // the size is decimal: "0" then "x200"
        ("4T@0x1000:5", NoBase),
        ("-4K@0x1000:5", BadSize),
        ("99999999999999999999@0x1000:5", BadSize),
        ("17179869184G@0x0:5", BadSize), // 2^34 GiB overflows 64 bits
        ("4K", NoBase),
        ("4K 0x1000:5", NoBase),
        ("4K@", BadBase),
        ("4K@0x:5", BadBase),
        ("4K@0xg000:5", BadBase),
        ("4K@0x10000000000000000:5", BadBase),
        ("4K@0x1000", NoIrq),
        ("4K@0x1000;5", NoIrq),
        ("4K@0x1000:", BadIrq),
        ("4K@0x1000:x", BadIrq),
        ("4K@0x1000:-1", BadIrq),
        ("4K@0x1000:4294967296", BadIrq),
        ("4K@0x1000:5 ", Trailing),
        ("4K@0x1000:5:", Trailing),
        ("4K@0x1000:5:1:2", Trailing),
        ("4K@0x1000:5x", Trailing),
        ("255@0x1000:5", TooSmall(255)),
        ("0@0x1000:5", TooSmall(0)),
        ("4K@0x1002:5", Misaligned(0x1002)),
        (
            "4K@0xfffffffffffff000:5",
            OutOfRange {
                base: 0xffff_ffff_ffff_f000,
                size: 4096,
            },
        ),
        (
            "8K@0xfffffffffffff000:5",
            OutOfRange {
                base: 0xffff_ffff_ffff_f000,
                size: 8192,
            },
        ),
        (
            "4K@0x10000000000000:5",
            OutOfRange {
                base: 1 << 52,
                size: 4096,
            },
        ),
        ("4K@０x1000:5", BadBase), // a full-width digit
    ];
    for (value, error) in cases {
        assert_eq!(parse_device(value), Err(*error), "{value:?}");
        let message = error.to_string();
        assert!(message.len() > 20, "{value:?}: {message}");
    }
    // The window may end exactly at the top of the physical address space.
    assert_eq!(
        parse_device("4K@0xffffffffff000:5"),
        Ok(t(PHYS_LIMIT - 4096, 4096, 5))
    );
    assert!(
        BadSize.to_string().contains("4K@0xd0000000:5"),
        "the message shows the form"
    );
}

#[test]
fn microvm_acpi_is_24_transports_of_512_bytes_on_gsi_24_up() {
    assert_eq!(MICROVM_ACPI.len(), 24);
    assert_eq!(MICROVM_ACPI[0], t(0xfeb0_0000, 512, 24));
    assert_eq!(MICROVM_ACPI[7], t(0xfeb0_0e00, 512, 31));
    assert_eq!(MICROVM_ACPI[23], t(0xfeb0_2e00, 512, 47));
    for (n, pair) in MICROVM_ACPI.windows(2).enumerate() {
        assert_eq!(pair[0].end(), Some(pair[1].base), "transport {n}");
        assert_eq!(pair[0].gsi + 1, pair[1].gsi, "transport {n}");
    }
    // All below the IOAPICs (0xfec00000 and 0xfec10000), and the second one takes GSI
    // 24..48 (24 inputs).
    assert!(MICROVM_ACPI[23].end().is_some_and(|e| e <= 0xfec0_0000));
    assert_eq!(MICROVM_IOAPIC2, 0xfec1_0000);
    let list = Transports::microvm_acpi();
    assert_eq!(list.as_slice(), &MICROVM_ACPI);
    assert_eq!(list.len(), 24);
    // The command line's transports with acpi=off are the first 8 windows, on IRQ 5 + n.
    let legacy = format!(
        "{PARAM}512@{:#x}:{}",
        MICROVM_BASE + 7 * MICROVM_STRIDE,
        MICROVM_LEGACY_IRQ_BASE + 7
    );
    let (list, result) = Transports::from_params([legacy.as_str()]);
    assert_eq!(result, Ok(()));
    assert_eq!(list.as_slice(), &[t(MICROVM_ACPI[7].base, 512, 12)]);
    assert_eq!(MICROVM_LEGACY_COUNT, 8);
}

#[test]
fn params_make_a_list_of_the_good_ones_and_name_the_first_bad_one() {
    let (list, result) = Transports::from_params([]);
    assert!(list.is_empty() && result.is_ok());
    let (list, result) = Transports::from_params([
        "virtio_mmio.device=4K@0xd0000000:5",
        "console=ttyS0",
        "virtio_mmio.device=4K@0xd0001000:6",
    ]);
    assert_eq!(result, Ok(()));
    assert_eq!(
        list.as_slice(),
        &[t(0xd000_0000, 4096, 5), t(0xd000_1000, 4096, 6)]
    );
    let (list, result) = Transports::from_params([
        "virtio_mmio.device=4K@0xd0000000:5",
        "virtio_mmio.device=4K@0xd0000800:6", // overlaps the first
        "virtio_mmio.device=junk",
        "virtio_mmio.device=512@0xd0002000:7",
    ]);
    assert_eq!(
        result,
        Err(ListError::Overlaps(
            t(0xd000_0800, 4096, 6),
            t(0xd000_0000, 4096, 5)
        ))
    );
    assert_eq!(
        list.as_slice(),
        &[t(0xd000_0000, 4096, 5), t(0xd000_2000, 512, 7)]
    );
    let (_, result) = Transports::from_params(["virtio_mmio.device=junk"]);
    assert_eq!(
        result,
        Err(ListError::BadParam(
            "virtio_mmio.device=junk",
            DeviceParamError::BadSize
        ))
    );
    assert!(
        result
            .unwrap_err()
            .to_string()
            .starts_with("`virtio_mmio.device=junk`: bad size")
    );
}

#[test]
fn the_monitor_tokens_of_a_command_line_make_the_list() {
    // As xtask writes the app's arguments and Firecracker appends its devices; a closed list
    // keeps an argument that looks like a transport the app's.
    let line = "log=info -- \"two words\" virtio_mmio.device=4K@0x1000:1 -- \
                virtio_mmio.device=4K@0xd0000000:5 virtio_mmio.device=4K@0xd0001000:6";
    let (list, result) = Transports::from_params(cmdline::monitor_params(line));
    assert_eq!(result, Ok(()));
    assert_eq!(
        list.as_slice(),
        &[t(0xd000_0000, 4096, 5), t(0xd000_1000, 4096, 6)]
    );
    // QEMU microvm with ACPI appends nothing: the list is empty, the table is the caller's.
    let (list, result) = Transports::from_params(cmdline::monitor_params("-- hello --"));
    assert!(list.is_empty() && result.is_ok());
}

#[test]
fn a_list_refuses_overlaps_and_stops_when_full() {
    let mut list = Transports::new();
    for n in 0..MAX_TRANSPORTS as u64 {
        assert_eq!(list.push(t(0x1000 * n, 0x1000, n as u32)), Ok(()));
    }
    assert_eq!(list.push(t(0x100_0000, 0x1000, 99)), Err(ListError::Full));
    assert_eq!(list.len(), MAX_TRANSPORTS);
    let mut list = Transports::default();
    list.push(t(0x2000, 0x1000, 1)).unwrap();
    for (base, size) in [(0x2000, 0x100), (0x1f00, 0x101), (0x2ffc, 4), (0, 1 << 20)] {
        assert!(
            matches!(list.push(t(base, size, 2)), Err(ListError::Overlaps(..))),
            "{base:#x}+{size:#x}"
        );
    }
    for (base, size) in [(0x1f00, 0x100), (0x3000, 0x100)] {
        assert_eq!(list.push(t(base, size, 2)), Ok(()), "{base:#x}+{size:#x}");
    }
    // A window that would wrap overlaps everything above its base.
    let top = t(u64::MAX - 0xff, 0x200, 3);
    assert!(top.end().is_none());
    assert!(top.overlaps(&t(u64::MAX - 3, 4, 4)));
    assert!(!top.overlaps(&t(0x1000, 4, 4)));
}

/// Device registers on the host: values at addresses, and for any other address either 0
/// (QEMU's unassigned memory) or random garbage.
struct FakeMmio {
    regs: HashMap<u64, u32>,
    garbage: Option<Rng>,
    reads: Vec<u64>,
}

impl FakeMmio {
    fn new() -> Self {
        FakeMmio {
            regs: HashMap::new(),
            garbage: None,
            reads: Vec::new(),
        }
    }

    /// A transport at `base` with these identification registers.
    fn with_transport(mut self, base: u64, magic: u32, version: u32, device: u32) -> Self {
        self.regs.insert(base, magic);
        self.regs.insert(base + 4, version);
        self.regs.insert(base + 8, device);
        self.regs.insert(base + 12, 0x554d_4551); // "QEMU"
        self
    }
}

impl MmioRead for FakeMmio {
    fn read_u32(&mut self, addr: u64) -> u32 {
        self.reads.push(addr);
        match (self.regs.get(&addr), &mut self.garbage) {
            (Some(v), _) => *v,
            (None, Some(r)) => r.next_u64() as u32,
            (None, None) => 0,
        }
    }
}

#[test]
fn probe_tells_a_device_an_empty_slot_and_no_transport_apart() {
    let net = MICROVM_ACPI[23];
    let empty = MICROVM_ACPI[22];
    let mut mmio = FakeMmio::new()
        .with_transport(net.base, MAGIC, 2, 1)
        .with_transport(empty.base, MAGIC, 1, 0)
        .with_transport(0xd000_0000, 0x7472_6977, 2, 1)
        .with_transport(0xd000_1000, MAGIC, 3, 1)
        .with_transport(0xd000_2000, MAGIC, 0, 1);
    let found = probe(&mut mmio, net).unwrap();
    assert_eq!(
        found,
        Probed {
            transport: net,
            version: Version::Modern,
            device_id: 1,
            vendor_id: 0x554d_4551,
        }
    );
    assert!(found.has_device());
    assert_eq!(device_name(found.device_id), Some("network"));
    assert_eq!(
        mmio.reads,
        [net.base, net.base + 4, net.base + 8, net.base + 12]
    );
    let slot = probe(&mut mmio, empty).unwrap();
    assert_eq!((slot.version, slot.has_device()), (Version::Legacy, false));
    // Unassigned memory reads 0: no magic.
    assert_eq!(
        probe(&mut mmio, MICROVM_ACPI[0]),
        Err(ProbeError::BadMagic(0))
    );
    assert_eq!(
        probe(&mut mmio, t(0xd000_0000, 4096, 5)),
        Err(ProbeError::BadMagic(0x7472_6977))
    );
    for (base, version) in [(0xd000_1000, 3), (0xd000_2000, 0)] {
        assert_eq!(
            probe(&mut mmio, t(base, 4096, 5)),
            Err(ProbeError::BadVersion(version))
        );
    }
    assert!(
        ProbeError::BadMagic(0)
            .to_string()
            .contains("magic 0x00000000, not 0x74726976")
    );
    assert!(ProbeError::BadVersion(3).to_string().contains("version 3"));
    assert_eq!(device_name(2), Some("block"));
    assert_eq!(device_name(0), None);
    assert_eq!(device_name(u32::MAX), None);
}

#[test]
fn probe_reads_only_inside_the_window_even_at_the_top_of_memory() {
    let mut mmio = FakeMmio::new();
    mmio.garbage = Some(Rng::new(5));
    let top = t(u64::MAX - 0xff, 0x100, 1);
    // Garbage magic: one read; no arithmetic overflow on the way.
    assert!(probe(&mut mmio, top).is_err());
    assert_eq!(mmio.reads, [u64::MAX - 0xff]);
}

/// A value that `parse_device` should take, as a monitor might write it, and the transport it
/// stands for.
fn valid(r: &mut Rng) -> (String, Transport) {
    let (suffix, shift) = r.pick(&[("", 0), ("K", 10), ("k", 10), ("M", 20), ("G", 30)]);
    let n = if shift == 0 {
        MIN_SIZE + r.below(0x10000)
    } else {
        1 + r.below(64)
    };
    let size = n << shift;
    let base = (r.below((PHYS_LIMIT - size) / 4 + 1)) * 4;
    let gsi = r.edgy_u32();
    let base_text = if r.chance(80) {
        format!("{base:#x}")
    } else {
        format!("{base}")
    };
    let id = if r.chance(10) {
        format!(":{}", r.below(100))
    } else {
        String::new()
    };
    (
        format!("{n}{suffix}@{base_text}:{gsi}{id}"),
        Transport { base, size, gsi },
    )
}

/// `s` with a few random edits: characters of the grammar and others inserted, removed or
/// replaced, or cut short.
fn mutate(s: &str, r: &mut Rng) -> String {
    const PIECES: &[&str] = &[
        "@",
        ":",
        "0x",
        "x",
        "K",
        "M",
        "G",
        "T",
        "0",
        "9",
        "f",
        "-",
        "+",
        " ",
        "é",
        "\u{0}",
        "18446744073709551616",
        "4294967296",
        "0xffffffffffffffff",
    ];
    let mut chars: Vec<String> = s.chars().map(String::from).collect();
    for _ in 0..1 + r.below(3) {
        let at = r.below(chars.len() as u64 + 1) as usize;
        match r.below(4) {
            0 => chars.insert(at, r.pick(PIECES).to_string()),
            1 if at < chars.len() => {
                chars.remove(at);
            }
            2 if at < chars.len() => chars[at] = r.pick(PIECES).to_string(),
            _ => chars.truncate(at),
        }
    }
    chars.concat()
}

#[test]
fn random_values_parse_to_a_sound_window_or_an_error_never_a_panic() {
    let mut r = Rng::new(0x7669_0001);
    let (mut ok, mut errors) = (0u64, HashMap::new());
    for case in 0..cases(20_000) {
        let (text, transport) = valid(&mut r);
        assert_eq!(parse_device(&text), Ok(transport), "case {case}: {text:?}");
        let text = if r.chance(10) {
            let n = r.below(24) as usize;
            String::from_utf8_lossy(&r.bytes(n)).into_owned()
        } else {
            mutate(&text, &mut r)
        };
        let result = std::panic::catch_unwind(|| parse_device(&text));
        match result {
            Ok(Ok(t)) => {
                ok += 1;
                // Whatever is accepted is a window the rest of the kernel can use, and reads
                // back the same when written in the canonical form.
                assert!(t.size >= MIN_SIZE && t.base % 4 == 0, "{text:?}: {t:?}");
                assert!(t.end().is_some_and(|e| e <= PHYS_LIMIT), "{text:?}: {t:?}");
                let canonical = format!("{}@{:#x}:{}", t.size, t.base, t.gsi);
                assert_eq!(parse_device(&canonical), Ok(t), "{text:?}");
            }
            Ok(Err(e)) => {
                *errors.entry(core::mem::discriminant(&e)).or_insert(0u64) += 1;
                assert!(!e.to_string().is_empty());
            }
            Err(_) => panic!("case {case} panicked on {text:?} (seed 0x76690001)"),
        }
    }
    // The inputs reach acceptance and every error (else the generator is too tame or too
    // wild).
    assert!(ok > 0, "no mutated value was accepted");
    assert_eq!(errors.len(), 9, "errors seen: {errors:?}");
}

#[test]
fn random_registers_give_a_transport_only_with_the_magic_and_a_known_version() {
    let mut r = Rng::new(0x7669_0002);
    let mut outcomes = [0u64; 4];
    for _ in 0..cases(20_000) {
        let base = r.edgy_u64() & !3;
        let magic = if r.chance(60) { MAGIC } else { r.edgy_u32() };
        let version = if r.chance(70) {
            r.pick(&[1, 2])
        } else {
            r.edgy_u32()
        };
        let mut mmio = FakeMmio::new();
        mmio.garbage = Some(Rng::new(r.next_u64()));
        mmio.regs.insert(base, magic);
        mmio.regs.insert(base.wrapping_add(4), version);
        if r.chance(30) {
            mmio.regs.insert(base.wrapping_add(8), 0);
        }
        let transport = t(base, 512, r.edgy_u32());
        match probe(&mut mmio, transport) {
            Ok(p) => {
                assert_eq!(magic, MAGIC);
                assert_eq!(p.transport, transport);
                assert_eq!(
                    p.version,
                    if version == 1 {
                        Version::Legacy
                    } else {
                        Version::Modern
                    }
                );
                outcomes[usize::from(p.has_device())] += 1;
            }
            Err(ProbeError::BadMagic(m)) => {
                assert_eq!((m, mmio.reads.len()), (magic, 1));
                outcomes[2] += 1;
            }
            Err(ProbeError::BadVersion(v)) => {
                assert_eq!((magic, v), (MAGIC, version));
                assert!(v != 1 && v != 2);
                outcomes[3] += 1;
            }
        }
    }
    assert!(outcomes.iter().all(|&n| n > 0), "{outcomes:?}");
}
