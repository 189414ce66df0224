use super::*;
use blockdev::BlockIo;
use std::collections::BTreeMap;

const S: usize = SECTOR as usize;

fn sector(byte: u8) -> Vec<u8> {
    vec![byte; S]
}

/// Sector `i` of `image`'s first byte.
fn at(image: &[u8], i: usize) -> u8 {
    image[i * S]
}

/// A: sector 0 := 1, flush; B: sector 1 := 2; C: sector 0 := 3 (B and C never flushed).
fn small() -> (Vec<u8>, Log) {
    let base = vec![0u8; 4 * S];
    let mut r = Recorder::new(base.clone());
    r.write(0, &sector(1)).unwrap();
    r.flush().unwrap();
    r.write(1, &sector(2)).unwrap();
    r.write(0, &sector(3)).unwrap();
    (base, Log::parse(r.log).unwrap())
}

#[test]
fn a_recorded_log_parses_back_entry_by_entry() {
    let (_, log) = small();
    assert_eq!(log.sector_size, 512);
    // The superblock was last written at the flush: it counts 2 of the 4 entries.
    assert_eq!(log.counted, 2);
    let kinds: Vec<_> = log
        .entries
        .iter()
        .map(|e| (e.sector, e.sectors, e.flags))
        .collect();
    assert_eq!(kinds, [(0, 1, 0), (0, 0, FLUSH), (1, 1, 0), (0, 1, 0)]);
    assert_eq!(log.data(&log.entries[3]), &sector(3)[..]);
    assert_eq!(log.flush_cuts(), [2]);
    assert_eq!(log.entries.last().unwrap().end, 8 * S as u64);
    // A host that read the log's length knows which entries the guest had completed.
    assert_eq!(log.entries_within(0), 0);
    assert_eq!(log.entries_within(3 * S as u64), 1);
    assert_eq!(log.entries_within(4 * S as u64 - 1), 1);
    assert_eq!(log.entries_within(4 * S as u64), 2);
    assert_eq!(log.entries_within(u64::MAX), 4);
    assert!(log.covered(0, 2) && !log.covered(0, 1) && !log.covered(2, 4));
    assert_eq!(log.uncovered(4), 2);
    assert_eq!(log.uncovered(2), 0);
    assert_eq!(log.uncovered(1), 1);
}

#[test]
fn a_log_prints_entry_by_entry_and_survivals_parse() {
    let (_, log) = small();
    let text = format_log(&log);
    assert!(
        text.starts_with("write log: 4 entries (2 counted by the superblock), 1 flushes"),
        "{text}"
    );
    assert!(
        text.contains("     0 write        sectors 0..1 (log 1536 bytes)"),
        "{text}"
    );
    assert!(
        text.contains("     1 flush        (log 2048 bytes)"),
        "{text}"
    );
    assert_eq!(parse_survival("none").unwrap(), Survival::None);
    assert_eq!(parse_survival("all").unwrap(), Survival::All);
    assert_eq!(parse_survival("7").unwrap(), Survival::Random(7));
    assert!(parse_survival("some").is_err());
}

#[test]
fn an_empty_log_and_one_never_flushed_have_no_superblock_yet() {
    let log = Log::parse(Vec::new()).unwrap();
    assert!(log.entries.is_empty());
    let mut r = Recorder::new(vec![0; 2 * S]);
    r.write(1, &sector(9)).unwrap();
    // Sector 0 is still zeros, as QEMU leaves it before the first flush.
    assert!(r.log[..S].iter().all(|&b| b == 0));
    let log = Log::parse(r.log).unwrap();
    assert_eq!(
        (log.sector_size, log.counted, log.entries.len()),
        (512, 0, 1)
    );
}

