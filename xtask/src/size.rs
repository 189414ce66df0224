//! Size accounting: the per-crate breakdown of an image, from the `.symtab` of its `.debug` ELF.
//!
//! Every defined symbol with a size that occupies file bytes (not `.bss`) is demangled and
//! attributed to a crate: the first path segment (`kernel::boot::start` -> `kernel`); for a
//! qualified path `<a::T as b::Trait>::f` the crate of the type, `a` (a primitive type falls back
//! to the trait's crate, else `core`); a name that is not a Rust path goes to `[asm/other]`.
//! Aliases (same address and size) count once. `[headers+padding]` is what is left of the
//! stripped image size.

use std::collections::BTreeMap;
use std::path::PathBuf;

use object::{Object, ObjectSection, ObjectSymbol, SectionFlags, SymbolKind, SymbolSection};

use anyhow::{Error, Result};

/// Bucket for symbols that are not Rust paths (assembly labels, `#[no_mangle]` C names).
pub const ASM_OTHER: &str = "[asm/other]";
/// Bucket for what symbols do not cover: ELF and program headers, alignment padding.
pub const HEADERS_PADDING: &str = "[headers+padding]";

/// The crate a (mangled or plain) symbol name belongs to.
pub fn crate_of_symbol(raw: &str) -> String {
    if let Some(owner) = known_unmangled(raw) {
        return owner.to_string();
    }
    let path = match rustc_demangle::try_demangle(raw) {
        Ok(d) => format!("{d:#}"),
        Err(_) => raw.to_string(),
    };
    crate_of_path(&path).map_or_else(|| ASM_OTHER.to_string(), str::to_string)
}

