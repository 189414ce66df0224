//! Every allocator, in the guest: `apps/allocstress` passes with the same checksum on each,
//! exhausting the heap ends in the out-of-memory panic, and an image holds only the allocator
//! its profile selects.

//! The allocators are those of crates/stardust/Cargo.toml (every `allocator` but `none`).

use stardust_tests::{Boot, Run, assert_exit, image_with, line_with, workspace};
use std::sync::OnceLock;

/// The allocators that give a heap, from the facade's features.
fn allocators() -> Vec<String> {
    let all = workspace().allocators().expect("the facade's allocators");
    assert!(all.len() >= 2, "{all:?}");
    all
}

/// Runs the stress test and returns its checksum line's checksum.
fn stress(allocator: &str) -> String {
    let set = format!("allocator={allocator}");
    let boot = Run::new("allocstress").set(&[&set]).boot();
    assert_exit(&boot, 0);
    line_with(&boot, &["allocstress: ok"]);
    line_with(&boot, &["allocstress: heap: ", "used 0 B"]);
    let line = line_with(&boot, &["allocstress: ", "checksum 0x"]);
    line.rsplit(' ').next().expect("a checksum").to_string()
}

/// The reference checksum: talc's.
fn reference() -> &'static str {
    static SUM: OnceLock<String> = OnceLock::new();
    SUM.get_or_init(|| stress("talc"))
}

#[test]
fn stress_passes_on_talc() {
    assert!(reference().starts_with("0x"));
}

#[test]
fn stress_passes_on_buddy_with_talcs_checksum() {
    assert_eq!(stress("buddy"), reference());
}

#[test]
fn stress_passes_on_bump_with_talcs_checksum() {
    assert_eq!(stress("bump"), reference());
}

fn oom(allocator: &str) -> Boot {
    let set = format!("allocator={allocator}");
    Run::new("allocstress")
        .set(&[&set, "memory=8M"])
        .args(&["oom"])
        .boot()
}

#[test]
fn exhausting_the_heap_panics_with_the_request_and_the_stats() {
    for allocator in allocators() {
        let boot = oom(&allocator);
        assert_exit(&boot, 101);
        let line = line_with(
            &boot,
            &[
                "PANIC: ",
                "out of memory: allocation of 1048576 bytes (alignment 1) failed; heap: total ",
            ],
        );
        assert!(
            line.contains(" used ") && line.contains(" peak "),
            "{allocator}: {line}"
        );
    }
}

#[test]
fn an_image_holds_only_the_selected_allocator() {
    let crates_of = |allocator: &str| -> Vec<String> {
        let set = format!("allocator={allocator}");
        let (_, image) = image_with("allocstress", "default", &[&set]);
        let elf = std::fs::read(image.elf.with_extension("debug")).expect("the .debug image");
        let symbols = xtask::size::sized_symbols(&elf).expect("symbols");
        xtask::size::crate_sizes(&symbols)
            .into_iter()
            .map(|(name, _)| name)
            .collect()
    };
    // Each allocator's crates (its code may be inlined into its wrapper crate, so one of them
    // is enough to name it).
    let crates_by_allocator: Vec<(String, Vec<String>)> = allocators()
        .into_iter()
        .map(|a| {
            let own = workspace().allocator_crates(&a).expect("its crates");
            (a, own)
        })
        .collect();
    for (allocator, own) in &crates_by_allocator {
        let crates = crates_of(allocator);
        assert!(
            own.iter().any(|name| crates.iter().any(|c| c == name)),
            "{allocator}: none of {own:?} in the size breakdown {crates:?}"
        );
        for (other, theirs) in crates_by_allocator.iter().filter(|(o, _)| o != allocator) {
            for name in theirs {
                assert!(
                    !crates.iter().any(|c| c == name),
                    "{allocator}: {other}'s crate {name} is in the image: {crates:?}"
                );
            }
        }
    }
}

/// The heap's `total` figure from the stress test's statistics line.
fn heap_total(boot: &Boot) -> u64 {
    let line = line_with(boot, &["allocstress: heap: total "]);
    line["allocstress: heap: total ".len()..]
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no total in {line:?}"))
}

#[test]
fn the_heap_gets_all_free_ram_unless_capped() {
    let all = Run::new("allocstress")
        .set(&["allocator=talc", "memory=64M"])
        .boot();
    assert_exit(&all, 0);
    let total = heap_total(&all);
    // 64 MiB of RAM less the low 1 MiB, the image (with its stack) and the page tables.
    assert!(
        (60 << 20..64 << 20).contains(&total),
        "heap of {total} B with 64 MiB of RAM"
    );

    let capped = Run::new("allocstress")
        .set(&["allocator=talc", "memory=64M", "heap_size=4M"])
        .boot();
    assert_exit(&capped, 0);
    assert_eq!(heap_total(&capped), 4 << 20);
}