#[test]
fn a_cut_keeps_what_a_flush_covered_and_survival_decides_the_rest() {
    let (base, log) = small();
    let mut r = Replayer::new(&log, base.clone()).unwrap();
    assert_eq!(r.image(0, Survival::None).unwrap(), base);
    // Before the flush: A may be lost or kept.
    let img = r.image(1, Survival::None).unwrap();
    assert_eq!(at(&img, 0), 0);
    assert_eq!(at(&r.image(1, Survival::All).unwrap(), 0), 1);
    // After it: A whatever survives.
    let img = r.image(4, Survival::None).unwrap();
    assert_eq!((at(&img, 0), at(&img, 1)), (1, 0));
    let img = r.image(4, Survival::All).unwrap();
    assert_eq!((at(&img, 0), at(&img, 1)), (3, 2));
    // Random: each sector of B and C, on its own; every combination shows up over seeds, and
    // a seed gives the same image twice.
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..64 {
        let img = r.image(4, Survival::Random(seed)).unwrap();
        assert_eq!(img, r.image(4, Survival::Random(seed)).unwrap());
        let pair = (at(&img, 0), at(&img, 1));
        assert!(
            [1, 3].contains(&pair.0) && [0, 2].contains(&pair.1),
            "{pair:?}"
        );
        seen.insert(pair);
    }
    assert_eq!(seen.len(), 4, "{seen:?}");
    // The overlay disk reads the same bytes as the whole image.
    let img = r.image(4, Survival::Random(5)).unwrap();
    let mut disk = r.disk(4, Survival::Random(5)).unwrap();
    let mut buf = vec![0u8; 4 * S];
    disk.read(0, &mut buf).unwrap();
    assert_eq!(buf, img);
    assert!(disk.write(0, &buf[..S]).is_err());
    assert!(disk.read(3, &mut buf[..2 * S]).is_err());
}

#[test]
fn fua_writes_are_durable_a_flushs_own_data_is_not_and_a_discard_is_zeros() {
    let base = vec![7u8; 4 * S];
    let mut r = Recorder::new(base.clone());
    r.entry(0, 1, FUA, &sector(1));
    r.entry(1, 1, FLUSH, &sector(2)); // a PREFLUSH write: flushes what came before it
    r.entry(2, 2, DISCARD, &[]);
    r.entry(0, 0, MARK, &[]);
    let log = Log::parse(r.log).unwrap();
    assert_eq!(log.entries.len(), 4);
    let mut rep = Replayer::new(&log, base).unwrap();
    let img = rep.image(4, Survival::None).unwrap();
    assert_eq!(
        (at(&img, 0), at(&img, 1), at(&img, 2), at(&img, 3)),
        (1, 7, 7, 7)
    );
    let img = rep.image(4, Survival::All).unwrap();
    assert_eq!(
        (at(&img, 0), at(&img, 1), at(&img, 2), at(&img, 3)),
        (1, 2, 0, 0)
    );
    assert!(img[2 * S..].iter().all(|&b| b == 0));
}

#[test]
fn cuts_go_in_order_and_stay_in_the_log() {
    let (base, log) = small();
    let mut r = Replayer::new(&log, base).unwrap();
    r.image(4, Survival::None).unwrap();
    let e = r.image(1, Survival::None).unwrap_err();
    assert!(e.to_string().contains("cuts go in order"), "{e}");
    let e = r.image(5, Survival::None).unwrap_err();
    assert!(e.to_string().contains("past the log"), "{e}");
}

#[test]
fn a_filtered_log_drops_entries_and_parses() {
    let (base, log) = small();
    let no_flush = log.filtered(|_, e| !e.is_flush());
    assert_eq!(no_flush.entries.len(), 3);
    assert_eq!(no_flush.counted, 3);
    assert!(no_flush.flush_cuts().is_empty());
    let img = Replayer::new(&no_flush, base.clone())
        .unwrap()
        .image(3, Survival::None)
        .unwrap();
    assert_eq!(img, base);
}

