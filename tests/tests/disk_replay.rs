//! Crash states of a guest's disk from QEMU's write log (`blklogwrites`, `Run::disk_log`,
//! `xtask::disklog`), on whole images under QEMU (TCG).
//!
//! Killing QEMU cannot catch a missing flush (the guest's writes survive in the host's page
//! cache), so these tests record every write and flush the guest makes, replay the log to cut
//! points, drop the writes no flush covered (all of them, none, or seeded sectors of them) and
//! check the replayed images.
//!
//! Acknowledgements map to the log this way: QEMU appends a request's entry to the log before
//! it tells the guest that the request completed, so when the guest prints (or answers) that
//! something is durable, every entry up to the flush that made it so is already in the log
//! file. The host reads the log file's length when the line arrives; the entries whole within
//! that length (`Log::entries_within`) are a cut point at or after that flush. Every replay
//! cut at or after it must hold what was acknowledged, however the uncovered writes fare.
//!
//! - `blkprobe` (q35 and microvm): writes a pattern over 1000 blocks (several requests), flushes,
//!   says so; replayed to every cut under each survival, the pattern is whole at every cut from
//!   the acknowledgement on, and the last cut with every write kept is the image file, byte for
//!   byte. Two negative controls show the check can fail: the same log with its flush left out,
//!   and a guest that does not flush (`blkprobe noflush`).

use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use stardust_tests::{Machine, Run};
use xtask::disklog::{Log, Replayer, Rng, Survival};

/// Blocks blkprobe writes, from block [`START`].
const BLOCKS: u64 = 1000;
const START: u64 = 8;
/// The image files' size.
const IMAGE_BYTES: u64 = 4 << 20;

/// Byte `offset` of the disk in blkprobe's pattern of `seed` (apps/blkprobe's `byte`).
fn byte(seed: u64, offset: u64) -> u8 {
    let x = (offset ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    (x >> 56) as u8
}

/// A zeroed image file and a log file beside it, both removed when dropped.
struct Files {
    image: PathBuf,
    log: PathBuf,
}

impl Files {
    fn new(name: &str) -> Files {
        let stem = std::env::temp_dir().join(format!(
            "stardust-replay-{}-{}",
            std::process::id(),
            name.replace(' ', "-")
        ));
        let image = stem.with_extension("img");
        let file = std::fs::File::create(&image).expect("create the image");
        file.set_len(IMAGE_BYTES).expect("size the image");
        Files {
            image,
            log: stem.with_extension("log"),
        }
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.image);
        let _ = std::fs::remove_file(&self.log);
    }
}

fn log_len(log: &Path) -> u64 {
    std::fs::metadata(log).map(|m| m.len()).unwrap_or(0)
}

