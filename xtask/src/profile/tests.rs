//! Host tests of profile parsing, validation and the catalog.

use super::*;

const FACADE: &str = r#"
[package]
name = "stardust"

[features]
default = []
platform-kvm = ["dep:platform-kvm"]
allocator-none = []
allocator-bump = ["dep:alloc-bump"]
scheduler-none = []
scheduler-coop = []
console-serial = []
console-debugcon = []

[package.metadata.stardust.defaults]
platform = "kvm"
allocator = "bump"
scheduler = "none"
log_level = "info"
heap_size = 0
stack_size = "64K"
memory = "32M"
time_slice = "10ms"
xen_guest = "pv"

[[package.metadata.stardust.rules]]
when = ["console-serial", "console-debugcon"]
slot = "platform"
one_of = ["kvm"]

[[package.metadata.stardust.rules]]
when = ["scheduler-coop"]
slot = "allocator"
none_of = ["none"]
needs = "a heap (thread stacks, tasks)"
"#;

const DEFAULT: &str = r#"
description = "the default profile"
platform = "kvm"

[slots]
allocator = "bump"
scheduler = "none"
console = "serial"

[settings]
log_level = "info"
heap_size = 0
stack_size = "64K"
memory = "32M"

[budgets]
image_bytes = 61440
min_memory = "4M"
boot_ratio = 1.10
"#;

fn catalog() -> Catalog {
    Catalog::from_manifest(FACADE).expect("test manifest parses")
}

fn parse(text: &str, sets: &[&str]) -> Result<Profile> {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    Profile::parse("default", text, &sets, &catalog())
}

fn err(text: &str, sets: &[&str]) -> String {
    parse(text, sets).expect_err("must fail").to_string()
}

#[test]
fn catalog_reads_features_in_declaration_order() {
    let c = catalog();
    assert_eq!(
        c.slot_names().collect::<Vec<_>>(),
        ["platform", "allocator", "scheduler", "console"]
    );
    assert_eq!(c.values("allocator").expect("slot"), ["none", "bump"]);
    assert_eq!(c.values("console").expect("slot"), ["serial", "debugcon"]);
    assert!(c.values("default").is_none());
}

#[test]
fn catalog_splits_at_first_dash() {
    let c = Catalog::from_features(["net-virtio-net", "test", "-x", "y-"]);
    assert_eq!(c.slot_names().collect::<Vec<_>>(), ["net"]);
    assert_eq!(c.values("net").expect("slot"), ["virtio-net"]);
}

#[test]
fn parses_the_contract_example() {
    let p = parse(DEFAULT, &[]).expect("valid profile");
    assert_eq!(p.platform, "kvm");
    assert_eq!(p.slot("allocator"), Some("bump"));
    assert_eq!(p.settings.stack_size, 65536);
    assert_eq!(p.settings.memory, 32 << 20);
    assert_eq!(p.budgets.image_bytes, Some(61440));
    assert_eq!(p.budgets.min_memory, Some(4 << 20));
    assert_eq!(p.budgets.boot_ratio, Some(1.10));
    assert_eq!(
        p.features(),
        [
            "stardust/platform-kvm",
            "stardust/allocator-bump",
            "stardust/scheduler-none",
            "stardust/console-serial"
        ]
    );
    assert_eq!(
        p.env(),
        [
            ("STARDUST_LOG_LEVEL".to_string(), "info".to_string()),
            ("STARDUST_HEAP_SIZE".to_string(), "0".to_string()),
            ("STARDUST_STACK_SIZE".to_string(), "65536".to_string()),
            ("STARDUST_TIME_SLICE_NS".to_string(), "10000000".to_string()),
        ]
    );
    assert_eq!(p.tag(), "default");
}