/// Errors, each naming what is wrong.
#[test]
fn corrupt_or_truncated_logs_are_errors_that_say_what() {
    let (base, log) = small();
    let good = log.bytes.clone();
    let err = |bytes: Vec<u8>| Log::parse(bytes).unwrap_err().to_string();
    let mut b = good.clone();
    b[0] ^= 1;
    assert!(err(b).contains("not a write log"));
    let mut b = good.clone();
    b[8] = 2;
    assert!(err(b).contains("unsupported version 2"));
    let mut b = good.clone();
    b[24..28].copy_from_slice(&1000u32.to_le_bytes());
    assert!(err(b).contains("bad sector size 1000"));
    let mut b = good.clone();
    b[24..28].copy_from_slice(&(1u32 << 20).to_le_bytes());
    assert!(err(b).contains("bad sector size"));
    assert!(err(good[..100].to_vec()).contains("truncated"));
    assert!(err(good[..good.len() - 1].to_vec()).contains("entry 3 at byte 3072: truncated"));
    assert!(err(good[..good.len() - S + 10].to_vec()).contains("entry 3"));
    // Cut whole entries off: fewer than the superblock counts.
    assert!(err(good[..3 * S].to_vec()).contains("counts 2 entries, the log holds 1"));
    let mut b = good.clone();
    b[S + 16] = 0x40;
    assert!(err(b).contains("entry 0 at byte 512: unknown flags 0x40"));
    let mut b = good.clone();
    b[S + 25] = 0xff;
    assert!(err(b).contains("does not fit"));
    let mut b = good.clone();
    b[S + 8..S + 16].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(err(b).contains("truncated"));
    let mut b = good.clone();
    b[S..S + 8].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(err(b).contains("overflow"));
    // In the log's bounds, out of the disk's.
    let e = Replayer::new(&log, base[..S].to_vec()).unwrap_err();
    assert!(
        e.to_string()
            .contains("entry 2 writes sectors 1..2 of a disk of 1"),
        "{e}"
    );
    let e = Replayer::new(&log, vec![0; S + 1]).unwrap_err();
    assert!(e.to_string().contains("whole"), "{e}");
}

/// Seeded random damage (bytes flipped, the log cut anywhere, headers overwritten with random
/// numbers): parsing and replaying every cut give a result or an error, never a panic.
#[test]
fn random_damage_never_panics() {
    let (base, log) = small();
    let good = log.bytes.clone();
    let mut rng = Rng::new(17);
    for _ in 0..3000 {
        let mut b = good.clone();
        match rng.below(3) {
            0 => b.truncate(rng.below(good.len() as u64 + 1) as usize),
            1 => {
                for _ in 0..=rng.below(4) {
                    let i = rng.below(b.len() as u64) as usize;
                    b[i] ^= 1 << rng.below(8);
                }
            }
            _ => {
                let header = [0, S, 2 * S, 3 * S, 5 * S][rng.below(5) as usize];
                let field = rng.below(4) as usize * 8;
                let v = match rng.below(3) {
                    0 => rng.next_u64(),
                    1 => rng.below(16),
                    _ => u64::MAX - rng.below(4),
                };
                b[header + field..header + field + 8].copy_from_slice(&v.to_le_bytes());
            }
        }
        if let Ok(log) = Log::parse(b)
            && let Ok(mut r) = Replayer::new(&log, base.clone())
        {
            for cut in 0..=log.entries.len() {
                let _ = r.image(cut, Survival::Random(cut as u64));
            }
        }
    }
}

/// The state a test expects of the filesystem: file name -> contents.
type Model = BTreeMap<String, Vec<u8>>;

fn files(fs: &mut sdfs::Filesystem<impl BlockIo>) -> Result<Model, String> {
    let mut out = Model::new();
    for e in fs.list("/").map_err(|e| e.to_string())? {
        let data = fs
            .read_file(&format!("/{}", e.name))
            .map_err(|e| e.to_string())?;
        out.insert(e.name, data);
    }
    Ok(out)
}