/// Owners of the unmangled symbols Stardust defines on purpose (entry points between crates,
/// assembly labels) and of the C names `compiler_builtins` provides.
fn known_unmangled(raw: &str) -> Option<&'static str> {
    match raw {
        "__stardust_main" => Some("[app main]"),
        "__stardust_start" | "__stardust_exception" => Some("kernel"),
        "memcpy" | "memmove" | "memset" | "memcmp" | "bcmp" | "strlen" => Some("compiler_builtins"),
        _ if raw.starts_with("pvh_")
            || raw.starts_with("exc_")
            || raw.starts_with("stardust_")
            || raw.starts_with("boot_") =>
        {
            Some("arch_x86_64")
        }
        _ => None,
    }
}

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Index of the `>` that closes an already-opened `<` in `s` (`->` does not count).
fn closing_angle(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut depth = 1usize;
    for (i, b) in bytes.iter().enumerate() {
        match b {
            b'<' => depth += 1,
            b'>' if i > 0 && bytes[i - 1] == b'-' => {}
            b'>' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Splits `T as Trait` at a top-level ` as `.
fn split_as(inner: &str) -> (&str, Option<&str>) {
    let bytes = inner.as_bytes();
    let mut depth = 0i32;
    for i in 0..bytes.len() {
        match bytes[i] {
            b'<' | b'(' | b'[' => depth += 1,
            b'>' if i > 0 && bytes[i - 1] == b'-' => {}
            b'>' | b')' | b']' => depth -= 1,
            b' ' if depth == 0 && inner[i..].starts_with(" as ") => {
                return (&inner[..i], Some(&inner[i + 4..]));
            }
            _ => {}
        }
    }
    (inner, None)
}

fn crate_of_type(ty: &str) -> Option<&str> {
    let mut t = ty.trim();
    loop {
        let before = t;
        for prefix in [
            "&", "mut ", "*const ", "*mut ", "dyn ", "impl ", "[", "(", "'static ",
        ] {
            t = t.strip_prefix(prefix).unwrap_or(t).trim_start();
        }
        if t == before {
            break;
        }
    }
    if t.starts_with('<') {
        return crate_of_path(t);
    }
    let end = t.find("::")?;
    let first = &t[..end];
    is_ident(first).then_some(first)
}

/// The crate of a demangled path, or `None` when it is not a Rust path.
pub fn crate_of_path(path: &str) -> Option<&str> {
    let p = path.trim();
    if let Some(rest) = p.strip_prefix('<') {
        let inner = &rest[..closing_angle(rest)?];
        let (ty, tr) = split_as(inner);
        return crate_of_type(ty)
            .or_else(|| tr.and_then(crate_of_type))
            .or(Some("core"));
    }
    let end = p.find("::")?;
    let first = &p[..end];
    is_ident(first).then_some(first)
}

/// A symbol that occupies bytes of the image: `(raw name, address, size)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SizedSymbol {
    /// Name as in `.symtab` (mangled).
    pub name: String,
    /// Address.
    pub address: u64,
    /// `st_size`.
    pub size: u64,
    /// Name of the section it is in.
    pub section: String,
}

/// The defined, sized symbols of `elf` that live in sections with file bytes.
pub fn sized_symbols(elf: &[u8]) -> Result<Vec<SizedSymbol>> {
    let file =
        object::File::parse(elf).map_err(|e| Error::msg(format!("reading ELF symbols: {e}")))?;
    let mut out = Vec::new();
    for sym in file.symbols() {
        if sym.size() == 0 || matches!(sym.kind(), SymbolKind::Section | SymbolKind::File) {
            continue;
        }
        let SymbolSection::Section(index) = sym.section() else {
            continue;
        };
        let Ok(section) = file.section_by_index(index) else {
            continue;
        };
        if section.file_range().is_none() {
            continue; // .bss and friends: no bytes in the image
        }
        let Ok(name) = sym.name() else { continue };
        out.push(SizedSymbol {
            name: name.to_string(),
            address: sym.address(),
            size: sym.size(),
            section: section.name().unwrap_or("?").to_string(),
        });
    }
    if out.is_empty() && file.symbol_table().is_none() {
        return Err(Error::msg(
            "the ELF has no .symtab (was it stripped?); use the .debug file",
        ));
    }
    Ok(out)
}

/// Loaded sections with file bytes: `(name, size)`, in file order.
pub fn loaded_sections(elf: &[u8]) -> Result<Vec<(String, u64)>> {
    let file =
        object::File::parse(elf).map_err(|e| Error::msg(format!("reading ELF sections: {e}")))?;
    let alloc = |flags| matches!(flags, SectionFlags::Elf { sh_flags, .. } if sh_flags.0 & object::elf::SHF_ALLOC.0 != 0);
    Ok(file
        .sections()
        .filter(|s| s.file_range().is_some() && alloc(s.flags()))
        .map(|s| (s.name().unwrap_or("?").to_string(), s.size()))
        .collect())
}

/// Per loaded section, the bytes no symbol covers (anonymous constants, string literals,
/// alignment inside the section), largest first; sections fully covered are left out.
pub fn unsymbolized(sections: &[(String, u64)], symbols: &[SizedSymbol]) -> Vec<(String, u64)> {
    let mut covered: BTreeMap<&str, u64> = BTreeMap::new();
    let mut seen = std::collections::BTreeSet::new();
    for s in symbols {
        if seen.insert((s.address, s.size)) {
            *covered.entry(s.section.as_str()).or_default() += s.size;
        }
    }
    let mut v: Vec<(String, u64)> = sections
        .iter()
        .map(|(name, size)| {
            (
                name.clone(),
                size.saturating_sub(covered.get(name.as_str()).copied().unwrap_or(0)),
            )
        })
        .filter(|(_, gap)| *gap > 0)
        .collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}

/// Bytes per crate, largest first (ties by name). Aliases (same address and size) count once,
/// under a Rust crate if any alias has one.
pub fn crate_sizes(symbols: &[SizedSymbol]) -> Vec<(String, u64)> {
    let mut by_location: BTreeMap<(u64, u64), String> = BTreeMap::new();
    for s in symbols {
        let krate = crate_of_symbol(&s.name);
        by_location
            .entry((s.address, s.size))
            .and_modify(|c| {
                if c == ASM_OTHER {
                    *c = krate.clone();
                }
            })
            .or_insert(krate);
    }
    let mut sizes: BTreeMap<String, u64> = BTreeMap::new();
    for ((_, size), krate) in by_location {
        *sizes.entry(krate).or_default() += size;
    }
    let mut v: Vec<(String, u64)> = sizes.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}

/// The size of one image, per crate.
#[derive(Debug, Clone, PartialEq)]
pub struct SizeReport {
    /// App name.
    pub app: String,
    /// Profile tag.
    pub profile: String,
    /// The stripped image.
    pub image: PathBuf,
    /// Its size in bytes.
    pub image_bytes: u64,
    /// The profile's `image_bytes` budget.
    pub budget: Option<u64>,
    /// Bytes per crate, largest first.
    pub crates: Vec<(String, u64)>,
    /// `image_bytes` minus the sum of `crates` (may be negative if symbols overlap).
    pub headers_padding: i64,
    /// The part of `headers_padding` that is section contents without symbols, per section.
    pub unsymbolized: Vec<(String, u64)>,
}

impl SizeReport {
    /// Builds the report from the `.debug` ELF bytes and the stripped size.
    pub fn new(
        app: &str,
        profile: &str,
        image: PathBuf,
        image_bytes: u64,
        budget: Option<u64>,
        debug_elf: &[u8],
    ) -> Result<SizeReport> {
        let symbols = sized_symbols(debug_elf)?;
        let crates = crate_sizes(&symbols);
        let unsymbolized = unsymbolized(&loaded_sections(debug_elf)?, &symbols);
        let sum: u64 = crates.iter().map(|(_, b)| b).sum();
        Ok(SizeReport {
            app: app.to_string(),
            profile: profile.to_string(),
            image,
            image_bytes,
            budget,
            crates,
            headers_padding: image_bytes as i64 - sum as i64,
            unsymbolized,
        })
    }

    /// The report of a built image (reads its `.debug` file), against the profile's budget.
    pub fn of_image(
        app: &str,
        profile: &crate::profile::Profile,
        image: &crate::image::Image,
    ) -> Result<SizeReport> {
        let debug = std::fs::read(&image.debug)
            .map_err(|e| Error::msg(format!("reading {}: {e}", image.debug.display())))?;
        SizeReport::new(
            app,
            &profile.tag(),
            image.elf.clone(),
            image.bytes,
            profile.budgets.image_bytes,
            &debug,
        )
    }

    /// True when the image is larger than its budget.
    pub fn over_budget(&self) -> bool {
        self.budget.is_some_and(|b| self.image_bytes > b)
    }

    /// Human-readable table.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "{} [{}]: {} bytes",
            self.app,
            self.profile,
            group(self.image_bytes as i64)
        );
        match self.budget {
            Some(b) => s.push_str(&format!(
                " (budget {} bytes, {:.0}%: {})\n",
                group(b as i64),
                self.image_bytes as f64 * 100.0 / b as f64,
                if self.over_budget() {
                    "OVER BUDGET"
                } else {
                    "ok"
                }
            )),
            None => s.push_str(" (no image_bytes budget)\n"),
        }
        s.push_str(&format!(
            "  image: {}\n",
            crate::workspace::display_path(&self.image)
        ));
        let width = self
            .crates
            .iter()
            .map(|(c, _)| c.len())
            .chain([HEADERS_PADDING.len()])
            .max()
            .unwrap_or(0);
        let rows = self.crates.iter().map(|(c, b)| (c.as_str(), *b as i64));
        for (name, bytes) in rows.chain([(HEADERS_PADDING, self.headers_padding)]) {
            let pct = bytes as f64 * 100.0 / self.image_bytes.max(1) as f64;
            s.push_str(&format!(
                "  {name:<width$}  {:>9}  {pct:5.1}%\n",
                group(bytes)
            ));
        }
        if !self.unsymbolized.is_empty() {
            let parts: Vec<String> = self
                .unsymbolized
                .iter()
                .map(|(n, b)| format!("{n} {}", group(*b as i64)))
                .collect();
            s.push_str(&format!(
                "  ({HEADERS_PADDING} includes section bytes without symbols: {}; the rest is ELF headers and alignment)\n",
                parts.join(", ")
            ));
        }
        s
    }

    /// One JSON object.
    pub fn to_json(&self) -> String {
        let crates: Vec<String> = self
            .crates
            .iter()
            .map(|(c, b)| format!("{{\"crate\":{},\"bytes\":{b}}}", json_str(c)))
            .collect();
        let unsymbolized: Vec<String> = self
            .unsymbolized
            .iter()
            .map(|(n, b)| format!("{{\"section\":{},\"bytes\":{b}}}", json_str(n)))
            .collect();
        format!(
            "{{\"app\":{},\"profile\":{},\"image\":{},\"image_bytes\":{},\"budget_bytes\":{},\"over_budget\":{},\"crates\":[{}],\"headers_padding\":{},\"unsymbolized\":[{}]}}",
            json_str(&self.app),
            json_str(&self.profile),
            json_str(&self.image.display().to_string()),
            self.image_bytes,
            self.budget.map_or("null".to_string(), |b| b.to_string()),
            self.over_budget(),
            crates.join(","),
            self.headers_padding,
            unsymbolized.join(",")
        )
    }
}

