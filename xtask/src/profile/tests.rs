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
net_ip = "10.0.2.15/24"
net_gateway = "10.0.2.2"
net_tcp_buffer = "64K"
net_udp_buffer = "16K"
net_sockets = 64
log_max = "trace"
kv_max_keys = 1000000
kv_max_frame = "1M"
net_dhcp = true
cpus = 1

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
            ("STARDUST_NET_IP".to_string(), "10.0.2.15/24".to_string()),
            ("STARDUST_NET_GATEWAY".to_string(), "10.0.2.2".to_string()),
            ("STARDUST_NET_TCP_BUFFER".to_string(), "65536".to_string()),
            ("STARDUST_NET_UDP_BUFFER".to_string(), "16384".to_string()),
            ("STARDUST_NET_SOCKETS".to_string(), "64".to_string()),
            ("STARDUST_KV_MAX_KEYS".to_string(), "1000000".to_string()),
            ("STARDUST_KV_MAX_FRAME".to_string(), "1048576".to_string()),
            ("STARDUST_CPUS".to_string(), "1".to_string()),
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

#[test]
fn network_settings_have_defaults_and_become_environment_variables() {
    let p = parse(DEFAULT, &[]).expect("parses");
    assert_eq!(p.settings.net_ip, "10.0.2.15/24");
    assert_eq!(p.settings.net_gateway, "10.0.2.2");
    assert_eq!(p.settings.net_tcp_buffer, 64 * 1024);
    assert_eq!(p.settings.net_udp_buffer, 16 * 1024);
    assert_eq!(p.settings.net_sockets, 64);
    let env = p.env();
    let var = |k: &str| {
        env.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("{k} missing from {env:?}"))
    };
    assert_eq!(var("STARDUST_NET_IP"), "10.0.2.15/24");
    assert_eq!(var("STARDUST_NET_GATEWAY"), "10.0.2.2");
    assert_eq!(var("STARDUST_NET_TCP_BUFFER"), "65536");
    assert_eq!(var("STARDUST_NET_UDP_BUFFER"), "16384");
    assert_eq!(var("STARDUST_NET_SOCKETS"), "64");
    let p = parse(
        DEFAULT,
        &[
            "net_ip=dhcp",
            "net_gateway=",
            "net_tcp_buffer=256K",
            "net_sockets=1000",
        ],
    )
    .expect("parses");
    assert_eq!(p.settings.net_ip, "dhcp");
    assert_eq!(p.settings.net_gateway, "");
    assert_eq!(p.settings.net_tcp_buffer, 256 * 1024);
    assert_eq!(p.settings.net_sockets, 1000);
    assert_eq!(
        p.tag(),
        "default+net_ip-dhcp+net_gateway-_+net_tcp_buffer-256K+net_sockets-1000"
    );
    let p = parse(
        &format!("{DEFAULT}\n").replace(
            "memory = \"32M\"",
            "memory = \"32M\"\nnet_ip = \"192.168.7.9/16\"\nnet_gateway = \"192.168.0.1\"\nnet_sockets = \"128\"",
        ),
        &[],
    )
    .expect("parses");
    assert_eq!(p.settings.net_ip, "192.168.7.9/16");
    assert_eq!(p.settings.net_sockets, 128);
    // With DHCP the gateway is the DHCP server's to name: the profile's is not checked
    // against a subnet.
    assert!(parse(DEFAULT, &["net_ip=dhcp", "net_gateway=192.168.0.1"]).is_ok());
}

