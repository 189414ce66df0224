//! Probes the Xen platform's services from an app, for the Xen lab tests: XenStore reads of the
//! domain's own `name` and `domid`, a write and a watch that fires on it, a transaction, and
//! timed sleeps (how late each wake-up was is reported, not judged). A Xen-only app: build it
//! with `--platform xen` (`cargo xtask run xenprobe --platform xen`).
#![no_std]
#![no_main]

use stardust::println;
use stardust::xen::{grant, xenstore};

/// One page, page-aligned (a grant covers a whole frame).
#[repr(C, align(4096))]
struct Page([u8; 4096]);

fn text(bytes: &[u8]) -> &str {
    core::str::from_utf8(bytes).unwrap_or("<not UTF-8>")
}

#[stardust::main]
fn main() -> Result<(), xenstore::Error> {
    let mut buf = [0u8; 256];
    let name = xenstore::read("name", &mut buf)?;
    println!("xenprobe: name={}", text(name));
    let domid = xenstore::read("domid", &mut buf)?;
    println!("xenprobe: domid={}", text(domid));
    match xenstore::read("no/such/key", &mut buf) {
        Err(e) => println!("xenprobe: missing key -> {e}"),
        Ok(v) => println!("xenprobe: missing key -> unexpected value {}", text(v)),
    }

    xenstore::watch("data/probe", "probe-token")?;
    let first = xenstore::next_event(&mut buf)?;
    println!(
        "xenprobe: watch registered ({} {})",
        text(first.path),
        text(first.token)
    );
    xenstore::write("data/probe", b"42")?;
    let event = xenstore::next_event(&mut buf)?;
    println!(
        "xenprobe: watch fired on {} with token {}",
        text(event.path),
        text(event.token)
    );
    let value = xenstore::read("data/probe", &mut buf)?;
    println!("xenprobe: data/probe={}", text(value));

    let tx = xenstore::transaction_start()?;
    xenstore::with(|xs, w| xs.write(tx, "data/tx", b"committed", w))?;
    xenstore::transaction_end(tx, true)?;
    let value = xenstore::read("data/tx", &mut buf)?;
    println!("xenprobe: transaction wrote data/tx={}", text(value));

    // A grant, end to end: grant a page to ourselves, let Xen copy out of it by reference.
    let domid: u16 = text(xenstore::read("domid", &mut buf)?)
        .parse()
        .unwrap_or(0);
    let mut source = stardust::alloc::boxed::Box::new(Page([0; 4096]));
    let mut dest = stardust::alloc::boxed::Box::new(Page([0; 4096]));
    for (i, b) in source.0.iter_mut().enumerate() {
        *b = (i * 7 + 3) as u8;
    }
    let va = source.0.as_ptr() as u64;
    // SAFETY: the page stays allocated and untouched until end_access succeeds below.
    let gref =
        unsafe { grant::grant_access(domid, va, true) }.map_err(|_| xenstore::Error::TooLong)?;
    let status = grant::copy_from_grant(gref, 16, dest.0.as_mut_ptr() as u64 + 16, 1000);
    let copied = dest.0[16..1016] == source.0[16..1016];
    let ended = grant::end_access(gref).is_ok();
    println!(
        "xenprobe: grant ref {} to domain {domid}: copy status {status}, data {}, end access {}",
        gref.0,
        if copied { "matches" } else { "DIFFERS" },
        if ended { "ok" } else { "FAILED" }
    );
    if status != 0 || !copied || !ended {
        println!("xenprobe: FAIL: grant copy");
        stardust::exit(1);
    }

    for ms in [1u64, 10, 50] {
        let start = stardust::time::now_ns().unwrap_or(0);
        stardust::time::sleep_ns(ms * 1_000_000);
        let slept = stardust::time::now_ns().unwrap_or(0) - start;
        println!(
            "xenprobe: sleep {ms} ms took {} us (late by {} us){}",
            slept / 1000,
            (slept.saturating_sub(ms * 1_000_000)) / 1000,
            if slept >= ms * 1_000_000 {
                ""
            } else {
                " EARLY"
            }
        );
        if slept < ms * 1_000_000 {
            println!("xenprobe: FAIL: woke early");
            stardust::exit(1);
        }
    }
    // More than the 2 KiB console ring in one go: the writer must wait for xenconsoled.
    for i in 1..=100 {
        println!("xenprobe: console line {i:3} of 100 ........................................");
    }
    println!("xenprobe: ok");
    Ok(())
}
