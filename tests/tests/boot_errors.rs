//! Boot errors share status 103 (a kernel configuration or boot error, README "Exit statuses"),
//! and each says on the console which it is: here, too little RAM for the kernel's page tables,
//! then for the heap.

use stardust_tests::{Outcome, image, qemu_binary};
use xtask::qemu::{self, QemuConfig};

/// hello (default profile) with `memory` bytes of RAM.
fn boot_with_memory(memory: u64) -> qemu::Boot {
    let (profile, img) = image("hello", "default");
    let mut cfg = QemuConfig::new(qemu_binary(), img.elf, &profile);
    cfg.memory = memory;
    let boot = qemu::boot(&cfg, true, Some(qemu::DEFAULT_TIMEOUT))
        .unwrap_or_else(|e| panic!("booting with {memory} bytes: {e}"));
    eprintln!(
        "--- {} KiB: {:?}\n{}",
        memory / 1024,
        boot.outcome,
        boot.stdout
    );
    boot
}

/// Just above the image, RAM runs out first for the page tables, a few pages later for the
/// heap: each is status 103 with its own `error: ` line, and the app never runs.
#[test]
fn too_little_memory_says_whether_the_page_tables_or_the_heap_ran_out() {
    let (_, img) = image("hello", "default");
    let end = xtask::bench::image_end(&img.elf).expect("the image's end");
    let page_tables = "error: cannot build the kernel's page tables: out of memory for page tables";
    let heap = "error: out of memory for the heap: no free RAM left after the image";
    let mut seen = Vec::new();
    // From one page above the image's end, a page at a time, until the kernel gets past both.
    for pages in 1..=32u64 {
        let boot = boot_with_memory(end.next_multiple_of(4096) + pages * 4096);
        let said = if boot.stdout.contains(page_tables) {
            "page tables"
        } else if boot.stdout.contains(heap) {
            "heap"
        } else {
            assert_eq!(boot.outcome, Outcome::Guest(0), "{}", boot.stdout);
            break;
        };
        assert_eq!(boot.outcome, Outcome::Guest(103), "{}", boot.stdout);
        assert!(
            !boot.stdout.contains("Hello from Stardust!"),
            "{}",
            boot.stdout
        );
        if seen.last() != Some(&said) {
            seen.push(said);
        }
    }
    assert_eq!(
        seen,
        ["page tables", "heap"],
        "with more and more RAM: first the page tables, then the heap ran out, then it booted"
    );
}