#[test]
fn settings_have_defaults_and_budgets_are_optional() {
    let text = "platform = \"kvm\"\n[slots]\nallocator=\"none\"\nscheduler=\"none\"\nconsole=\"debugcon\"\n";
    let p = parse(text, &[]).expect("valid");
    assert_eq!(p.settings.log_level, "info");
    assert_eq!(p.settings.stack_size, 64 * 1024);
    assert_eq!(p.budgets, Budgets::default());
}

#[test]
fn unknown_keys_are_rejected_with_choices() {
    let e = err(&DEFAULT.replace("heap_size = 0", "heap = 0"), &[]);
    assert!(e.contains("unknown key `heap` in [settings]"), "{e}");
    assert!(
        e.contains("log_level, heap_size, stack_size, memory"),
        "{e}"
    );

    let e = err(&format!("colour = \"red\"\n{DEFAULT}"), &[]);
    assert!(e.contains("unknown top-level key `colour`"), "{e}");

    let e = err(
        &DEFAULT.replace("scheduler = \"none\"", "schedular = \"none\""),
        &[],
    );
    assert!(e.contains("unknown slot `schedular`"), "{e}");
    assert!(e.contains("allocator, scheduler, console"), "{e}");

    let e = err(&DEFAULT.replace("boot_ratio", "boot_ms"), &[]);
    assert!(e.contains("unknown key `boot_ms` in [budgets]"), "{e}");
    assert!(
        e.contains("valid keys: image_bytes, min_memory, boot_ratio"),
        "{e}"
    );

    // The issue text says `[budget]`; the table is `[budgets]`.
    let e = err(&DEFAULT.replace("[budgets]", "[budget]"), &[]);
    assert!(
        e.contains("unknown top-level key `budget` (did you mean [budgets]?)"),
        "{e}"
    );
}

#[test]
fn the_universal_platform_is_universal_and_pvh_is_refused_naming_it() {
    // The real facade: its features are the valid slot values.
    let facade = Catalog::from_manifest(include_str!("../../../crates/stardust/Cargo.toml"))
        .expect("the facade's manifest parses");
    let universal = DEFAULT
        .replace("platform = \"kvm\"", "platform = \"universal\"")
        .replace("console = \"serial\"", "console = \"auto\"");
    let p = Profile::parse("universal", &universal, &[], &facade).expect("universal");
    assert!(
        p.features()
            .contains(&"stardust/platform-universal".to_string()),
        "{:?}",
        p.features()
    );
    let e = Profile::parse(
        "old",
        &universal.replace("platform = \"universal\"", "platform = \"pvh\""),
        &[],
        &facade,
    )
    .expect_err("`pvh` is no platform any more")
    .to_string();
    assert!(e.contains("`pvh`") && e.contains("universal"), "{e}");
}

fn xen_catalog() -> Catalog {
    let facade = FACADE.replace(
        "platform-kvm = [\"dep:platform-kvm\"]",
        "platform-kvm = [\"dep:platform-kvm\"]\nplatform-xen = []\nconsole-xen = []\n\
         xen_guest_pvh = []",
    ) + "\n[[package.metadata.stardust.rules]]\nwhen = [\"xen_guest_pvh\"]\nslot = \"platform\"\none_of = [\"xen\"]\n";
    Catalog::from_manifest(&facade).expect("catalog")
}