#[test]
fn bad_network_settings_say_what_is_wrong() {
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["net_ip=10.0.2.15"],
            &[
                "net_ip (set on the command line)",
                "no prefix length",
                "\"dhcp\"",
            ],
        ),
        (&["net_ip=10.0.2/24"], &["`10.0.2` is not an IPv4 address"]),
        (
            &["net_ip=10.0.2.15/33"],
            &["`33` is not a prefix length from 1 to 32"],
        ),
        (&["net_ip=10.0.2.15/0"], &["`0` is not a prefix length"]),
        (&["net_ip=10.0.2.15/+8"], &["`+8` is not a prefix length"]),
        (
            &["net_ip=10.0.2.0/24"],
            &["network address of its /24 subnet"],
        ),
        (
            &["net_ip=10.0.2.255/24"],
            &["broadcast address of its /24 subnet"],
        ),
        (&["net_ip=0.0.0.0/8"], &["the unspecified address"]),
        (&["net_ip=0.1.2.3/8"], &["0.0.0.0/8"]),
        (&["net_ip=224.0.0.1/4"], &["a multicast address"]),
        (&["net_ip=127.0.0.1/8"], &["a loopback address"]),
        (&["net_ip=DHCP"], &["not an IPv4 address"]),
        (
            &["net_gateway=10.0.2"],
            &[
                "net_gateway (set on the command line)",
                "not an IPv4 address",
                "for none",
            ],
        ),
        (&["net_gateway=255.255.255.255"], &["the broadcast address"]),
        (
            &["net_gateway=10.0.3.2"],
            &[
                "net_gateway",
                "not in the guest's subnet 10.0.2.15/24",
                "net_gateway = \"\"",
            ],
        ),
        (&["net_gateway=10.0.2.15"], &["the guest's own address"]),
        (
            &["net_ip=10.0.9.9/24"],
            &[
                "net_ip (set on the command line)",
                "10.0.2.2 is not in the guest's subnet 10.0.9.9/24",
            ],
        ),
        (
            &["net_tcp_buffer=1K"],
            &[
                "net_tcp_buffer",
                "1024 bytes: must be between 2K",
                "and 64M",
            ],
        ),
        (&["net_udp_buffer=128M"], &["net_udp_buffer", "between 2K"]),
        (
            &["net_tcp_buffer=lots"],
            &["net_tcp_buffer", "bad size `lots`"],
        ),
        (&["net_sockets=0"], &["net_sockets", "between 1 and 16384"]),
        (&["net_sockets=99999"], &["between 1 and 16384"]),
        (&["net_sockets=-3"], &["expected a count like 64"]),
        (&["net_sockets=4K"], &["expected a count like 64"]),
    ];
    for (sets, words) in cases {
        let e = err(DEFAULT, sets);
        for w in *words {
            assert!(e.contains(w), "{sets:?}: {e:?} lacks {w:?}");
        }
        assert!(!e.contains('\n'), "{e}");
    }
    // In the file, the error names the file's key.
    let e = err(
        &DEFAULT.replace("memory = \"32M\"", "memory = \"32M\"\nnet_sockets = true"),
        &[],
    );
    assert!(
        e.contains("profile `default`: settings.net_sockets: expected a count"),
        "{e}"
    );
    let e = err(
        &DEFAULT.replace("memory = \"32M\"", "memory = \"32M\"\nnet_ip = 10"),
        &[],
    );
    assert!(e.contains("settings.net_ip: expected a string"), "{e}");
}

#[test]
fn socket_buffers_must_fit_in_memory_with_a_nic() {
    let facade = FACADE.replace(
        "console-debugcon = []",
        "console-debugcon = []\nnet_device-none = []\nnet_device-virtio = []",
    );
    let catalog = Catalog::from_manifest(&facade).expect("parses");
    let parse = |sets: &[&str]| {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        Profile::parse("net", DEFAULT, &sets, &catalog)
    };
    // 1024 sockets of 2 x 64K = 128M: more than 32M, but only a NIC makes it matter.
    assert!(parse(&["net_sockets=1024"]).is_ok());
    let e = parse(&["net_sockets=1024", "net_device=virtio"])
        .expect_err("too much")
        .to_string();
    assert!(
        e.contains("net_sockets (set on the command line)")
            && e.contains("need 128M, more than memory = 32M"),
        "{e}"
    );
    let e = parse(&["net_device=virtio", "heap_size=4M"])
        .expect_err("8M of buffers in a 4M heap")
        .to_string();
    assert!(
        e.contains("heap_size (set on the command line)") && e.contains("more than heap_size = 4M"),
        "{e}"
    );
    assert!(parse(&["net_device=virtio", "net_sockets=128"]).is_ok());
}

