//! Repository-level checks through the xtask library: every profile validates against the
//! facade's features, bad input is rejected with the valid choices, and images strip correctly.

use stardust_tests::{image, workspace};

#[test]
fn every_profile_validates() {
    let ws = workspace();
    let names = ws.profile_names().expect("profiles/ readable");
    assert!(names.iter().any(|n| n == "default"), "{names:?}");
    assert!(names.iter().any(|n| n == "minimal"), "{names:?}");
    for name in names {
        let p = ws
            .load_profile(&name, &[])
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            !p.description.is_empty(),
            "profile {name} has a description"
        );
        assert!(
            p.budgets.image_bytes.is_some(),
            "profile {name} has an image_bytes budget"
        );
    }
}

#[test]
fn every_apps_requirements_name_real_slot_values_and_can_be_met() {
    let ws = workspace();
    let apps = ws.app_names().expect("apps/ readable");
    for app in &apps {
        let req = ws
            .app_requires(app)
            .unwrap_or_else(|e| panic!("{app}: {e}"));
        // The default profile with the first value each requirement accepts fits the app.
        let sets: Vec<String> = req
            .slots
            .iter()
            .map(|(slot, values)| format!("{slot}={}", values[0]))
            .collect();
        let profile = ws
            .load_profile("default", &sets)
            .unwrap_or_else(|e| panic!("{app} {sets:?}: {e}"));
        ws.check_app_fits(app, &profile)
            .unwrap_or_else(|e| panic!("{app} {sets:?}: {e}"));
    }
    let threads = ws.app_requires("threads").expect("threads requires");
    assert!(!threads.slots.is_empty(), "threads declares its schedulers");
    let default = ws.load_profile("default", &[]).expect("default profile");
    let e = ws
        .check_app_fits("threads", &default)
        .expect_err("threads needs a thread scheduler")
        .to_string();
    assert!(e.contains("needs scheduler `coop` or `preempt`"), "{e}");
}

#[test]
fn bad_input_lists_the_choices() {
    let ws = workspace();
    let e = ws
        .load_profile("no-such-profile", &[])
        .expect_err("unknown profile")
        .to_string();
    assert!(e.contains("default") && e.contains("minimal"), "{e}");
    let e = ws
        .check_app("no-such-app")
        .expect_err("unknown app")
        .to_string();
    assert!(e.contains("hello") && e.contains("faults"), "{e}");
    let e = ws
        .load_profile("default", &["platform=hyperv".into()])
        .expect_err("no hyperv")
        .to_string();
    assert!(e.contains("valid choices: kvm, xen"), "{e}");
    let e = ws
        .load_profile("default", &["allocator=jemalloc".into()])
        .expect_err("no jemalloc")
        .to_string();
    assert!(e.contains("none, bump, buddy, talc"), "{e}");
}

#[test]
fn stripped_image_keeps_only_loadable_bytes() {
    use object::read::elf::{ElfFile64, ProgramHeader};
    let (_, img) = image("hello", "default");
    let elf_bytes = std::fs::read(&img.elf).expect("image");
    let debug_bytes = std::fs::read(&img.debug).expect("debug image");
    assert_eq!(elf_bytes.len() as u64, img.bytes);
    assert!(elf_bytes.len() < debug_bytes.len());
    let elf = ElfFile64::<object::Endianness>::parse(&*elf_bytes).expect("stripped ELF parses");
    let debug = ElfFile64::<object::Endianness>::parse(&*debug_bytes).expect("debug ELF parses");
    assert_eq!(elf.elf_section_table().len(), 0, "no section headers");
    let e = elf.endian();
    let last = elf
        .elf_program_headers()
        .iter()
        .map(|p| p.p_offset(e) + p.p_filesz(e))
        .max();
    assert_eq!(
        last,
        Some(elf_bytes.len() as u64),
        "cut after the last segment byte"
    );
    for (s, d) in elf
        .elf_program_headers()
        .iter()
        .zip(debug.elf_program_headers())
    {
        let range = |p: &object::elf::ProgramHeader64<object::Endianness>, b: &[u8]| {
            let (o, n) = (p.p_offset(e) as usize, p.p_filesz(e) as usize);
            b[o..o + n].to_vec()
        };
        assert_eq!(
            range(s, &elf_bytes),
            range(d, &debug_bytes),
            "segment bytes unchanged"
        );
    }
}