#[test]
fn xen_guest_pvh_adds_its_feature_and_is_in_the_tag() {
    let catalog = xen_catalog();
    // The feature has no dash: it is not a slot.
    assert!(!catalog.slot_names().any(|s| s.starts_with("xen")));
    let sets = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let p = Profile::parse(
        "default",
        DEFAULT,
        &sets(&["platform=xen", "xen_guest=pvh"]),
        &catalog,
    )
    .expect("xen pvh profile");
    assert_eq!(p.settings.xen_guest, "pvh");
    assert!(p.xen_pvh());
    let features = p.features();
    assert_eq!(
        features.first().map(String::as_str),
        Some("stardust/platform-xen")
    );
    assert_eq!(
        features.last().map(String::as_str),
        Some("stardust/xen_guest_pvh")
    );
    assert!(p.tag().contains("+xen_guest-pvh"), "{}", p.tag());

    // The default is PV: no extra feature.
    let pv = Profile::parse("default", DEFAULT, &sets(&["platform=xen"]), &catalog)
        .expect("xen pv profile");
    assert_eq!(pv.settings.xen_guest, "pv");
    assert!(!pv.xen_pvh());
    assert!(!pv.features().iter().any(|f| f.contains("xen_guest")));
    let explicit = Profile::parse(
        "default",
        DEFAULT,
        &sets(&["platform=xen", "xen_guest=pv"]),
        &catalog,
    )
    .expect("explicit pv");
    assert_eq!(explicit.features(), pv.features());

    // In the profile file too.
    let text = DEFAULT
        .replace("platform = \"kvm\"", "platform = \"xen\"")
        .replace("console = \"serial\"", "console = \"xen\"")
        .replace("memory = \"32M\"", "memory = \"32M\"\nxen_guest = \"pvh\"");
    let p = Profile::parse("xenpvh", &text, &[], &catalog).expect("file setting");
    assert!(p.features().contains(&"stardust/xen_guest_pvh".to_string()));
}

#[test]
fn xen_guest_is_validated() {
    let catalog = xen_catalog();
    let e = Profile::parse(
        "default",
        DEFAULT,
        &["platform=xen".into(), "xen_guest=hvm".into()],
        &catalog,
    )
    .expect_err("hvm is not a mode")
    .to_string();
    assert!(
        e.contains("xen_guest (set on the command line): `hvm` is not a Xen guest mode; valid choices: pv, pvh"),
        "{e}"
    );
    let e = Profile::parse("default", DEFAULT, &["xen_guest=pvh".into()], &catalog)
        .expect_err("pvh on kvm")
        .to_string();
    assert!(
        e.contains("`pvh` needs platform `xen` (platform is `kvm`)"),
        "{e}"
    );
    let e = Profile::parse(
        "default",
        &DEFAULT.replace("memory = \"32M\"", "xen_guest = \"pvh\""),
        &[],
        &catalog,
    )
    .expect_err("pvh on kvm")
    .to_string();
    assert!(
        e.contains("profile `default`: settings.xen_guest: `pvh` needs platform `xen`"),
        "{e}"
    );
    let e = err(&DEFAULT.replace("memory = \"32M\"", "xen_guest = 1"), &[]);
    assert!(e.contains("settings.xen_guest"), "{e}");
    // `pv` is the default and fits every platform.
    let p = parse(DEFAULT, &["xen_guest=pv"]).expect("pv on kvm");
    assert!(!p.xen_pvh());
}

#[test]
fn a_platform_on_the_command_line_brings_its_console() {
    let facade = FACADE.replace(
        "platform-kvm = [\"dep:platform-kvm\"]",
        "platform-kvm = [\"dep:platform-kvm\"]\nplatform-xen = []\nconsole-xen = []",
    );
    let catalog = Catalog::from_manifest(&facade).expect("catalog");
    let p = Profile::parse("default", DEFAULT, &["platform=xen".into()], &catalog)
        .expect("xen profile");
    assert_eq!(p.slot("console"), Some("xen"));
    assert!(
        p.tag().ends_with("+platform-xen+console-xen"),
        "{}",
        p.tag()
    );
    let e = Profile::parse(
        "default",
        DEFAULT,
        &["platform=xen".into(), "console=serial".into()],
        &catalog,
    )
    .expect_err("serial on xen")
    .to_string();
    assert!(
        e.contains("console `serial` is not available on platform `xen`; valid choices there: xen"),
        "{e}"
    );
}

