//! The image stripper: keeps what a loader reads (ELF header, program headers, segment bytes) and
//! drops the rest (section headers, `.symtab`, `.strtab`, debug info).
//!
//! The output is the input with the section-header fields cleared (`e_shoff`, `e_shnum`,
//! `e_shstrndx` = 0), every byte outside the ELF header, the program header table and the
//! segments' file ranges zeroed, and the file cut after the last such byte. Offsets do not move,
//! so the program headers stay valid as they are.

//!
//! The ELF header and the program headers are read with the `object` crate's ELF types
//! (`FileHeader64`, `ProgramHeader64`), from their raw fields: no `PN_XNUM` lookup into the
//! section table, which stripping clears. The notes of a `PT_NOTE` segment are walked here with
//! 4-byte alignment, as Xen's loader reads them, so that padding shorter than a note header at
//! the end of a segment is ignored, not an error.

use anyhow::{Result, bail};
use object::LittleEndian as LE;
use object::elf::{FileHeader64, PT_LOAD, PT_NOTE, ProgramHeader64};
use object::read::ReadRef;
use object::read::elf::{FileHeader, ProgramHeader};

const EHDR_SIZE: usize = size_of::<FileHeader64<LE>>();
const PHDR_SIZE: usize = size_of::<ProgramHeader64<LE>>();

/// A parsed image: its ELF header and its program headers, every segment's file bytes inside
/// the file.
struct Elf<'a> {
    phoff: usize,
    phdrs: &'a [ProgramHeader64<LE>],
}

impl<'a> Elf<'a> {
    fn parse(elf: &'a [u8]) -> Result<Elf<'a>> {
        if elf.len() < EHDR_SIZE || &elf[..4] != b"\x7fELF" {
            bail!("not an ELF file");
        }
        if elf[4] != object::elf::ELFCLASS64.0 || elf[5] != object::elf::ELFDATA2LSB.0 {
            bail!("only little-endian ELF64 images are supported");
        }
        let Ok(header) = FileHeader64::<LE>::parse(elf) else {
            bail!("unsupported ELF header (ELF version {})", elf[6]);
        };
        let phoff = header.e_phoff(LE);
        let phentsize = header.e_phentsize(LE) as usize;
        let phnum = header.e_phnum(LE) as usize;
        if phnum == 0 {
            bail!("ELF has no program headers: nothing would be loaded");
        }
        if phentsize != PHDR_SIZE {
            bail!("ELF program header size is {phentsize}, expected {PHDR_SIZE}");
        }
        // Inside the file, after the ELF header (whose section-header fields stripping clears).
        let phdrs = match elf.read_slice_at::<ProgramHeader64<LE>>(phoff, phnum) {
            Ok(phdrs) if phoff >= EHDR_SIZE as u64 => phdrs,
            _ => bail!("ELF program header table lies outside the file"),
        };
        for (i, ph) in phdrs.iter().enumerate() {
            let (offset, filesz) = (ph.p_offset(LE), ph.p_filesz(LE));
            // A segment with no file bytes (only bss) reads nothing: its offset does not matter
            // (and a stripped file may end before it).
            if filesz != 0
                && offset
                    .checked_add(filesz)
                    .is_none_or(|end| end > elf.len() as u64)
            {
                bail!(
                    "ELF segment {i} (offset {offset:#x}, size {filesz:#x}) lies outside the file"
                );
            }
        }
        Ok(Elf {
            phoff: phoff as usize,
            phdrs,
        })
    }

    /// The file bytes of the segments of type `p_type` that have any.
    fn segments(
        &self,
        elf: &'a [u8],
        p_type: object::elf::ProgramType,
    ) -> impl Iterator<Item = &'a [u8]> {
        self.phdrs
            .iter()
            .filter(move |ph| ph.p_type(LE) == p_type && ph.p_filesz(LE) > 0)
            .map(move |ph| {
                let start = ph.p_offset(LE) as usize;
                &elf[start..start + ph.p_filesz(LE) as usize]
            })
    }
}

