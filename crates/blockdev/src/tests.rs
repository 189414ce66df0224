use super::fake::{PowerCut, RamDisk, Survival, geometry};
use super::*;

fn rng(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed | 1;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

#[test]
fn requests_are_checked_against_the_geometry() {
    let info = geometry(100, 512);
    assert!(info.is_valid());
    assert_eq!(info.bytes(), 51_200);
    let ok = Request::read(1, 99, 1, 512);
    assert_eq!(info.check(&ok), Ok(()));
    assert_eq!(
        info.check(&Request::read(1, 99, 2, 512)),
        Err(Error::OutOfRange {
            block: 99,
            count: 2
        })
    );
    assert!(matches!(
        info.check(&Request::read(1, u64::MAX, 1, 512)),
        Err(Error::OutOfRange { .. })
    ));
    assert_eq!(
        info.check(&Request::write(1, 0, Buffer::new(100))),
        Err(Error::BadLength { len: 100 })
    );
    assert_eq!(
        info.check(&Request::write(1, 0, Buffer::new(0))),
        Err(Error::BadLength { len: 0 })
    );
    assert_eq!(
        info.check(&Request::read(1, 0, 65, 512)),
        Err(Error::BadLength { len: 65 * 512 })
    );
    let read_only = Info {
        read_only: true,
        ..info
    };
    assert_eq!(
        read_only.check(&Request::write(1, 0, Buffer::new(512))),
        Err(Error::ReadOnly)
    );
    assert_eq!(read_only.check(&ok), Ok(()));
    let no_flush = Info {
        flush: false,
        ..info
    };
    assert_eq!(
        no_flush.check(&Request::write(1, 0, Buffer::new(512))),
        Err(Error::NoFlush)
    );
    assert_eq!(no_flush.check(&Request::flush(1)), Err(Error::NoFlush));
    assert_eq!(no_flush.check(&ok), Ok(()));
    for bad in [
        Info {
            block_size: 256,
            ..info
        },
        Info {
            block_size: 1000,
            ..info
        },
        Info {
            block_size: 8192,
            ..info
        },
        Info {
            max_in_flight: 0,
            ..info
        },
        Info {
            max_request_blocks: 0,
            ..info
        },
    ] {
        assert!(!bad.is_valid(), "{bad:?}");
    }
}

#[test]
fn errors_say_what_failed() {
    let texts = [
        Error::OutOfRange {
            block: 10,
            count: 4,
        }
        .to_string(),
        Error::BadLength { len: 3 }.to_string(),
        Error::ReadOnly.to_string(),
        Error::NoFlush.to_string(),
        Error::Io { block: 7 }.to_string(),
        Error::Timeout.to_string(),
    ];
    assert_eq!(texts[0], "blocks 10..14 are past the end of the disk");
    assert!(texts[1].contains("3 bytes"));
    assert!(texts[3].contains("cannot flush"));
    assert!(texts[4].contains("block 7"));
}

#[test]
fn buffers_are_page_aligned_and_exact() {
    for len in [0, 1, 512, 4095, 4096, 4097, 3 * 4096] {
        let mut b = Buffer::new(len);
        assert_eq!(b.len(), len);
        assert_eq!(b.as_slice().len(), len);
        assert!(b.as_slice().iter().all(|&x| x == 0));
        assert_eq!(b.pages_mut().count(), len.div_ceil(PAGE_SIZE));
        for page in b.pages_mut() {
            assert_eq!(page.as_ptr() as usize % PAGE_SIZE, 0);
        }
    }
    let data: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
    let b = Buffer::from_slice(&data);
    assert_eq!(b.as_slice(), &data[..]);
    assert_eq!(format!("{b:?}"), "Buffer(5000 bytes)");
}

/// Random reads and writes of ranges longer than one request, through `Blocking`, against a
/// plain byte model, with completions in random order and a device that takes few at once.
#[test]
fn blocking_io_matches_a_model_whatever_the_completion_order() {
    for seed in 1..20u64 {
        let mut next = rng(seed);
        let info = Info {
            max_request_blocks: 1 + (seed % 5) as u32,
            max_in_flight: 1 + (seed % 3) as u16,
            ..geometry(256, 512)
        };
        let disk = RamDisk::with_info(vec![0; 256 * 512], info).reorder(seed);
        let mut io = Blocking::new(disk, NoWait);
        let mut model = vec![0u8; 256 * 512];
        for _ in 0..60 {
            let block = next() % 250;
            let count = 1 + (next() % 6).min(255 - block);
            let (start, end) = (block as usize * 512, (block + count) as usize * 512);
            if next().is_multiple_of(2) {
                let data: Vec<u8> = (start..end).map(|_| next() as u8).collect();
                io.write(block, &data).expect("write");
                model[start..end].copy_from_slice(&data);
            } else {
                let mut buf = vec![0xaa; end - start];
                io.read(block, &mut buf).expect("read");
                assert_eq!(buf, model[start..end], "seed {seed} block {block}");
            }
            if next().is_multiple_of(7) {
                io.flush().expect("flush");
            }
        }
        assert_eq!(io.device().in_flight(), 0);
        assert_eq!(io.device().image(), &model[..]);
    }
}

#[test]
fn blocking_io_reports_the_lowest_failed_block_and_drains_the_rest() {
    let disk = RamDisk::with_info(
        vec![0; 64 * 512],
        Info {
            max_request_blocks: 2,
            ..geometry(64, 512)
        },
    )
    .reorder(3)
    .fail_block(9);
    let mut io = Blocking::new(disk, NoWait);
    let mut buf = vec![0; 16 * 512];
    assert_eq!(io.read(4, &mut buf), Err(Error::Io { block: 8 }));
    assert_eq!(io.device().in_flight(), 0, "nothing left in flight");
    assert!(io.device().stats().errors >= 1);
    assert_eq!(
        io.read(0, &mut buf[..512]),
        Ok(()),
        "the rest of the disk still reads"
    );
    assert_eq!(
        io.read(0, &mut buf[..100]),
        Err(Error::BadLength { len: 100 })
    );
    assert!(matches!(
        io.write(63, &buf[..1024]),
        Err(Error::OutOfRange { block: 63, .. })
    ));
}

/// A device that takes requests and never finishes them, or loses them.
#[derive(Debug, Default)]
struct BlackHole {
    loses: bool,
    taken: usize,
}

impl BlockDevice for BlackHole {
    fn info(&self) -> Info {
        geometry(8, 512)
    }
    fn submit(&mut self, _: Request) -> Result<(), (Error, Request)> {
        self.taken += 1;
        Ok(())
    }
    fn complete(&mut self) -> Option<Completion> {
        None
    }
    fn in_flight(&self) -> usize {
        if self.loses { 0 } else { self.taken }
    }
}

struct GiveUpAfter(u32);

impl Wait for GiveUpAfter {
    fn wait(&mut self) -> bool {
        self.0 = self.0.saturating_sub(1);
        self.0 > 0
    }
}

#[test]
fn a_device_that_never_answers_is_an_error_not_a_hang() {
    let mut io = Blocking::new(
        BlackHole {
            loses: true,
            taken: 0,
        },
        NoWait,
    );
    assert_eq!(io.flush(), Err(Error::DeviceFailed));
    let mut io = Blocking::new(BlackHole::default(), GiveUpAfter(5));
    let mut buf = [0; 512];
    assert_eq!(io.read(0, &mut buf), Err(Error::Timeout));
}

#[test]
fn a_power_cut_keeps_what_was_flushed() {
    let image = vec![0u8; 32 * 512];
    let mut disk = PowerCut::new(image, 512, Some(3), None);
    let mut io = Blocking::new(&mut disk, NoWait);
    io.write(0, &[1; 512]).expect("write 1");
    io.flush().expect("flush");
    io.write(1, &[2; 512]).expect("write 2");
    io.write(2, &[3; 512]).expect("write 3");
    assert_eq!(
        io.write(3, &[4; 1024]),
        Err(Error::PowerCut),
        "write 4: the cut"
    );
    assert_eq!(
        io.read(0, &mut [0; 512]),
        Err(Error::PowerCut),
        "dead after the cut"
    );
    assert_eq!(io.flush(), Err(Error::PowerCut));
    let _ = io;
    assert!(disk.is_cut());
    assert_eq!(disk.writes(), 4);
    let none = disk.after_power_cut(Survival::None);
    assert_eq!(&none[..512], &[1; 512], "flushed: kept");
    assert!(none[512..].iter().all(|&b| b == 0), "unflushed: lost");
    let all = disk.after_power_cut(Survival::All);
    assert_eq!(&all[512..1024], &[2; 512]);
    assert_eq!(&all[1024..1536], &[3; 512]);
    assert!(
        all[1536..].iter().all(|&b| b == 0),
        "the cut write, untorn: lost"
    );
    // Random survival keeps each unflushed sector or not, and never invents data.
    let mut kept = [false; 2];
    for seed in 0..32 {
        let img = disk.after_power_cut(Survival::Random(seed));
        assert_eq!(&img[..512], &[1; 512]);
        for (i, fill) in [(1usize, 2u8), (2, 3)] {
            let s = &img[i * 512..(i + 1) * 512];
            assert!(s.iter().all(|&b| b == 0) || s.iter().all(|&b| b == fill));
            kept[i - 1] |= s[0] == fill;
        }
    }
    assert_eq!(kept, [true, true], "random survival keeps some sectors");
}

#[test]
fn a_torn_write_leaves_a_prefix_of_its_sectors() {
    let mut torn_somewhere = false;
    for seed in 0..40 {
        let mut disk = PowerCut::new(vec![0; 16 * 512], 512, Some(0), Some(seed));
        let mut io = Blocking::new(&mut disk, NoWait);
        assert_eq!(io.write(0, &[9; 8 * 512]), Err(Error::PowerCut));
        let _ = io;
        let img = disk.after_power_cut(Survival::All);
        let kept = img
            .chunks(512)
            .take_while(|s| s.iter().all(|&b| b == 9))
            .count();
        assert!(
            img[kept * 512..].iter().all(|&b| b == 0),
            "a prefix, nothing else"
        );
        torn_somewhere |= kept > 0 && kept < 8;
    }
    assert!(torn_somewhere);
}

#[test]
fn a_flush_covers_only_writes_already_completed() {
    let mut disk = PowerCut::new(vec![0; 8 * 512], 512, None, None);
    disk.submit(Request::write(1, 0, Buffer::from_slice(&[5; 512])))
        .expect("submit");
    // The flush goes in before the write's completion was reported.
    disk.submit(Request::flush(2)).expect("submit");
    while disk.complete().is_some() {}
    assert!(
        disk.after_power_cut(Survival::None).iter().all(|&b| b == 0),
        "a write not yet completed is not covered"
    );
    disk.submit(Request::flush(3)).expect("submit");
    while disk.complete().is_some() {}
    assert_eq!(&disk.after_power_cut(Survival::None)[..512], &[5; 512]);
    assert_eq!(disk.current()[0], 5);
}

#[test]
fn fakes_refuse_what_the_geometry_refuses_and_say_busy() {
    let mut disk = RamDisk::with_info(
        vec![0; 4 * 512],
        Info {
            max_in_flight: 1,
            read_only: true,
            ..geometry(4, 512)
        },
    );
    let (e, back) = disk
        .submit(Request::write(7, 0, Buffer::new(512)))
        .expect_err("read-only");
    assert_eq!((e, back.id), (Error::ReadOnly, 7));
    disk.submit(Request::read(1, 0, 1, 512)).expect("one");
    let (e, _) = disk.submit(Request::read(2, 1, 1, 512)).expect_err("busy");
    assert_eq!(e, Error::Busy);
    assert_eq!(disk.in_flight(), 1);
    let c = disk.complete().expect("done");
    assert_eq!((c.id, c.result), (1, Ok(())));
    assert_eq!(disk.stats().reads, 1);
}