#[test]
fn bad_slot_values_list_the_features() {
    let e = err(&DEFAULT.replace("\"bump\"", "\"talc\""), &[]);
    assert!(e.contains("slots.allocator"), "{e}");
    assert!(
        e.contains("`talc` is not an available allocator; valid choices: none, bump"),
        "{e}"
    );

    let e = err(DEFAULT, &["allocator=talc"]);
    assert!(e.starts_with("allocator (set on the command line):"), "{e}");

    let e = err(DEFAULT, &["platform=xen"]);
    assert!(
        e.contains("`xen` is not an available platform; valid choices: kvm"),
        "{e}"
    );
}

#[test]
fn time_slice_is_a_checked_duration() {
    let p = parse(DEFAULT, &["time_slice=500us"]).expect("valid");
    assert_eq!(p.settings.time_slice_ns, 500_000);
    assert!(
        p.env()
            .contains(&("STARDUST_TIME_SLICE_NS".into(), "500000".into()))
    );
    assert_eq!(
        parse(DEFAULT, &[]).expect("valid").settings.time_slice_ns,
        10_000_000
    );
    let e = err(DEFAULT, &["time_slice=10 fortnights"]);
    assert!(e.contains("unknown unit `fortnights`"), "{e}");
    let e = err(DEFAULT, &["time_slice=5us"]);
    assert!(e.contains("between 100us and 1s"), "{e}");
    assert_eq!(parse_duration_ns("2s"), Ok(2_000_000_000));
    assert!(parse_duration_ns("ms").is_err());
}

#[test]
fn a_scheduler_needs_an_allocator() {
    let e = err(DEFAULT, &["allocator=none", "scheduler=coop"]);
    assert!(e.contains("scheduler `coop` needs a heap"), "{e}");
    let e = err(
        &DEFAULT
            .replace("\"bump\"", "\"none\"")
            .replace("scheduler = \"none\"", "scheduler = \"coop\""),
        &[],
    );
    assert!(e.contains("profile `default`: slots.allocator"), "{e}");
    parse(DEFAULT, &["scheduler=coop"]).expect("bump + coop is fine");
}

#[test]
fn a_slot_left_out_takes_its_default() {
    // The console has no declared default: the platform's first console.
    let p = parse(&DEFAULT.replace("console = \"serial\"", ""), &[]).expect("valid");
    assert_eq!(p.slot("console"), Some("serial"));
    let p = parse(&DEFAULT.replace("platform = \"kvm\"", ""), &[]).expect("valid");
    assert_eq!(p.platform, "kvm");
    // An empty profile is the defaults of crates/stardust/Cargo.toml.
    let p = parse("", &[]).expect("valid");
    assert_eq!(
        p.features(),
        [
            "stardust/platform-kvm",
            "stardust/allocator-bump",
            "stardust/scheduler-none",
            "stardust/console-serial"
        ]
    );
    assert_eq!(p.settings.memory, 32 << 20);
    assert_eq!(p.settings.log_level, "info");
    // The default console follows the platform chosen.
    let xen = xen_catalog();
    let p = Profile::parse("x", "platform = \"xen\"", &[], &xen).expect("valid");
    assert_eq!(p.slot("console"), Some("xen"));
    // A default is still checked against the rules.
    let e = err("[slots]\nscheduler = \"coop\"\nallocator = \"none\"", &[]);
    assert!(e.contains("scheduler `coop` needs a heap"), "{e}");
}