/// Boots blkprobe with `args` on a recorded disk; returns the log, parsed after QEMU ended, and
/// the cut the guest's report line acknowledged (the log's length when the line arrived).
fn record_blkprobe(machine: Machine, files: &Files, args: &[&str], report: &str) -> (Log, usize) {
    let guest = Run::new("blkprobe")
        .profile("storage")
        .machine(machine)
        .args(args)
        .disk_log(&files.image, &files.log)
        .start();
    guest
        .wait_for_line(report, Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let acked = log_len(&files.log);
    let boot = guest
        .wait(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(
        boot.outcome,
        stardust_tests::Outcome::Guest(0),
        "{}",
        boot.stdout
    );
    let log = Log::read(&files.log).unwrap_or_else(|e| panic!("{e:#}"));
    let cut = log.entries_within(acked);
    eprintln!(
        "{machine:?} {args:?}: {} entries ({} flushes) in {} bytes; acknowledged at {acked} \
         bytes: cut {cut}",
        log.entries.len(),
        log.flush_cuts().len(),
        log_len(&files.log)
    );
    (log, cut)
}

/// Replays `log` over a blank image to every cut under three survivals, and checks that every
/// cut from `acked` on holds blkprobe's pattern of `seed`. Returns the replays checked, or the
/// first cut that lost it.
fn check_pattern(log: &Log, seed: u64, acked: usize) -> Result<usize, String> {
    let mut r = Replayer::new(log, vec![0; IMAGE_BYTES as usize]).map_err(|e| format!("{e:#}"))?;
    let (from, to) = ((START * 512) as usize, ((START + BLOCKS) * 512) as usize);
    let mut checked = 0;
    for cut in acked..=log.entries.len() {
        for survival in [
            Survival::None,
            Survival::All,
            Survival::Random(seed ^ cut as u64),
        ] {
            let img = r.image(cut, survival).map_err(|e| format!("{e:#}"))?;
            if let Some(at) = (from..to).find(|&i| img[i] != byte(seed, i as u64)) {
                return Err(format!(
                    "cut {cut} of {} ({survival:?}): byte {at} is not the pattern",
                    log.entries.len()
                ));
            }
            checked += 1;
        }
    }
    Ok(checked)
}

#[test]
fn blkprobe_flushed_writes_are_in_every_replayed_cut_and_a_missing_flush_is_caught() {
    let machines = [("q35", Machine::Q35, 21), ("microvm", Machine::Microvm, 22)];
    thread::scope(|s| {
        let runs: Vec<_> = machines
            .iter()
            .map(|&(name, machine, seed)| {
                s.spawn(move || {
                    let files = Files::new(name);
                    let seed_arg = format!("seed={seed}");
                    let (log, acked) = record_blkprobe(
                        machine,
                        &files,
                        &[&seed_arg],
                        "blkprobe: wrote, flushed and read back 1000 blocks",
                    );
                    // The pattern in writes (as many as the device's request size needs), then
                    // one flush, and the acknowledgement after it.
                    let written: u64 = log.entries.iter().map(|e| e.sectors).sum();
                    assert_eq!(written, BLOCKS, "{:?}", log.entries);
                    let flush = log.flush_cuts();
                    assert_eq!(flush.len(), 1, "one flush: {:?}", log.entries);
                    assert!(
                        acked >= flush[0],
                        "acknowledged at {acked}, flushed at {flush:?}"
                    );
                    // Every write kept, the last cut is what QEMU wrote to the file.
                    let mut r = Replayer::new(&log, vec![0; IMAGE_BYTES as usize]).unwrap();
                    let all = r.image(log.entries.len(), Survival::All).unwrap();
                    assert!(
                        all == std::fs::read(&files.image).unwrap(),
                        "replay != image file"
                    );
                    // Before the flush nothing was durable: the cut loses the whole pattern.
                    let mut r = Replayer::new(&log, vec![0; IMAGE_BYTES as usize]).unwrap();
                    let before = r.image(flush[0] - 1, Survival::None).unwrap();
                    assert!(before.iter().all(|&b| b == 0), "durable before its flush");
                    let checked = check_pattern(&log, seed, acked).unwrap();
                    eprintln!("{name}: {checked} replays hold the pattern");

                    // Negative control 1: the same log without its flush.
                    let unflushed = log.filtered(|_, e| !e.is_flush());
                    let e = check_pattern(&unflushed, seed, unflushed.entries.len()).unwrap_err();
                    eprintln!("{name}: without the flush, caught as it must be: {e}");

                    // Negative control 2: a guest that never flushes, acknowledged all the same.
                    let files = Files::new(&format!("{name}-noflush"));
                    let (log, acked) = record_blkprobe(
                        machine,
                        &files,
                        &[&seed_arg, "noflush"],
                        "blkprobe: wrote (no flush) and read back 1000 blocks",
                    );
                    assert!(log.flush_cuts().is_empty(), "{:?}", log.entries);
                    assert_eq!(log.counted, 0, "no superblock before a flush");
                    let e = check_pattern(&log, seed, acked).unwrap_err();
                    eprintln!("{name}: a guest without flush, caught as it must be: {e}");
                })
            })
            .collect();
        for r in runs {
            r.join().expect("a machine's run failed");
        }
    });
}

/// Seeded cut points for the app tests (printed, so a failure can be replayed).
#[allow(dead_code)]
fn random_cuts(seed: u64, from: usize, to: usize, n: usize) -> Vec<usize> {
    let mut rng = Rng::new(seed);
    let mut cuts: Vec<usize> = (0..n)
        .map(|_| from + rng.below((to - from + 1) as u64) as usize)
        .collect();
    cuts.sort();
    cuts.dedup();
    eprintln!("cut points (seed {seed}): {cuts:?}");
    cuts
}