/// `12345` -> `12,345`.
pub fn group(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// A JSON string literal.
pub fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Legacy (`_ZN...E`) mangling of a path, with a fake hash.
    fn mangle(segments: &[&str]) -> String {
        let mut s = String::from("_ZN");
        for seg in segments {
            s.push_str(&format!("{}{seg}", seg.len()));
        }
        s.push_str("17h0123456789abcdefE");
        s
    }

    #[test]
    fn plain_paths_use_the_first_segment() {
        assert_eq!(crate_of_path("kernel::boot::start"), Some("kernel"));
        assert_eq!(
            crate_of_path("core::ptr::drop_in_place<kernel::Foo>"),
            Some("core")
        );
        assert_eq!(crate_of_path("hello::main::{{closure}}"), Some("hello"));
        assert_eq!(
            crate_of_path("platform_kvm::serial::Com1::write"),
            Some("platform_kvm")
        );
    }

    #[test]
    fn qualified_paths_use_the_type_crate() {
        assert_eq!(
            crate_of_path("<platform_kvm::Serial as core::fmt::Write>::write_str"),
            Some("platform_kvm")
        );
        assert_eq!(
            crate_of_path("<&mut console::Writer<T> as core::fmt::Write>::write_char"),
            Some("console")
        );
        assert_eq!(crate_of_path("<alloc_bump::Bump>::new"), Some("alloc_bump"));
        assert_eq!(
            crate_of_path("<<kernel::A as core::ops::Deref>::Target as log::Log>::log"),
            Some("kernel")
        );
        assert_eq!(
            crate_of_path("<fn() -> u8 as kernel::Hook>::call"),
            Some("kernel")
        );
        // Primitive types: the trait's crate, else core.
        assert_eq!(
            crate_of_path("<u32 as core::fmt::Display>::fmt"),
            Some("core")
        );
        assert_eq!(
            crate_of_path("<&str as log::kv::ToValue>::to_value"),
            Some("log")
        );
        assert_eq!(crate_of_path("<[u8]>::copy_from_slice"), Some("core"));
        assert_eq!(
            crate_of_path("<(kernel::A, u8) as core::fmt::Debug>::fmt"),
            Some("kernel")
        );
    }

    #[test]
    fn non_rust_names_are_asm_other_unless_known() {
        assert_eq!(crate_of_symbol("memcpy"), "compiler_builtins");
        assert_eq!(crate_of_symbol("pvh_start32"), "arch_x86_64");
        assert_eq!(crate_of_symbol("__stardust_start"), "kernel");
        assert_eq!(crate_of_symbol("__stardust_main"), "[app main]");
        assert_eq!(crate_of_symbol("some_c_function"), ASM_OTHER);
        assert_eq!(crate_of_symbol("anon.1234.0.llvm.5678"), ASM_OTHER);
        assert_eq!(crate_of_symbol("1::x"), ASM_OTHER);
        assert_eq!(crate_of_path("<broken"), None);
    }

    #[test]
    fn mangled_symbols_are_demangled() {
        assert_eq!(crate_of_symbol(&mangle(&["kernel", "main"])), "kernel");
        assert_eq!(
            crate_of_symbol(&mangle(&[
                "_$LT$platform_kvm..Serial$u20$as$u20$core..fmt..Write$GT$",
                "write_str"
            ])),
            "platform_kvm"
        );
        // v0 mangling of `hello::main`.
        assert_eq!(crate_of_symbol("_RNvCs1234_5hello4main"), "hello");
    }

    fn test_object() -> Vec<u8> {
        use object::write::{Object, Symbol, SymbolSection as WSection};
        use object::{
            Architecture, BinaryFormat, Endianness, SectionKind, SymbolFlags, SymbolScope,
        };
        let mut obj = Object::new(BinaryFormat::Elf, Architecture::X86_64, Endianness::Little);
        let text = obj.add_section(vec![], b".text".to_vec(), SectionKind::Text);
        obj.append_section_data(text, &[0x90; 256], 16);
        let bss = obj.add_section(vec![], b".bss".to_vec(), SectionKind::UninitializedData);
        obj.append_section_bss(bss, 4096, 16);
        let mut add = |name: &str, section, value, size| {
            obj.add_symbol(Symbol {
                name: name.as_bytes().to_vec(),
                value,
                size,
                kind: SymbolKind::Text,
                scope: SymbolScope::Linkage,
                weak: false,
                section: WSection::Section(section),
                flags: SymbolFlags::None,
            });
        };
        add(&mangle(&["kernel", "main"]), text, 0, 100);
        add(&mangle(&["kernel", "boot"]), text, 100, 20);
        add(
            &mangle(&["compiler_builtins", "mem", "memcpy"]),
            text,
            120,
            30,
        );
        add("memcpy", text, 120, 30); // alias: counted once, as compiler_builtins
        add("pvh_start32", text, 150, 6);
        add(
            &mangle(&["_$LT$u32$u20$as$u20$core..fmt..Display$GT$", "fmt"]),
            text,
            160,
            40,
        );
        add("empty_label", text, 200, 0);
        add(&mangle(&["alloc_bump", "HEAP"]), bss, 0, 4096); // .bss: no file bytes
        obj.write().expect("object writes")
    }

    #[test]
    fn breakdown_of_a_synthetic_object() {
        let elf = test_object();
        let syms = sized_symbols(&elf).expect("symbols");
        assert_eq!(syms.len(), 6);
        let sizes = crate_sizes(&syms);
        assert_eq!(
            sizes,
            [
                ("kernel".to_string(), 120),
                ("core".to_string(), 40),
                ("compiler_builtins".to_string(), 30),
                ("arch_x86_64".to_string(), 6),
            ]
        );
        assert_eq!(syms[0].section, ".text");
        let sections = loaded_sections(&elf).expect("sections");
        assert_eq!(
            sections,
            [(".text".to_string(), 256)],
            "no .bss: it has no file bytes"
        );
        assert_eq!(
            unsymbolized(&sections, &syms),
            [(".text".to_string(), 256 - 196)]
        );
        let report = SizeReport::new(
            "hello",
            "minimal",
            PathBuf::from("x.elf"),
            300,
            Some(250),
            &elf,
        )
        .expect("report");
        assert_eq!(report.headers_padding, 300 - 196);
        assert!(report.over_budget());
        let text = report.to_text();
        assert!(text.contains("OVER BUDGET"), "{text}");
        assert!(text.contains("[headers+padding]"), "{text}");
        let json = report.to_json();
        assert!(
            json.contains("\"crates\":[{\"crate\":\"kernel\",\"bytes\":120},"),
            "{json}"
        );
        assert!(json.contains("\"over_budget\":true"), "{json}");
        assert!(
            json.contains(
                "\"headers_padding\":104,\"unsymbolized\":[{\"section\":\".text\",\"bytes\":60}]"
            ),
            "{json}"
        );
        assert!(text.contains("without symbols: .text 60"), "{text}");
    }

    #[test]
    fn formatting_helpers() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(61440), "61,440");
        assert_eq!(group(-1234567), "-1,234,567");
        assert_eq!(json_str("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\u0001\"");
    }
}