#[test]
fn bad_numbers_are_rejected() {
    let e = err(
        &DEFAULT.replace("stack_size = \"64K\"", "stack_size = \"64Q\""),
        &[],
    );
    assert!(e.contains("settings.stack_size: bad size `64Q`"), "{e}");
    let e = err(&DEFAULT.replace("heap_size = 0", "heap_size = -4"), &[]);
    assert!(e.contains("settings.heap_size"), "{e}");
    let e = err(&DEFAULT.replace("heap_size = 0", "heap_size = true"), &[]);
    assert!(e.contains("expected a byte count"), "{e}");
    let e = err(DEFAULT, &["stack_size=10000"]);
    assert!(e.contains("multiple of 4096"), "{e}");
    let e = err(DEFAULT, &["stack_size=8K"]);
    assert!(e.contains("at least 16K"), "{e}");
    let e = err(DEFAULT, &["image_bytes=0"]);
    assert!(
        e.contains("image_bytes (set on the command line): a budget of 0 bytes"),
        "{e}"
    );
    let e = err(&DEFAULT.replace("\"4M\"", "\"4X\""), &[]);
    assert!(e.contains("budgets.min_memory: bad size `4X`"), "{e}");
    let e = err(&DEFAULT.replace("1.10", "-1.0"), &[]);
    assert!(
        e.contains("budgets.boot_ratio: expected a positive number"),
        "{e}"
    );
    let e = err(DEFAULT, &["boot_ratio=fast"]);
    assert!(
        e.contains("boot_ratio (set on the command line): expected a positive number"),
        "{e}"
    );
    let e = err(DEFAULT, &["log_level=loud"]);
    assert!(
        e.contains("valid choices: off, error, warn, info, debug, trace"),
        "{e}"
    );
    let e = err(DEFAULT, &["memory=512K"]);
    assert!(e.contains("at least 1M"), "{e}");
    let e = err("platform = ", &[]);
    assert!(
        e.contains("profile `default` (profiles/default.toml)"),
        "{e}"
    );
}

#[test]
fn settings_are_bounded_by_what_the_image_can_do() {
    // The boot page tables map the first GiB: the image (from 1 MiB) must end below it.
    for big in ["1G", "2G", "1023M", "1024G"] {
        let e = err(DEFAULT, &[&format!("stack_size={big}"), "memory=4G"]);
        assert!(
            e.contains("stack_size (set on the command line)")
                && e.contains("at most 1022M")
                && e.contains("first GiB"),
            "{big}: {e}"
        );
    }
    let p = parse(DEFAULT, &["stack_size=1022M", "memory=1100M"]).expect("at the limit");
    assert_eq!(p.settings.stack_size, MAX_STACK_SIZE);
    // memory must hold the image: the advice is what it needs, not a fixed 4M.
    let e = err(DEFAULT, &["stack_size=64M"]);
    assert!(
        e.contains("stack_size (set on the command line): memory = 32M is too small")
            && e.contains("--set memory=67M"),
        "{e}"
    );
    let e = err(DEFAULT, &["stack_size=1000M", "memory=1000M"]);
    assert!(
        e.contains("memory (set on the command line)") && e.contains("--set memory=1003M"),
        "{e}"
    );
    parse(DEFAULT, &["stack_size=1000M", "memory=1003M"]).expect("enough memory");
    let e = err(DEFAULT, &["memory=1M"]);
    assert!(
        e.contains("too small") && e.contains("--set memory=3M"),
        "{e}"
    );
    // heap_size: whole pages, and no more than memory can give.
    let e = err(DEFAULT, &["heap_size=100"]);
    assert!(
        e.contains("heap_size (set on the command line)") && e.contains("multiple of 4096"),
        "{e}"
    );
    let e = err(DEFAULT, &["heap_size=64M"]);
    assert!(
        e.contains("heap_size = 64M can never be met with memory = 32M")
            && e.contains("at least 67M")
            && e.contains("heap_size = 0"),
        "{e}"
    );
    let heap_16m = DEFAULT.replace("heap_size = 0", "heap_size = \"16M\"");
    let e = err(&heap_16m, &["memory=16M"]);
    assert!(e.contains("memory (set on the command line)"), "{e}");
    let e = err(&heap_16m, &["memory=16M", "heap_size=16M"]);
    assert!(e.contains("heap_size (set on the command line)"), "{e}");
    parse(DEFAULT, &["heap_size=16M", "memory=18M"]).expect("room for the heap");
    assert_eq!(memory_for_image_end(0x122000), 3 << 20);
    assert_eq!(memory_for_image_end(2 << 20), 3 << 20);
    assert_eq!(size_text(MAX_STACK_SIZE), "1022M");
    assert_eq!(size_text(4097), "4097");
    assert_eq!(size_text(64 << 10), "64K");
    assert_eq!(size_text(2 << 30), "2G");
}