/// Random, mostly nearly valid `net_ip` and `net_gateway` texts: the parsers never panic, and
/// accept exactly the host addresses with a prefix of 1 to 32 written the one canonical way.
#[test]
fn network_address_parsers_take_random_inputs() {
    use platform::fuzz::{Rng, cases};
    let mut rng = Rng::new(0x16_0001);
    let pieces = [
        "10",
        "0",
        "2",
        "15",
        "255",
        "256",
        "1",
        "00",
        "01",
        "192",
        "168",
        ".",
        ".",
        ".",
        "/",
        "/",
        "24",
        "32",
        "33",
        "0",
        " ",
        "dhcp",
        "-",
        "+",
        "x",
        "",
        "4294967296",
    ];
    let mut accepted = 0;
    for _ in 0..cases(20_000) {
        let text: String = if rng.chance(50) {
            // A dotted quad with a prefix, each part near an edge.
            let octet = |rng: &mut Rng| match rng.below(4) {
                0 => rng.below(256).to_string(),
                1 => rng
                    .pick(&["0", "255", "256", "00", "01", "-1", ""])
                    .to_string(),
                _ => rng.below(300).to_string(),
            };
            let mut t = format!(
                "{}.{}.{}.{}",
                octet(&mut rng),
                octet(&mut rng),
                octet(&mut rng),
                octet(&mut rng)
            );
            if rng.chance(90) {
                t.push('/');
                t.push_str(&rng.below(40).to_string());
            }
            t
        } else {
            (0..rng.below(12)).map(|_| rng.pick(&pieces)).collect()
        };
        if let Ok(NetIp::Static { addr, prefix }) = parse_net_ip(&text) {
            accepted += 1;
            assert_eq!(format!("{addr}/{prefix}"), text.trim(), "{text:?}");
            assert!((1..=32).contains(&prefix), "{text:?}");
            let o = addr.octets();
            assert!(o[0] != 0 && o[0] != 127 && o[0] < 224, "{text:?}");
            assert!(parse_gateway(&addr.to_string()).is_ok(), "{text:?}");
            if prefix <= 30 {
                let host = u32::from(addr) & (u32::MAX >> prefix);
                assert!(host != 0 && host != u32::MAX >> prefix, "{text:?}");
            }
        }
        if let Ok(Some(gw)) = parse_gateway(&text) {
            assert_eq!(gw.to_string(), text.trim(), "{text:?}");
        }
        // Whatever the text, a profile with it is either valid or a one-line error naming
        // the key (one case in ten: a whole profile parse is slower).
        if !rng.chance(10) {
            continue;
        }
        for key in ["net_ip", "net_gateway"] {
            if let Err(e) = parse(DEFAULT, &[&format!("{key}={text}")]) {
                let e = e.to_string();
                assert!(e.starts_with("net_"), "{text:?}: {e}");
                assert!(!e.contains('\n'), "{text:?}: {e}");
            }
        }
    }
    assert!(accepted > 100, "only {accepted} valid addresses generated");
}

#[test]
fn log_max_below_trace_adds_its_feature_and_bounds_log_level() {
    let p = parse(DEFAULT, &[]).expect("valid");
    assert_eq!(p.settings.log_max, "trace");
    assert!(!p.features().iter().any(|f| f.contains("log_max")));

    let p = parse(DEFAULT, &["log_max=info"]).expect("valid");
    assert_eq!(
        p.features().last().map(String::as_str),
        Some("stardust/log_max_info")
    );
    assert_eq!(p.tag(), "default+log_max-info");

    let e = err(DEFAULT, &["log_max=warn"]);
    assert!(
        e.contains("log_level `info` is above log_max `warn`") && e.contains("log_max"),
        "{e}"
    );
    let e = err(DEFAULT, &["log_max=info", "log_level=debug"]);
    assert!(
        e.contains("log_level `debug` is above log_max `info`"),
        "{e}"
    );
    let e = err(DEFAULT, &["log_max=loud"]);
    assert!(e.contains("`loud` is not a log level"), "{e}");
}

