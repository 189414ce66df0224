//! Boot errors share status 103 (a kernel configuration or boot error, README "Exit statuses"),
//! and each says on the console which it is: here, too little RAM for the kernel's page tables,
//! then for the heap.

use stardust_tests::{Outcome, image_with, qemu_binary};
use xtask::qemu::{self, QemuConfig};

/// hello (default profile, `set`) with `memory` bytes of RAM.
fn boot_with_memory(set: &[&str], memory: u64) -> qemu::Boot {
    let (profile, img) = image_with("hello", "default", set);
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
///
/// QEMU rounds `-m` up to 8 KiB, so the one size at which the page tables fit and no page is
/// left for the heap exists only for an image whose end has the right parity in 4 KiB pages:
/// two images whose ends differ by one page (boot stacks of 64K and 68K) make sure one has it.
#[test]
fn too_little_memory_says_whether_the_page_tables_or_the_heap_ran_out() {
    let page_tables = "error: cannot build the kernel's page tables: out of memory for page tables";
    let heap = "error: out of memory for the heap: no free RAM left after the image";
    let mut runs = Vec::new();
    for set in [&["stack_size=64K"][..], &["stack_size=68K"][..]] {
        let (_, img) = image_with("hello", "default", set);
        let end = xtask::bench::image_end(&img.elf).expect("the image's end");
        let mut seen = Vec::new();
        // From one page above the image's end, a page at a time, until the kernel gets past both.
        for pages in 1..=32u64 {
            let boot = boot_with_memory(set, end.next_multiple_of(4096) + pages * 4096);
            let said = if boot.stdout.contains(page_tables) {
                "page tables"
            } else if boot.stdout.contains(heap) {
                "heap"
            } else {
                assert_eq!(boot.outcome, Outcome::Guest(0), "{}", boot.stdout);
                seen.push("booted");
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
        assert!(
            seen == ["page tables", "booted"] || seen == ["page tables", "heap", "booted"],
            "{set:?}: with more and more RAM, first the page tables, then the heap ran out, then \
             it booted: {seen:?}"
        );
        runs.push(seen);
    }
    assert!(
        runs.iter().any(|s| s.contains(&"heap")),
        "one of the two images ran out of memory for the heap alone: {runs:?}"
    );
}
