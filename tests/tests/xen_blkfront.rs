//! blkfront on real Xen: blkprobe (`block_device = "blkfront"`) as a PV and as a PVH guest, each
//! with a vbd from an image file (the lab's `--disk`), against Linux's blkback in dom0. The
//! handshake connects, what a guest wrote and flushed is in the image after the run, byte for
//! byte (and nothing else changed), and a pattern the host put in an image reads back in the
//! guest. ONE lab boot runs the three guests and kvstore (profile `xen-storage`, netfront and
//! blkfront) taking three keys from dom0; a second boot runs kvstore again on the image the first
//! left (the first was destroyed with `xl destroy`), and dom0 reads the keys back. Each `#[test]`
//! checks its own.
//!
//! Where the lab cannot run (not built, `STARDUST_XENLAB=off`) every test prints
//! `skipped: <test>: <why>` and passes; with `STARDUST_XENLAB_REQUIRED=1` they fail instead.
//! The guests are built first: an image that does not build fails its test, lab or no lab.

use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use stardust_tests::workspace;
use xtask::cmd::run::xen::{self as xenlab_run, XenOutcome};
use xtask::xenlab::{BatchOptions, GuestResult, GuestSpec, Lab};

/// Bytes of every guest's disk: 16 MiB.
const DISK_BYTES: usize = 16 << 20;

/// One guest: its name, PVH or PV, blkprobe's arguments, and the pattern the host puts in its
/// image first (seed, first block, blocks), if any.
struct Guest {
    name: &'static str,
    pvh: bool,
    /// The universal image with both disk drivers (`block_device = "auto"`): blkfront on Xen.
    universal: bool,
    args: &'static [&'static str],
    prefill: Option<(u64, u64, u64)>,
    /// What the guest writes (seed, first block, blocks): to be in the image after the run.
    writes: Option<(u64, u64, u64)>,
}

const GUESTS: [Guest; 4] = [
    Guest {
        name: "pv-write",
        pvh: false,
        universal: false,
        args: &["seed=11"],
        prefill: None,
        writes: Some((11, 8, 1000)),
    },
    Guest {
        name: "pv-verify",
        pvh: false,
        universal: false,
        args: &["verify", "seed=12", "start=100", "blocks=3000"],
        prefill: Some((12, 100, 3000)),
        writes: None,
    },
    Guest {
        name: "pvh-write",
        pvh: true,
        universal: false,
        args: &["seed=13", "start=20000", "blocks=5000"],
        prefill: None,
        writes: Some((13, 20000, 5000)),
    },
    Guest {
        name: "universal-write",
        pvh: true,
        universal: true,
        args: &["seed=14", "start=300", "blocks=2000"],
        prefill: None,
        writes: Some((14, 300, 2000)),
    },
];

