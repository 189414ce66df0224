//! Turns the profile's numeric settings (environment variables set by xtask) into constants.
//! Unset variables get the defaults below, so a plain `cargo build` works too.
use std::{env, fs, path::PathBuf};

fn setting(name: &str, default: &str) -> String {
    println!("cargo:rerun-if-env-changed={name}");
    env::var(name).unwrap_or_else(|_| default.to_string())
}

fn main() {
    let level = setting("STARDUST_LOG_LEVEL", "info");
    let level = match level.to_ascii_lowercase().as_str() {
        "off" => "Off",
        "error" => "Error",
        "warn" => "Warn",
        "info" => "Info",
        "debug" => "Debug",
        "trace" => "Trace",
        other => panic!(
            "STARDUST_LOG_LEVEL={other:?}: expected one of off, error, warn, info, debug, trace"
        ),
    };
    let heap = setting("STARDUST_HEAP_SIZE", "0");
    let heap: u64 = heap.trim().parse().unwrap_or_else(|_| {
        panic!("STARDUST_HEAP_SIZE={heap:?}: expected a byte count (0 = all free RAM)")
    });
    let slice = setting("STARDUST_TIME_SLICE_NS", "10000000");
    let slice: u64 = slice
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("STARDUST_TIME_SLICE_NS={slice:?}: expected nanoseconds"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    fs::write(
        out.join("config.rs"),
        format!(
            "/// Default log level (profile `log_level`).\n\
             pub const LOG_LEVEL: log::LevelFilter = log::LevelFilter::{level};\n\
             /// Heap cap in bytes, 0 = all free RAM (profile `heap_size`).\n\
             pub const HEAP_SIZE: u64 = {heap};\n\
             /// Preemption time slice in nanoseconds (profile `time_slice`).\n\
             pub const TIME_SLICE_NS: u64 = {slice};\n"
        ),
    )
    .expect("write config.rs");
}