/// One past the highest physical byte a loader fills (PT_LOAD `p_paddr + p_memsz`): the guest
/// needs at least this much memory just to hold the image.
pub fn load_end(elf: &[u8]) -> Result<u64> {
    let parsed = Elf::parse(elf)?;
    Ok(parsed
        .phdrs
        .iter()
        .filter(|ph| ph.p_type(LE) == PT_LOAD)
        .map(|ph| ph.p_paddr(LE).saturating_add(ph.p_memsz(LE)))
        .max()
        .unwrap_or(0))
}

/// The types of the ELF notes named `name` in the image's `PT_NOTE` segments (e.g. `Xen`: type
/// 18 is `XEN_ELFNOTE_PHYS32_ENTRY`, the PVH entry; type 1 `XEN_ELFNOTE_ENTRY`, the PV one).
pub fn note_types(elf: &[u8], name: &str) -> Result<Vec<u32>> {
    let parsed = Elf::parse(elf)?;
    let u32_at = |b: &[u8], o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    let mut types = Vec::new();
    for seg in parsed.segments(elf, PT_NOTE) {
        let mut at = 0;
        while at + 12 <= seg.len() {
            let namesz = u32_at(seg, at) as usize;
            let descsz = u32_at(seg, at + 4) as usize;
            let kind = u32_at(seg, at + 8);
            let name_at = at + 12;
            let desc_at = name_at + namesz.div_ceil(4) * 4;
            let next = desc_at + descsz.div_ceil(4) * 4;
            if next > seg.len() {
                bail!("ELF note at segment offset {at:#x} runs past its segment");
            }
            let note_name = &seg[name_at..name_at + namesz];
            if note_name.strip_suffix(b"\0").unwrap_or(note_name) == name.as_bytes() {
                types.push(kind);
            }
            at = next;
        }
    }
    Ok(types)
}