/// blkprobe's pattern: byte `offset` of the disk for `seed` (apps/blkprobe's `byte`).
fn byte(seed: u64, offset: u64) -> u8 {
    let x = (offset ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    (x >> 56) as u8
}

/// An image of zeros with `pattern` (seed, first block, blocks of 512 bytes) in it.
fn image(pattern: Option<(u64, u64, u64)>) -> Vec<u8> {
    let mut image = vec![0u8; DISK_BYTES];
    if let Some((seed, start, blocks)) = pattern {
        for off in start * 512..(start + blocks) * 512 {
            image[off as usize] = byte(seed, off);
        }
    }
    image
}

struct Ran {
    results: Vec<GuestResult>,
    specs: Vec<GuestSpec>,
    /// Each guest's image after its run.
    outs: Vec<PathBuf>,
    /// kvstore's first run (SETs from dom0, then `xl destroy`), in the first boot.
    kv_set: GuestResult,
    /// Its second run on the image the first left, in a second boot (or why there was none).
    kv_get: Result<GuestResult, String>,
    /// kvstore whose disk and NIC dom0 detaches while it runs ([`DETACH`]), in the first boot.
    detach: Vec<GuestResult>,
}

/// kvstore guests whose vbd and vif dom0 takes away while they serve: (name, PVH).
const DETACH: [(&str, bool); 2] = [("detach-pv", false), ("detach-pvh", true)];

/// The dom0 script of a detach guest: a SET is acknowledged; `xl block-detach` finishes (the
/// frontend closes its side) and the guest says its disk is gone; the next SET is not
/// acknowledged (its sync failed: kvstore answers `-IOERR ...`, as it does to a PING after);
/// `xl network-detach` finishes and the guest says its NIC is gone; the domain is still
/// running. Each detach's time is printed.
fn detach_script() -> String {
    let set = |k: &str, v: &str| {
        format!(
            "out=$(printf '{}' | timeout 10 nc -q1 $GUEST_IP 6379 | tr -d '\\r')\n",
            resp(&["SET", k, v])
        )
    };
    let mut s = String::from(
        "cs() { awk '{ printf \"%d\", $1 * 100 }' /proc/uptime; }\n\
         xenlab-wait tcp 6379 30 || exit 7\n",
    );
    s.push_str(&set("before", "1"));
    s.push_str("echo \"SET before: $out\"; case \"$out\" in +OK*) ;; *) exit 5;; esac\n");
    s.push_str(
        "t0=$(cs); timeout 60 xl block-detach $GUEST_DOMID 51712; st=$?; t=$(( $(cs) - t0 ))\n\
         printf 'block-detach: status %d after %d.%02d s\\n' $st $((t / 100)) $((t % 100)); [ $st = 0 ] || exit 8\n\
         xenlab-wait console 'blkfront device/vbd/51712: the backend went away' 15 || exit 9\n",
    );
    // after: a write's sync fails, so it is not acknowledged: kvstore says why and closes the
    // connection, and says so to every later batch (its store depends on what never became
    // durable)
    s.push_str(&set("after", "2"));
    s.push_str("echo \"SET after: $out\"; case \"$out\" in -IOERR*) ;; *) exit 10;; esac\n");
    s.push_str(&format!(
        "out=$(printf '{}' | timeout 10 nc -q1 $GUEST_IP 6379 | tr -d '\\r')\n\
         echo \"PING after: $out\"; case \"$out\" in -IOERR*) ;; *) exit 11;; esac\n",
        resp(&["PING"])
    ));
    s.push_str(
        "t0=$(cs); timeout 60 xl network-detach $GUEST_DOMID 0; st=$?; t=$(( $(cs) - t0 ))\n\
         printf 'network-detach: status %d after %d.%02d s\\n' $st $((t / 100)) $((t % 100)); [ $st = 0 ] || exit 12\n\
         xenlab-wait console 'netfront device/vif/0: the backend went away' 15 || exit 13\n\
         xl list $GUEST_DOMID >/dev/null || exit 14\n\
         echo 'detach: the domain runs on'\n",
    );
    s
}

/// The keys kvstore takes in its first run and must still have in its second.
const KEYS: [(&str, &str); 3] = [
    ("key1", "value1"),
    ("key2", "value-two"),
    ("key3", "value3"),
];

/// A RESP command of `args`.
fn resp(args: &[&str]) -> String {
    let mut s = format!("*{}\\r\\n", args.len());
    for a in args {
        s.push_str(&format!("${}\\r\\n{a}\\r\\n", a.len()));
    }
    s
}

/// The dom0 script of kvstore's first run: SET every key, each acknowledged with +OK.
fn kv_set_script() -> String {
    let mut script = String::from("xenlab-wait tcp 6379 30 || exit 7\n");
    for (k, v) in KEYS {
        script.push_str(&format!(
            "out=$(printf '{}' | timeout 10 nc -q1 $GUEST_IP 6379)\n\
             echo \"SET {k}: $out\"\n\
             case \"$out\" in +OK*) ;; *) exit 5;; esac\n",
            resp(&["SET", k, v])
        ));
    }
    script
}

/// The dom0 script of kvstore's second run: GET every key, each with its value.
fn kv_get_script() -> String {
    let mut script = String::from("xenlab-wait tcp 6379 30 || exit 7\n");
    for (k, v) in KEYS {
        script.push_str(&format!(
            "out=$(printf '{}' | timeout 10 nc -q1 $GUEST_IP 6379 | tr -d '\\r' | tr '\\n' ' ')\n\
             echo \"GET {k}: $out\"\n\
             [ \"$out\" = '${} {v} ' ] || exit 6\n",
            resp(&["GET", k]),
            v.len()
        ));
    }
    script
}

enum Batch {
    Skipped(String),
    Failed(String),
    Ran(Box<Ran>),
}

fn note(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// What the batch ran, or `None` (said) when the lab was skipped; a lab that failed fails the
/// test.
fn ran() -> Option<&'static Ran> {
    match batch() {
        Batch::Skipped(why) => {
            xtask::xenlab::skip_test(why);
            None
        }
        Batch::Failed(e) => panic!("the Xen lab failed: {e}"),
        Batch::Ran(ran) => Some(ran),
    }
}

fn batch() -> &'static Batch {
    static BATCH: OnceLock<Batch> = OnceLock::new();
    // Never panics inside: the next test would boot the lab again.
    BATCH.get_or_init(run)
}