#[test]
fn image_app_names_the_app_the_image_budget_is_for() {
    let p = parse(DEFAULT, &[]).expect("valid");
    assert_eq!(
        (p.budgets.image_app.as_deref(), p.image_app()),
        (None, "hello")
    );
    let p = parse(&format!("{DEFAULT}image_app = \"httpd\"\n"), &[]).expect("valid");
    assert_eq!(p.image_app(), "httpd");
    let p = parse(DEFAULT, &["image_app=echo"]).expect("valid");
    assert_eq!(p.image_app(), "echo");
    let e = err(DEFAULT, &["image_app=../etc"]);
    assert!(e.contains("`../etc` is not an app name"), "{e}");
}

#[test]
fn key_value_settings_are_bounded() {
    let p = parse(DEFAULT, &["kv_max_keys=10", "kv_max_frame=64K"]).expect("valid");
    assert_eq!(p.settings.kv_max_keys, 10);
    assert_eq!(p.settings.kv_max_frame, 64 * 1024);
    for (set, words) in [
        ("kv_max_keys=0", &["kv_max_keys", "between 1 and"][..]),
        (
            "kv_max_frame=100",
            &["kv_max_frame", "between 512 and 512M"],
        ),
        ("kv_max_frame=1G", &["kv_max_frame", "between 512 and 512M"]),
    ] {
        let e = err(DEFAULT, &[set]);
        for w in words {
            assert!(e.contains(w), "{set}: {e}");
        }
    }
}

#[test]
fn net_dhcp_adds_the_dhcp_client_with_a_nic_and_dhcp_needs_it() {
    let facade = FACADE.replace(
        "console-debugcon = []",
        "console-debugcon = []\nnet_device-none = []\nnet_device-virtio = []",
    );
    let catalog = Catalog::from_manifest(&facade).expect("parses");
    let parse = |sets: &[&str]| {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        Profile::parse("net", DEFAULT, &sets, &catalog)
    };
    let dhcp = |p: &Profile| p.features().iter().any(|f| f == NET_DHCP_FEATURE);
    // The default (true): the feature only with a NIC driver.
    let p = parse(&[]).expect("valid");
    assert!(p.settings.net_dhcp && !dhcp(&p), "{:?}", p.features());
    let p = parse(&["net_device=virtio"]).expect("valid");
    assert!(dhcp(&p), "{:?}", p.features());
    let p = parse(&["net_device=virtio", "net_dhcp=false"]).expect("valid");
    assert!(!p.settings.net_dhcp && !dhcp(&p), "{:?}", p.features());
    // A profile's own `net_dhcp = false` (a TOML boolean), then `net_ip = "dhcp"` over it.
    let text = DEFAULT.replace("memory = \"32M\"", "memory = \"32M\"\nnet_dhcp = false");
    let sets = ["net_ip=dhcp".to_string()];
    let e = Profile::parse("net", &text, &sets, &catalog)
        .expect_err("dhcp without the client")
        .to_string();
    assert!(
        e.contains("net_ip (set on the command line)")
            && e.contains("needs the DHCP client")
            && e.contains("--set net_dhcp=true"),
        "{e}"
    );
    let e = parse(&["net_ip=dhcp", "net_dhcp=false"])
        .expect_err("dhcp without the client")
        .to_string();
    assert!(e.contains("net_dhcp = false"), "{e}");
    assert!(parse(&["net_ip=dhcp", "net_dhcp=true"]).is_ok());
    let e = parse(&["net_dhcp=yes"])
        .expect_err("not a flag")
        .to_string();
    assert!(
        e.contains("net_dhcp") && e.contains("expected true or false"),
        "{e}"
    );
}