/// sdfs over a recording disk: files written, appended, removed and synced; the states after
/// each sync and the log's length then.
fn record_sdfs() -> (Vec<u8>, Log, Vec<(usize, Model)>) {
    let base = vec![0u8; 1 << 20];
    let (mut fs, mounted) = sdfs::Filesystem::mount(Recorder::new(base.clone())).unwrap();
    assert!(mounted.formatted);
    let mut model = Model::new();
    let entries = |fs: &sdfs::Filesystem<Recorder>| Log::parse(fs.device().log.clone()).unwrap();
    let mut synced = vec![(entries(&fs).entries.len(), model.clone())];
    let mut rng = Rng::new(3);
    for round in 0..12u8 {
        for _ in 0..3 {
            let name = format!("f{}", rng.below(4));
            let data = vec![round ^ rng.below(256) as u8; 100 + rng.below(6000) as usize];
            if rng.below(5) == 0 && model.contains_key(&name) {
                fs.remove(&format!("/{name}")).unwrap();
                model.remove(&name);
            } else {
                fs.write_file(&format!("/{name}"), &data).unwrap();
                model.insert(name, data);
            }
        }
        fs.sync().unwrap();
        synced.push((entries(&fs).entries.len(), model.clone()));
    }
    let log = entries(&fs);
    (base, log, synced)
}

/// Replays an sdfs log to every flush and to cuts between them, under every survival: each
/// image mounts and holds the state of the last sync that returned before the cut, or of the
/// one then running. Returns the first failure.
fn check_sdfs(base: &[u8], log: &Log, synced: &[(usize, Model)]) -> Result<usize, String> {
    let mut cuts: Vec<usize> = log.flush_cuts();
    let mut rng = Rng::new(9);
    for _ in 0..60 {
        cuts.push(rng.below(log.entries.len() as u64 + 1) as usize);
    }
    cuts.sort();
    cuts.dedup();
    cuts.retain(|&c| c >= synced[0].0);
    let mut r = Replayer::new(log, base.to_vec()).map_err(|e| e.to_string())?;
    let mut checked = 0;
    for &cut in &cuts {
        let k = synced.iter().rposition(|(end, _)| *end <= cut).unwrap();
        for survival in [
            Survival::None,
            Survival::All,
            Survival::Random(cut as u64),
            Survival::Random(!(cut as u64)),
        ] {
            let disk = r.disk(cut, survival).map_err(|e| e.to_string())?;
            let got = sdfs::Filesystem::mount(disk)
                .map_err(|e| e.to_string())
                .and_then(|(mut fs, _)| files(&mut fs));
            let ok = got
                .as_ref()
                .is_ok_and(|m| *m == synced[k].1 || synced.get(k + 1).is_some_and(|n| *m == n.1));
            if !ok {
                return Err(format!(
                    "cut {cut} ({survival:?}), after sync {k}: {:?}",
                    got.map(|m| m.keys().cloned().collect::<Vec<_>>())
                ));
            }
            checked += 1;
        }
    }
    Ok(checked)
}

#[test]
fn sdfs_replayed_to_any_cut_mounts_with_its_last_sync() {
    let (base, log, synced) = record_sdfs();
    // A flush per sync (one for a small sync's data and superblock, two for a large one's:
    // data, then superblock), two for the format.
    assert!(
        log.flush_cuts().len() >= 12 + 2,
        "{}",
        log.flush_cuts().len()
    );
    let checked = check_sdfs(&base, &log, &synced).unwrap();
    assert!(checked > 100, "{checked}");
}

/// The negative control: the same log without the flush between a sync's data and its
/// superblock (a filesystem that forgot it) is caught: some cut mounts a superblock whose
/// blocks were lost, or the wrong state.
#[test]
fn sdfs_without_its_data_flush_is_caught() {
    let (base, log, synced) = record_sdfs();
    // Each sync's first flush is its data flush; keep only the others, and recount the
    // sync boundaries in the filtered log.
    let first_flush_of_sync: std::collections::BTreeSet<usize> = synced
        .windows(2)
        .filter_map(|w| (w[0].0..w[1].0).find(|&i| log.entries[i].is_flush()))
        .collect();
    let keep = |i: usize, _: &Entry| !first_flush_of_sync.contains(&i);
    let filtered = log.filtered(keep);
    let renumber = |end: usize| (0..end).filter(|&i| keep(i, &log.entries[i])).count();
    let synced: Vec<_> = synced
        .iter()
        .map(|(e, m)| (renumber(*e), m.clone()))
        .collect();
    let e = check_sdfs(&base, &filtered, &synced).unwrap_err();
    eprintln!("caught, as it must be: {e}");
}
