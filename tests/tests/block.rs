//! The disk end to end, on whole images under QEMU (TCG): app `blkprobe` with profile `storage`
//! (virtio-blk, `block_device = "virtio"`), on `q35` (virtio-blk-pci), `microvm` with ACPI
//! (virtio-mmio, modern: the NIC's `force-legacy=false`; legacy without a NIC) and the
//! universal image (`platform=universal`) on `q35`, each with a fresh raw image file.
//!
//! - a boot writes a pattern over 1000 blocks (several requests in flight), flushes, reads it
//!   back and checks it; a second boot of the same image file only verifies it (persistence);
//!   then the host reads the file and finds the pattern at the blocks' offsets, and nothing
//!   written outside them;
//! - a read-only disk (`readonly=on`): the write is refused with the driver's clear error
//!   (`the disk is read-only`, status 5), the read works, the file is untouched;
//! - without a disk: `block: no disk`, and blkprobe's documented status 3.
//!
//! blkprobe writes the raw disk, so its images have no filesystem (`filesystem=none`: profile
//! storage would mount sdfs at boot and format the blank disk); tests/fs.rs tests that.
//!
//! Each test runs its machines in parallel threads.

use std::path::{Path, PathBuf};

use stardust_tests::{Boot, Machine, Run, Target, assert_exit, line_with, on_targets};

/// Blocks blkprobe writes by default, from block [`START`].
const BLOCKS: u64 = 1000;
const START: u64 = 8;
/// The image files' size.
const IMAGE_BYTES: u64 = 4 << 20;