#[test]
fn cpus_is_a_count_from_1_to_max_cpus_passed_as_stardust_cpus() {
    let var = |p: &Profile| {
        p.env()
            .into_iter()
            .find(|(k, _)| k == "STARDUST_CPUS")
            .map(|(_, v)| v)
            .expect("STARDUST_CPUS is always set")
    };
    let p = parse(DEFAULT, &[]).expect("valid");
    assert_eq!(p.settings.cpus, 1);
    assert_eq!(var(&p), "1");
    let p = parse(DEFAULT, &["scheduler=coop", "cpus=4"]).expect("valid");
    assert_eq!(p.settings.cpus, 4);
    assert_eq!(var(&p), "4");
    assert_eq!(p.tag(), "default+scheduler-coop+cpus-4");
    let p = parse(DEFAULT, &["scheduler=coop", &format!("cpus={MAX_CPUS}")]).expect("valid");
    assert_eq!(var(&p), MAX_CPUS.to_string());
    let text = DEFAULT
        .replace("scheduler = \"none\"", "scheduler = \"coop\"")
        .replace("memory = \"32M\"", "memory = \"32M\"\ncpus = 2");
    assert_eq!(parse(&text, &[]).expect("valid").settings.cpus, 2);
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["scheduler=coop", "cpus=0"],
            &["cpus (set on the command line): 0: must be between 1 and 8"],
        ),
        (
            &["scheduler=coop", "cpus=9"],
            &["cpus (set on the command line): 9: must be between 1 and 8"],
        ),
        (
            &["cpus=four"],
            &["cpus (set on the command line): expected a count like 64"],
        ),
        (
            &["cpus=-2"],
            &["cpus (set on the command line)", "expected a count"],
        ),
        (
            &["cpus=1.5"],
            &["cpus (set on the command line)", "expected a count"],
        ),
    ];
    for (sets, words) in cases {
        let e = err(DEFAULT, sets);
        for w in *words {
            assert!(e.contains(w), "{sets:?}: {e:?} lacks {w:?}");
        }
        assert!(!e.contains('\n'), "{e}");
    }
    let e = err(
        &DEFAULT.replace("memory = \"32M\"", "memory = \"32M\"\ncpus = 0"),
        &[],
    );
    assert!(
        e.contains("profile `default`: settings.cpus: 0: must be between 1 and 8"),
        "{e}"
    );
}

#[test]
fn more_than_one_cpu_needs_a_scheduler_with_threads() {
    // The default profile's scheduler is `none`.
    let e = err(DEFAULT, &["cpus=4"]);
    assert!(
        e.starts_with(
            "cpus (set on the command line): cpus = 4 needs a scheduler with threads, \
             but scheduler = \"none\""
        ) && e.contains("--set scheduler=coop")
            && e.contains("or cpus = 1"),
        "{e}"
    );
    let e = err(DEFAULT, &["cpus=2", "scheduler=none"]);
    assert!(
        e.contains("cpus = 2") && e.contains("scheduler = \"none\""),
        "{e}"
    );
    // A profile with 2 CPUs and threads: `--set scheduler=none` is the key to blame.
    let smp = DEFAULT
        .replace("scheduler = \"none\"", "scheduler = \"coop\"")
        .replace("memory = \"32M\"", "memory = \"32M\"\ncpus = 2");
    let e = err(&smp, &["scheduler=none"]);
    assert!(
        e.starts_with("scheduler (set on the command line): cpus = 2 needs a scheduler"),
        "{e}"
    );
    // In the file: the file's key.
    let e = err(&smp.replace("\"coop\"", "\"none\""), &[]);
    assert!(
        e.starts_with("profile `default`: settings.cpus: cpus = 2 needs a scheduler"),
        "{e}"
    );
    // One CPU is fine with any scheduler; more with any scheduler but `none`.
    assert!(parse(DEFAULT, &["cpus=1", "scheduler=none"]).is_ok());
    assert!(parse(&smp, &[]).is_ok());
}