/// Strips a little-endian ELF64 executable (see the module docs). Pure: bytes in, bytes out.
pub fn strip_elf(elf: &[u8]) -> Result<Vec<u8>> {
    let parsed = Elf::parse(elf)?;
    let phoff = parsed.phoff;
    let mut keep: Vec<(usize, usize)> = vec![
        (0, EHDR_SIZE),
        (phoff, phoff + parsed.phdrs.len() * PHDR_SIZE),
    ];
    keep.extend(
        parsed
            .phdrs
            .iter()
            .filter(|ph| ph.p_filesz(LE) > 0)
            .map(|ph| {
                let off = ph.p_offset(LE) as usize;
                (off, off + ph.p_filesz(LE) as usize)
            }),
    );
    let end = keep.iter().map(|(_, e)| *e).max().unwrap_or(EHDR_SIZE);
    let mut out = vec![0u8; end];
    for (start, stop) in keep {
        out[start..stop].copy_from_slice(&elf[start..stop]);
    }
    // The section-header fields of the ELF header: e_shoff, e_shnum, e_shstrndx.
    out[0x28..0x30].fill(0);
    out[0x3c..0x40].fill(0);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use platform::fuzz::{Rng, cases};

    /// A hand-made ELF64: header, 2 program headers (PT_LOAD, PT_NOTE), code, note, a section
    /// table (as junk bytes) at the end, and junk between segments.
    fn sample() -> Vec<u8> {
        let mut f = vec![0u8; 0x400];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2; // ELFCLASS64
        f[5] = 1; // little-endian
        f[6] = 1;
        f[0x10] = 2; // ET_EXEC
        f[0x12] = 0x3e; // x86-64
        f[0x18..0x20].copy_from_slice(&0x100100u64.to_le_bytes()); // e_entry
        f[0x20..0x28].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
        f[0x28..0x30].copy_from_slice(&0x300u64.to_le_bytes()); // e_shoff
        f[0x34..0x36].copy_from_slice(&64u16.to_le_bytes());
        f[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        f[0x38..0x3a].copy_from_slice(&2u16.to_le_bytes());
        f[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        f[0x3c..0x3e].copy_from_slice(&4u16.to_le_bytes());
        f[0x3e..0x40].copy_from_slice(&3u16.to_le_bytes());
        let ph = |f: &mut Vec<u8>, i: usize, ty: u32, off: u64, sz: u64| {
            let b = 64 + i * 56;
            f[b..b + 4].copy_from_slice(&ty.to_le_bytes());
            f[b + 8..b + 16].copy_from_slice(&off.to_le_bytes());
            f[b + 16..b + 24].copy_from_slice(&(0x100000 + off).to_le_bytes()); // p_vaddr
            f[b + 24..b + 32].copy_from_slice(&(0x100000 + off).to_le_bytes()); // p_paddr
            f[b + 32..b + 40].copy_from_slice(&sz.to_le_bytes());
            f[b + 40..b + 48].copy_from_slice(&(sz + 0x1000).to_le_bytes()); // memsz > filesz (bss)
        };
        ph(&mut f, 0, 1, 0x100, 0x80);
        ph(&mut f, 1, 4, 0x200, 0x18);
        f[0x100..0x180].fill(0xcc); // code
        f[0x180..0x200].fill(0xee); // junk (a non-alloc section)
        f[0x200..0x218].fill(0x4e); // note
        f[0x218..0x400].fill(0xee); // symtab, strtab, section headers
        f
    }

    /// The sample with its 0x18-byte note segment holding one `Xen` note of `kind` (namesz 4,
    /// descsz 4).
    fn sample_with_note(kind: u32) -> Vec<u8> {
        let mut f = sample();
        f[0x200..0x204].copy_from_slice(&4u32.to_le_bytes());
        f[0x204..0x208].copy_from_slice(&4u32.to_le_bytes());
        f[0x208..0x20c].copy_from_slice(&kind.to_le_bytes());
        f[0x20c..0x210].copy_from_slice(b"Xen\0");
        f[0x210..0x214].copy_from_slice(&0x100000u32.to_le_bytes());
        // Padding up to the segment's end: an empty note (namesz 0, descsz 0, type 0).
        f[0x214..0x218].fill(0);
        f
    }

    #[test]
    fn notes_are_found_by_name_and_type() {
        assert_eq!(note_types(&sample_with_note(18), "Xen").unwrap(), [18]);
        assert!(note_types(&sample_with_note(18), "GNU").unwrap().is_empty());
        assert!(note_types(b"nope", "Xen").is_err());
        // A note whose size runs past its segment is an error, not a panic.
        let mut bad = sample_with_note(18);
        bad[0x204..0x208].copy_from_slice(&0x1000u32.to_le_bytes());
        assert!(note_types(&bad, "Xen").is_err());
        assert_eq!(
            crate::cmd::run::xen::guest_type_of_image(&sample_with_note(18)).unwrap(),
            crate::xenlab::GuestType::Pvh
        );
        assert_eq!(
            crate::cmd::run::xen::guest_type_of_image(&sample_with_note(1)).unwrap(),
            crate::xenlab::GuestType::Pv
        );
        assert!(crate::cmd::run::xen::guest_type_of_image(&sample_with_note(5)).is_err());
    }

    #[test]
    fn keeps_headers_and_segments_and_drops_the_rest() {
        let input = sample();
        let out = strip_elf(&input).expect("strips");
        assert_eq!(out.len(), 0x218, "cut after the last segment byte");
        assert_eq!(&out[..0x28], &input[..0x28]);
        assert_eq!(&out[0x28..0x30], &[0; 8], "e_shoff cleared");
        assert_eq!(&out[0x30..0x3c], &input[0x30..0x3c]);
        assert_eq!(&out[0x3c..0x40], &[0; 4], "e_shnum, e_shstrndx cleared");
        assert_eq!(
            &out[64..64 + 112],
            &input[64..64 + 112],
            "program headers unchanged"
        );
        assert!(out[64 + 112..0x100].iter().all(|b| *b == 0));
        assert!(out[0x100..0x180].iter().all(|b| *b == 0xcc));
        assert!(
            out[0x180..0x200].iter().all(|b| *b == 0),
            "gap between segments zeroed"
        );
        assert!(out[0x200..0x218].iter().all(|b| *b == 0x4e));
        assert_eq!(strip_elf(&out).expect("idempotent"), out);
    }

    #[test]
    fn stripped_output_still_parses_with_the_same_segments() {
        use object::read::elf::{ElfFile64, ProgramHeader};
        let out = strip_elf(&sample()).expect("strips");
        let elf = ElfFile64::<object::Endianness>::parse(&*out).expect("valid ELF");
        let e = elf.endian();
        let phdrs: Vec<_> = elf
            .elf_program_headers()
            .iter()
            .map(|p| (p.p_type(e).0, p.p_offset(e), p.p_filesz(e), p.p_memsz(e)))
            .collect();
        assert_eq!(phdrs, [(1, 0x100, 0x80, 0x1080), (4, 0x200, 0x18, 0x1018)]);
        assert_eq!(elf.elf_section_table().len(), 0);
    }

    #[test]
    fn strips_an_elf_written_by_the_object_crate() {
        use object::write::elf::{FileHeader, ProgramHeader, Writer};
        let mut buf = Vec::new();
        let mut w = Writer::new(object::Endianness::Little, true, &mut buf);
        w.reserve_file_header();
        w.reserve_program_headers(1);
        let code_off = w.reserve(16, 16) as usize;
        let strtab = w.add_section_name(b".text");
        let _ = strtab;
        w.reserve_shstrtab_section_index();
        w.reserve_shstrtab().expect("shstrtab");
        w.reserve_section_headers();
        w.write_file_header(&FileHeader {
            e_type: object::elf::ET_EXEC,
            e_machine: object::elf::EM_X86_64,
            e_entry: 0x100000,
            ..Default::default()
        })
        .expect("header");
        w.write_align_program_headers();
        w.write_program_header(&ProgramHeader {
            p_type: object::elf::PT_LOAD,
            p_flags: object::elf::PF_R | object::elf::PF_X,
            p_offset: code_off as u64,
            p_vaddr: 0x100000,
            p_paddr: 0x100000,
            p_filesz: 16,
            p_memsz: 16,
            p_align: 16,
        });
        w.write_align(16);
        w.write(&[0x90; 16]);
        w.write_shstrtab();
        w.write_null_section_header();
        w.write_shstrtab_section_header();
        assert!(buf.len() > code_off + 16);
        let out = strip_elf(&buf).expect("strips");
        assert_eq!(out.len(), code_off + 16);
        assert_eq!(&out[code_off..], &[0x90; 16]);
    }

    #[test]
    fn load_end_is_the_highest_loaded_byte() {
        let elf = sample();
        let end = load_end(&elf).unwrap();
        // The PT_LOAD's p_paddr + p_memsz (the PT_NOTE does not count).
        assert!(end > 0x100000 && end < 0x110000, "{end:#x}");
        assert!(load_end(b"nope").is_err());
    }

    #[test]
    fn a_segment_without_file_bytes_may_lie_past_the_end_of_a_stripped_file() {
        // A bss-only segment (file size 0) placed after the section table: the stripped file
        // ends before its offset, and is still a valid image with the same notes.
        let mut f = sample_with_note(18);
        f[64 + 56 + 32..64 + 56 + 40].fill(0); // the PT_NOTE's p_filesz: 0
        f[64 + 56 + 8..64 + 56 + 16].copy_from_slice(&0x1000u64.to_le_bytes()); // p_offset
        let out = strip_elf(&f).expect("strips");
        assert_eq!(out.len(), 0x180);
        assert_eq!(note_types(&out, "Xen").unwrap(), Vec::<u32>::new());
        assert_eq!(strip_elf(&out).unwrap(), out);
        assert!(load_end(&out).is_ok());
    }

    #[test]
    fn rejects_garbage() {
        assert!(strip_elf(b"hello").is_err());
        let mut bad = sample();
        bad[4] = 1; // ELFCLASS32
        assert!(strip_elf(&bad).is_err());
        let mut bad = sample();
        bad[64 + 32..64 + 40].copy_from_slice(&0x10_0000u64.to_le_bytes()); // filesz past EOF
        assert!(strip_elf(&bad).is_err());
        let mut bad = sample();
        bad[0x38..0x3a].fill(0);
        assert!(strip_elf(&bad).is_err());
        // Program headers over the ELF header (stripping would change them).
        let mut bad = sample();
        bad[0x20..0x28].copy_from_slice(&0x20u64.to_le_bytes());
        assert!(strip_elf(&bad).is_err());
    }

    #[test]
    fn random_images_give_an_error_or_consistent_results_never_a_panic() {
        // `STARDUST_FUZZ_CASES=N` runs N cases, `STARDUST_FUZZ_SEED=N` other ones (by hand).
        let mut r = Rng::new(0xe1f0_0001);
        // Fields worth breaking: (offset, size) in the ELF header, the two program headers and
        // the note.
        let mut fields = vec![(0x20, 8), (0x36, 2), (0x38, 2), (0x3c, 2), (0x3e, 2)];
        for ph in [64, 64 + 56] {
            fields.extend([
                (ph, 4),
                (ph + 8, 8),
                (ph + 24, 8),
                (ph + 32, 8),
                (ph + 40, 8),
            ]);
        }
        fields.extend([(0x200, 4), (0x204, 4), (0x208, 4), (0x214, 4)]);
        let (mut stripped, mut refused) = (0u64, 0u64);
        for case in 0..cases(20_000) {
            let mut f = sample_with_note(if r.below(2) == 0 { 18 } else { 1 });
            for _ in 0..1 + r.below(4) {
                match r.below(4) {
                    0 if !f.is_empty() => {
                        let at = r.below(f.len() as u64) as usize;
                        f[at] = r.next_u64() as u8;
                    }
                    1 => f.truncate(r.below(f.len() as u64 + 1) as usize),
                    _ => {
                        let (at, size) = fields[r.below(fields.len() as u64) as usize];
                        let v = r.edgy(size as u32 * 8);
                        if at + size <= f.len() {
                            f[at..at + size].copy_from_slice(&v.to_le_bytes()[..size]);
                        }
                    }
                }
            }
            let result = std::panic::catch_unwind(|| {
                let _ = note_types(&f, "Xen");
                let _ = load_end(&f);
                let _ = crate::cmd::run::xen::guest_type_of_image(&f);
                strip_elf(&f)
            });
            let Ok(out) = result else {
                panic!("case {case} panicked (seed 0xe1f00001)");
            };
            match out {
                Ok(out) => {
                    stripped += 1;
                    // Stripping keeps what a loader reads (but the section-header fields of
                    // the ELF header): the same notes, and it is final.
                    let mut cleared = f.clone();
                    cleared[0x28..0x30].fill(0);
                    cleared[0x3c..0x40].fill(0);
                    let want = note_types(&cleared, "Xen").ok();
                    assert_eq!(note_types(&out, "Xen").ok(), want, "case {case}");
                    assert_eq!(strip_elf(&out).ok().as_ref(), Some(&out), "case {case}");
                }
                Err(_) => refused += 1,
            }
        }
        // Both outcomes are common (else the inputs are too tame or too wild).
        assert!(
            stripped > 1000 && refused > 1000,
            "{stripped} stripped, {refused} refused"
        );
    }
}
