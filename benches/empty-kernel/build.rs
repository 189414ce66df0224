//! Writes the linker script `stardust.ld` that `.cargo/config.toml` passes to every
//! x86_64-unknown-none link (`-C link-arg=-Tstardust.ld`), and puts it on the search path.

use std::{env, fs, path::PathBuf};

/// Loaded at 1 MiB physical (paddr = vaddr). One R+X PT_LOAD that starts right after the
/// headers (so the file stays tiny), and a PT_NOTE for the Xen PVH entry note.
const LINKER_SCRIPT: &str = "\
ENTRY(pvh_start32)
PHDRS {
    text PT_LOAD FILEHDR PHDRS FLAGS(5);
    note PT_NOTE FLAGS(4);
}
SECTIONS {
    . = 0x100000 + SIZEOF_HEADERS;
    .text : { KEEP(*(.text.pvh_entry)) *(.text .text.*) } :text
    .rodata : { *(.rodata .rodata.*) } :text
    .note.Xen : ALIGN(4) { KEEP(*(.note.Xen)) } :text :note
    /DISCARD/ : { *(.eh_frame .eh_frame_hdr .comment .note.GNU-stack .data .data.* .bss .bss.*) }
}
";

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR for build scripts"));
    fs::write(out.join("stardust.ld"), LINKER_SCRIPT).expect("OUT_DIR is writable");
    println!("cargo:rustc-link-search=native={}", out.display());
    println!("cargo:rerun-if-changed=build.rs");
}