#[test]
fn set_overrides_flat_and_dotted_keys() {
    let p = parse(
        DEFAULT,
        &[
            "allocator=none",
            "settings.heap_size=4M",
            "image_bytes = 32K",
            "boot_ratio=1.5",
        ],
    )
    .expect("valid");
    assert_eq!(p.slot("allocator"), Some("none"));
    assert_eq!(p.settings.heap_size, 4 << 20);
    assert_eq!(p.budgets.image_bytes, Some(32 << 10));
    assert_eq!(p.budgets.boot_ratio, Some(1.5));
    assert_eq!(
        p.tag(),
        "default+allocator-none+heap_size-4M+image_bytes-32K+boot_ratio-1.5"
    );

    // The last --set of a key wins, and appears once in the tag.
    let p = parse(DEFAULT, &["slots.console=debugcon", "console=serial"]).expect("valid");
    assert_eq!(p.slot("console"), Some("serial"));
    assert_eq!(p.tag(), "default+console-serial");

    // Overrides may add a section that the file lacks.
    let bare =
        "platform = \"kvm\"\n[slots]\nallocator=\"none\"\nscheduler=\"none\"\nconsole=\"serial\"\n";
    let p = parse(bare, &["min_memory=2M", "description=a b/c"]).expect("valid");
    assert_eq!(p.budgets.min_memory, Some(2 << 20));
    assert_eq!(p.tag(), "default+min_memory-2M+description-a_b_c");
}

#[test]
fn set_parsing_errors() {
    assert!(parse_override("allocator").is_err());
    assert!(parse_override("=bump").is_err());
    assert_eq!(
        parse_override(" a = b=c ").expect("ok"),
        ("a".into(), "b=c".into())
    );
    let e = err(DEFAULT, &["colour=red"]);
    assert!(e.contains("unknown key `colour`; valid keys: description, platform (top level), allocator, scheduler, console (slots)"), "{e}");
    let e = err(DEFAULT, &["settings.allocator=bump"]);
    assert!(e.contains("unknown key `settings.allocator`"), "{e}");
    let e = err(DEFAULT, &["slots.platform=kvm"]);
    assert!(e.contains("unknown key `slots.platform`"), "{e}");
    assert_eq!(
        resolve_key("budgets.image_bytes", &catalog()).expect("ok"),
        (Section::Budgets, "image_bytes".into())
    );
    assert_eq!(
        resolve_key("platform", &catalog()).expect("ok"),
        (Section::Top, "platform".into())
    );
}

#[test]
fn size_strings() {
    assert_eq!(parse_size("0").expect("ok"), 0);
    assert_eq!(parse_size("61440").expect("ok"), 61440);
    assert_eq!(parse_size("61_440").expect("ok"), 61440);
    assert_eq!(parse_size("64K").expect("ok"), 65536);
    assert_eq!(parse_size("64k").expect("ok"), 65536);
    assert_eq!(parse_size("64KiB").expect("ok"), 65536);
    assert_eq!(parse_size(" 4M ").expect("ok"), 4 << 20);
    assert_eq!(parse_size("1G").expect("ok"), 1 << 30);
    assert_eq!(parse_size("512B").expect("ok"), 512);
    for bad in [
        "",
        "K",
        "4T",
        "-4",
        "1.5M",
        "4 M",
        "99999999999999999999",
        "17179869184G",
    ] {
        assert!(parse_size(bad).is_err(), "{bad:?} must be rejected");
    }
}

#[test]
fn qemu_memory_strings() {
    assert_eq!(qemu_memory_arg(32 << 20), "32M");
    assert_eq!(qemu_memory_arg((4 << 20) + 512 * 1024), "4608K");
}
