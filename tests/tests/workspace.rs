//! Repository-level checks through the xtask library: every profile validates against the
//! facade's features, bad input is rejected with the valid choices, images strip correctly, and
//! README.md's table of exit statuses is what the kernel and xtask implement.

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

/// The statuses a cell of the README's table names: `101`, or `1-100, 104-123, 128-255`.
fn statuses_in(cell: &str) -> Vec<u8> {
    let mut all = Vec::new();
    for part in cell.split(',').map(str::trim) {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        let parse = |s: &str| {
            s.trim().parse::<u8>().unwrap_or_else(|e| {
                panic!("README exit statuses: bad status {s:?} in {cell:?}: {e}")
            })
        };
        all.extend(parse(lo)..=parse(hi));
    }
    all
}

/// README.md's "Exit statuses" table is the contract: every status 0-255 in exactly one row;
/// the reserved ones exactly the kernel's (`platform::status::RESERVED`) and xtask's
/// (`xtask::status`), with the same owner and meaning; the others free for the app.
#[test]
fn the_readme_table_of_exit_statuses_is_what_the_code_does() {
    use platform::status;
    let readme = std::fs::read_to_string(workspace().root.join("README.md")).expect("README.md");
    let section = readme
        .split("\n### Exit statuses\n")
        .nth(1)
        .expect("README.md has a section \"### Exit statuses\"");
    let rows: Vec<Vec<&str>> = section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2) // header and separator
        .map(|l| l.trim_matches('|').split(" | ").map(str::trim).collect())
        .collect();
    assert!(
        rows.len() >= 9,
        "the table has a row per reserved status: {rows:?}"
    );
    let mut seen = [0u32; 256];
    let (mut kernel, mut xtask_own) = (Vec::new(), Vec::new());
    for row in &rows {
        let [codes, meaning, owner] = row[..] else {
            panic!("README exit statuses: a row has 3 cells: {row:?}");
        };
        for code in statuses_in(codes) {
            seen[usize::from(code)] += 1;
            match owner {
                "—" => assert_eq!(
                    status::reserved(code),
                    None,
                    "README says {code} is the app's, platform::status reserves it"
                ),
                _ => {
                    let (who, what) = status::reserved(code).unwrap_or_else(|| {
                        panic!("README reserves {code} for {owner}, platform::status does not")
                    });
                    assert_eq!(owner, who, "who reserves {code}");
                    assert!(meaning.starts_with(what), "{code}: {meaning:?} vs {what:?}");
                    let xtask_says = xtask::status::meaning(code)
                        .unwrap_or_else(|| panic!("xtask::status has no meaning for {code}"));
                    assert!(
                        meaning.starts_with(xtask_says),
                        "{code}: {meaning:?} vs {xtask_says:?}"
                    );
                    match who {
                        status::KERNEL => kernel.push(code),
                        _ => xtask_own.push(code),
                    }
                }
            }
        }
    }
    let twice: Vec<usize> = (0..256).filter(|c| seen[*c] != 1).collect();
    assert!(
        twice.is_empty(),
        "statuses not in exactly one row: {twice:?}"
    );
    assert_eq!(kernel, xtask::status::KERNEL, "the kernel's statuses");
    assert_eq!(
        kernel,
        [status::PANIC, status::EXCEPTION, status::BAD_CONFIG]
    );
    assert_eq!(xtask_own, xtask::status::OUTCOMES, "xtask's outcomes");
    assert_eq!(
        xtask_own,
        [
            status::TIMEOUT,
            status::NEVER_RAN,
            status::KILLED,
            status::NO_STATUS
        ]
    );
    assert_eq!(
        [
            xtask::cmd::run::xen::TIMEOUT_EXIT,
            xtask::cmd::run::xen::LAB_EXIT,
            xtask::cmd::run::xen::NO_STATUS_EXIT
        ],
        [status::TIMEOUT, status::NEVER_RAN, status::NO_STATUS],
        "the Xen runner's statuses"
    );
    assert_eq!(
        xtask::status::CONSOLE_LINE,
        status::LINE,
        "the console's status line"
    );
    assert_eq!(
        xtask::status::QEMU_STATUS_ON_CONSOLE,
        (i32::from(status::DEBUG_EXIT_ON_CONSOLE) << 1) | 1,
        "QEMU's exit status when the status is on the console"
    );
}