/// Byte `offset` of the disk in blkprobe's pattern of `seed` (apps/blkprobe's `byte`).
fn byte(seed: u64, offset: u64) -> u8 {
    let x = (offset ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    (x >> 56) as u8
}

const Q35: Target = Target {
    name: "q35",
    machine: Machine::Q35,
    set: &["filesystem=none"],
};
const MICROVM: Target = Target {
    name: "microvm",
    machine: Machine::Microvm,
    set: &["filesystem=none"],
};
/// microvm without a NIC: QEMU's virtio-mmio transports stay legacy (version 1).
const MICROVM_LEGACY: Target = Target {
    name: "microvm legacy virtio-mmio",
    machine: Machine::Microvm,
    set: &["net_device=none", "filesystem=none"],
};
const UNIVERSAL_Q35: Target = Target {
    name: "universal on q35",
    machine: Machine::Q35,
    // Both disk drivers in the image (virtio-blk and blkfront), virtio-blk taken at boot.
    set: &[
        "platform=universal",
        "console=auto",
        "filesystem=none",
        "block_device=auto",
    ],
};

/// A zeroed raw image file of [`IMAGE_BYTES`], removed when dropped.
struct Image(PathBuf);

impl Image {
    fn new(name: &str) -> Image {
        Image::sized(name, IMAGE_BYTES)
    }

    fn sized(name: &str, bytes: u64) -> Image {
        let path = std::env::temp_dir().join(format!(
            "stardust-block-{}-{}.img",
            std::process::id(),
            name.replace(' ', "-")
        ));
        let file = std::fs::File::create(&path).expect("create the image");
        file.set_len(bytes).expect("size the image");
        Image(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn bytes(&self) -> Vec<u8> {
        std::fs::read(&self.0).expect("read the image")
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn boot(t: Target, image: Option<&Image>, read_only: bool, args: &[&str]) -> Boot {
    let mut run = Run::new("blkprobe")
        .profile("storage")
        .machine(t.machine)
        .set(t.set)
        .args(args);
    if let Some(image) = image {
        run = run.disk(image.path(), read_only);
    }
    let boot = run.boot();
    for bad in ["PANIC", "EXCEPTION", "[ERROR"] {
        assert!(!boot.stdout.contains(bad), "{bad} on the console");
    }
    boot
}

#[test]
fn a_write_is_read_back_verified_by_a_second_boot_and_found_in_the_image_file() {
    on_targets(&[Q35, MICROVM, UNIVERSAL_Q35], |t| {
        let seed = match t.name {
            "q35" => 11,
            "microvm" => 12,
            _ => 13,
        };
        let seed_arg = format!("seed={seed}");
        let image = Image::new(t.name);
        let first = boot(t, Some(&image), false, &[&seed_arg]);
        assert_exit(&first, 0);
        line_with(
            &first,
            &[
                "block: virtio-blk at",
                "4096 KiB (8192 blocks of 512 bytes)",
                "read-write, flush, interrupt",
            ],
        );
        line_with(
            &first,
            &["blkprobe: wrote, flushed and read back 1000 blocks"],
        );
        let stats = line_with(&first, &["blkprobe: stats"]);
        assert!(
            stats.contains("flushes 1 ") && stats.contains("device_errors 0"),
            "{stats}"
        );
        assert!(!stats.contains("interrupts 0"), "interrupt-driven: {stats}");

        let second = boot(t, Some(&image), false, &[&seed_arg, "verify"]);
        assert_exit(&second, 0);
        line_with(&second, &["blkprobe: verified 1000 blocks from 8"]);

        let bytes = image.bytes();
        assert_eq!(bytes.len() as u64, IMAGE_BYTES);
        let (from, to) = ((START * 512) as usize, ((START + BLOCKS) * 512) as usize);
        assert!(
            bytes[..from].iter().all(|&b| b == 0),
            "nothing written before the range"
        );
        assert!(
            bytes[to..].iter().all(|&b| b == 0),
            "nothing written after the range"
        );
        if let Some(at) = (from..to).find(|&i| bytes[i] != byte(seed, i as u64)) {
            panic!("the image file differs from the pattern at byte {at}");
        }
    });
}

#[test]
fn a_read_only_disk_refuses_the_write_clearly_and_still_reads() {
    on_targets(&[Q35, MICROVM_LEGACY], |t| {
        let image = Image::new(&format!("ro-{}", t.name));
        let boot = boot(t, Some(&image), true, &[]);
        assert_exit(&boot, 5);
        line_with(&boot, &["block: virtio-blk at", "read-only"]);
        line_with(&boot, &["blkprobe: write refused: the disk is read-only"]);
        line_with(&boot, &["blkprobe: read 1000 blocks ok"]);
        assert!(
            image.bytes().iter().all(|&b| b == 0),
            "the file is untouched"
        );
    });
}

#[test]
fn without_a_disk_the_kernel_and_blkprobe_say_so() {
    let boot = boot(Q35, None, false, &[]);
    assert_exit(&boot, 3);
    line_with(&boot, &["block: no disk"]);
    line_with(&boot, &["blkprobe: no disk"]);
}

/// `blkprobe bench` (the Stardust side of `cargo xtask bench disk`): a line per workload in
/// the contract's form, then `bench done`; a request it cannot run is a `bench error` line.
#[test]
fn the_disk_bench_probe_keeps_its_contract() {
    let image = Image::new("bench");
    let args = [
        "bench",
        "layer=driver",
        "bytes=2097152",
        "seconds=1",
        "runs=1",
        "qd=1",
    ];
    let boot = boot(Q35, Some(&image), false, &args);
    assert_exit(&boot, 0);
    for name in ["seqwrite", "seqread", "randwrite", "randread"] {
        let line = line_with(&boot, &[&format!("bench {name} ")]);
        let words: Vec<&str> = line[line.find("bench ").expect("found")..]
            .split_whitespace()
            .collect();
        assert_eq!(words.len(), 4, "{line}");
        let (bytes, ns): (u64, u64) = (
            words[2].parse().expect("bytes"),
            words[3].parse().expect("ns"),
        );
        assert!(bytes > 0 && ns > 0, "{line}");
    }
    line_with(&boot, &["bench done"]);
    assert!(
        image.bytes()[..2 << 20].iter().all(|&b| b == 0x5a),
        "the region was written whole"
    );
    let refused = boot_bench(&["bench", "layer=driver", "qd=4"]);
    assert_exit(&refused, 5);
    line_with(&refused, &["bench error qd=4"]);
}

fn boot_bench(args: &[&str]) -> Boot {
    let image = Image::new("bench-refused");
    boot(Q35, Some(&image), false, args)
}

/// `blkprobe bench layer=fs`: the same contract through `stardust::fs` (profile storage's
/// filesystem, on a blank disk formatted at boot).
#[test]
fn the_disk_bench_probe_runs_on_the_filesystem_too() {
    let image = Image::sized("bench-fs", 32 << 20);
    let run = Run::new("blkprobe")
        .profile("storage")
        .machine(Machine::Q35)
        .args(&[
            "bench",
            "layer=fs",
            "bytes=2097152",
            "seconds=1",
            "runs=1",
            "qd=1",
        ])
        .disk(image.path(), false);
    let boot = run.boot();
    assert_exit(&boot, 0);
    line_with(&boot, &["fs: sdfs: the disk was blank: formatted"]);
    for name in ["seqwrite", "seqread", "randwrite", "randread"] {
        line_with(&boot, &[&format!("bench {name} ")]);
    }
    line_with(&boot, &["bench done"]);
}