fn run() -> Batch {
    let ws = workspace();
    let dir = ws.target_dir().join("xen-blkfront");
    if let Err(e) = std::fs::create_dir_all(&dir) {
        return Batch::Failed(format!("creating {}: {e}", dir.display()));
    }
    let mut specs = Vec::new();
    let mut outs = Vec::new();
    for g in &GUESTS {
        let mut set: Vec<String> = [
            if g.universal {
                "platform=universal"
            } else {
                "platform=xen"
            },
            "net_device=none",
            if g.universal {
                "block_device=auto"
            } else {
                "block_device=blkfront"
            },
            "filesystem=none",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if g.pvh && !g.universal {
            set.push("xen_guest=pvh".into());
        }
        let built = ws.load_profile("storage", &set).and_then(|profile| {
            xtask::build_app(ws, "blkprobe", "storage", &set).map(|(_, i)| (profile, i.elf))
        });
        let (profile, elf) = match built {
            Ok(b) => b,
            Err(e) => return Batch::Failed(format!("building {}: {e:#}", g.name)),
        };
        let disk = dir.join(format!("{}.img", g.name));
        let out = dir.join(format!("{}.img.out", g.name));
        let _ = std::fs::remove_file(&out);
        if let Err(e) = std::fs::write(&disk, image(g.prefill)) {
            return Batch::Failed(format!("writing {}: {e}", disk.display()));
        }
        let args: Vec<String> = g.args.iter().map(|s| s.to_string()).collect();
        let spec =
            xenlab_run::guest_spec(g.name, elf, &profile, "", &args, Duration::from_secs(60))
                .disk(&disk)
                .disk_out(&out);
        specs.push(spec);
        outs.push(out);
    }
    // kvstore on a blank disk: sdfs formats it, the log takes the keys.
    let kv = ws.load_profile("xen-storage", &[]).and_then(|profile| {
        xtask::build_app(ws, "kvstore", "xen-storage", &[]).map(|(_, i)| (profile, i.elf))
    });
    let (kv_profile, kv_elf) = match kv {
        Ok(b) => b,
        Err(e) => return Batch::Failed(format!("building kvstore: {e:#}")),
    };
    let kv_disk = dir.join("kvstore.img");
    let kv_out = dir.join("kvstore.img.out");
    let _ = std::fs::remove_file(&kv_out);
    if let Err(e) = std::fs::write(&kv_disk, image(None)) {
        return Batch::Failed(format!("writing {}: {e}", kv_disk.display()));
    }
    let kv_spec = |name: &str, disk: &PathBuf, out: &PathBuf, script: String| {
        xenlab_run::guest_spec(
            name,
            kv_elf.clone(),
            &kv_profile,
            "",
            &[],
            Duration::from_secs(90),
        )
        .vif(true)
        .disk(disk)
        .disk_out(out)
        .dom0_script(script)
        .keeps_running(true)
    };
    specs.push(kv_spec("kv-set", &kv_disk, &kv_out, kv_set_script()));
    for (name, pvh) in DETACH {
        let set: Vec<String> = if pvh {
            vec!["xen_guest=pvh".into()]
        } else {
            Vec::new()
        };
        let built = ws.load_profile("xen-storage", &set).and_then(|profile| {
            xtask::build_app(ws, "kvstore", "xen-storage", &set).map(|(_, i)| (profile, i.elf))
        });
        let (profile, elf) = match built {
            Ok(b) => b,
            Err(e) => return Batch::Failed(format!("building {name}: {e:#}")),
        };
        let disk = dir.join(format!("{name}.img"));
        if let Err(e) = std::fs::write(&disk, image(None)) {
            return Batch::Failed(format!("writing {}: {e}", disk.display()));
        }
        specs.push(
            xenlab_run::guest_spec(name, elf, &profile, "", &[], Duration::from_secs(120))
                .vif(true)
                .disk(&disk)
                .dom0_script(detach_script())
                .keeps_running(true),
        );
    }
    let lab = Lab::from_env();
    if let Err(why) = lab.availability() {
        return Batch::Skipped(why.to_string());
    }
    let opts = BatchOptions {
        log: Some(dir.join("serial.log")),
        ..Default::default()
    };
    note(&format!(
        "xen-blkfront: one Xen lab boot for {} guests",
        specs.len()
    ));
    match lab.run_batch(&specs, &opts) {
        Err(e) => Batch::Failed(format!("{e:#}")),
        Ok(report) => {
            if let Some(e) = &report.lab_error {
                return Batch::Failed(format!("{e} (serial log {})", report.log.display()));
            }
            for g in &report.guests {
                note(&format!("xen-blkfront: {}", g.summary()));
            }
            let mut results = report.guests;
            let mut detach = Vec::new();
            for (name, _) in DETACH.iter().rev() {
                let Some(g) = results.pop() else {
                    return Batch::Failed(format!("no result for {name}"));
                };
                specs.pop();
                detach.insert(0, g);
            }
            let Some(kv_set) = results.pop() else {
                return Batch::Failed("no result for kv-set".into());
            };
            specs.pop();
            // The second life: a new domain on the image the destroyed one left.
            let kv_get = if kv_set.passed() {
                let again = dir.join("kvstore-again.img.out");
                let spec = kv_spec("kv-get", &kv_out, &again, kv_get_script());
                note("xen-blkfront: a second Xen lab boot for kvstore on the image the first left");
                match lab.run_batch(&[spec], &opts) {
                    Err(e) => Err(format!("{e:#}")),
                    Ok(mut r) => {
                        if let Some(e) = &r.lab_error {
                            Err(e.to_string())
                        } else {
                            r.guests.pop().ok_or_else(|| "no result for kv-get".into())
                        }
                    }
                }
            } else {
                Err("kv-set failed, so kv-get did not run".into())
            };
            if let Ok(g) = &kv_get {
                note(&format!("xen-blkfront: {}", g.summary()));
            }
            Batch::Ran(Box::new(Ran {
                results,
                specs,
                outs,
                kv_set,
                kv_get,
                detach,
            }))
        }
    }
}

/// Checks guest `name`: it powered off with status 0 after blkfront connected, and its image
/// after the run is what it should be.
fn check(name: &str) {
    let Some(ran) = ran() else {
        return;
    };
    let i = GUESTS
        .iter()
        .position(|g| g.name == name)
        .expect("a guest of GUESTS");
    let (g, r, spec) = (&GUESTS[i], &ran.results[i], &ran.specs[i]);
    assert_eq!(r.name, name);
    let console = r.console_text();
    let describe = format!("{}\n--- console ---\n{console}", r.summary());
    match xenlab_run::guest_outcome(r, spec) {
        XenOutcome::Exited { status: 0, .. } => {}
        other => panic!("{name}: {other:?}\n{describe}"),
    }
    assert!(
        console.contains(
            "block: blkfront device/vbd/51712: 16384 KiB (32768 blocks of 512 bytes), read-write, flush, interrupt"
        ),
        "{name}: blkfront connected to blkback\n{describe}"
    );
    assert!(
        console.contains("errors 0 device_errors 0"),
        "{name}: no errors\n{describe}"
    );
    let expected = match (g.writes, g.prefill) {
        (Some((seed, start, blocks)), _) => {
            assert!(
                console.contains(&format!(
                    "blkprobe: wrote, flushed and read back {blocks} blocks from {start} (seed {seed})"
                )),
                "{name}\n{describe}"
            );
            image(g.writes)
        }
        (None, Some((seed, start, blocks))) => {
            assert!(
                console.contains(&format!(
                    "blkprobe: verified {blocks} blocks from {start} (seed {seed})"
                )),
                "{name}\n{describe}"
            );
            image(g.prefill)
        }
        (None, None) => unreachable!("every guest writes or verifies"),
    };
    let out = std::fs::read(&ran.outs[i]).expect("the disk's image after the run");
    assert_eq!(out.len(), expected.len(), "{name}: the image's size");
    let first_diff = out.iter().zip(&expected).position(|(a, b)| a != b);
    assert_eq!(
        first_diff, None,
        "{name}: the image after the run differs from what the guest wrote (at byte offset)"
    );
}

#[test]
fn a_pv_guest_s_writes_are_in_the_image_after_the_run() {
    check("pv-write");
}

#[test]
fn a_pv_guest_reads_what_the_host_put_in_the_image() {
    check("pv-verify");
}

#[test]
fn a_pvh_guest_s_writes_are_in_the_image_after_the_run() {
    check("pvh-write");
}

#[test]
fn the_universal_image_takes_blkfront_on_xen_and_its_writes_are_in_the_image() {
    check("universal-write");
}

fn describe_io(r: &GuestResult) -> String {
    format!(
        "{}\n--- console ---\n{}\n--- dom0 script ---\n{}\n--- xl ---\n{}",
        r.summary(),
        r.console_text(),
        r.io.script_text(),
        r.xl_output.join("\n")
    )
}

#[test]
fn kvstore_keeps_its_acknowledged_keys_across_xl_destroy_and_a_new_xl_create() {
    let Some(ran) = ran() else {
        return;
    };
    let first = &ran.kv_set;
    assert!(first.passed(), "kv-set\n{}", describe_io(first));
    let console = first.console_text();
    assert!(
        console.contains("block: blkfront device/vbd/51712")
            && console.contains("kvstore: recovered /kvstore/aof: no log: a new, empty store"),
        "kv-set: a new store on blkfront\n{}",
        describe_io(first)
    );
    let second = match &ran.kv_get {
        Ok(g) => g,
        Err(e) => panic!("kv-get: {e}"),
    };
    assert!(second.passed(), "kv-get\n{}", describe_io(second));
    assert!(
        second
            .console_text()
            .contains("kvstore: recovered /kvstore/aof: 3 records, 3 keys"),
        "kv-get: the log replayed\n{}",
        describe_io(second)
    );
    let script = second.io.script_text();
    for (k, v) in KEYS {
        assert!(
            script.contains(&format!("GET {k}: ${} {v}", v.len())),
            "kv-get: {k}\n{}",
            describe_io(second)
        );
    }
}

/// Checks detach guest `i` of [`DETACH`].
fn check_detach(i: usize) {
    let Some(ran) = ran() else {
        return;
    };
    let (name, _) = DETACH[i];
    let g = &ran.detach[i];
    assert_eq!(g.name, name);
    let describe = describe_io(g);
    assert!(g.passed(), "{name}\n{describe}");
    let console = g.console_text();
    assert!(
        console.contains("blkfront device/vbd/51712: the backend went away (XenBus state 5)"),
        "{name}: blkfront saw blkback close\n{describe}"
    );
    assert!(
        console.contains("netfront device/vif/0: the backend went away (XenBus state 5)"),
        "{name}: netfront saw netback close\n{describe}"
    );
    assert!(
        !console.contains("no answer from the disk"),
        "{name}: no call waited for its time limit\n{describe}"
    );
    let script = g.io.script_text();
    assert!(
        script.contains("SET before: +OK")
            && script.contains("SET after: -IOERR")
            && script.contains("PING after: -IOERR"),
        "{name}\n{describe}"
    );
    for line in script.lines().filter(|l| l.contains("detach: status")) {
        note(&format!("xen-blkfront: {name}: {line}"));
    }
}

#[test]
fn a_pv_guest_sees_its_disk_and_nic_detached_and_the_detach_finishes() {
    check_detach(0);
}

#[test]
fn a_pvh_guest_sees_its_disk_and_nic_detached_and_the_detach_finishes() {
    check_detach(1);
}
