//! Turns the profile's numeric settings (environment variables set by xtask) into constants, and
//! refuses an impossible set of slot features. Unset variables get the defaults of the facade's
//! `[package.metadata.stardust.defaults]`, so a plain `cargo build` works too; the slots and their
//! rules come from the same `crates/stardust/Cargo.toml`, read through crate `slots` as xtask
//! reads them, and each broken rule becomes a `compile_error!` in the generated `config.rs`.
use std::{env, fs, path::PathBuf};

fn main() {
    let (facade, catalog) =
        slots::facade_for_build_script(&env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let setting = |name: &str, key: &str| -> String {
        println!("cargo:rerun-if-env-changed={name}");
        env::var(name).unwrap_or_else(|_| {
            slots::default_setting(&catalog, key)
                .unwrap_or_else(|| panic!("{}: no default for `{key}`", facade.display()))
        })
    };

    let level = setting("STARDUST_LOG_LEVEL", "log_level");
    let level = slots::log_level(&level).unwrap_or_else(|| {
        panic!(
            "STARDUST_LOG_LEVEL={level:?}: expected one of {}",
            slots::log_levels().join(", ")
        )
    });
    let heap = setting("STARDUST_HEAP_SIZE", "heap_size");
    let heap: u64 = heap.trim().parse().unwrap_or_else(|_| {
        panic!("STARDUST_HEAP_SIZE={heap:?}: expected a byte count (0 = all free RAM)")
    });
    let slice = setting("STARDUST_TIME_SLICE_NS", "time_slice");
    let slice: u64 = slice
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("STARDUST_TIME_SLICE_NS={slice:?}: expected nanoseconds"));

    // The network settings: the address and gateway stay text (the kernel parses them at boot,
    // where the command line's `ip=` and `gw=` override them); sizes and counts become numbers.
    let net_ip = setting("STARDUST_NET_IP", "net_ip");
    let net_gateway = setting("STARDUST_NET_GATEWAY", "net_gateway");
    let size = |name: &str, key: &str| -> u64 {
        let text = setting(name, key);
        slots::parse_size(&text).unwrap_or_else(|e| panic!("{name}={text:?}: {e}"))
    };
    let tcp_buffer = size("STARDUST_NET_TCP_BUFFER", "net_tcp_buffer");
    let udp_buffer = size("STARDUST_NET_UDP_BUFFER", "net_udp_buffer");
    let sockets = setting("STARDUST_NET_SOCKETS", "net_sockets");
    let sockets: u64 = sockets
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("STARDUST_NET_SOCKETS={sockets:?}: expected a count"));

    // The key-value server's bounds (apps/kvstore reads them through `stardust::settings`).
    let kv_max_keys = setting("STARDUST_KV_MAX_KEYS", "kv_max_keys");
    let kv_max_keys: u64 = kv_max_keys
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("STARDUST_KV_MAX_KEYS={kv_max_keys:?}: expected a count"));
    let kv_max_frame = size("STARDUST_KV_MAX_FRAME", "kv_max_frame");

    // The most CPUs to bring up (1 ..= 8, arch_x86_64::percpu::MAX_CPUS; xtask checks the
    // profile, this refuses a bad value given by hand).
    let cpus = setting("STARDUST_CPUS", "cpus");
    let cpus: usize = match cpus.trim().parse() {
        Ok(n @ 1..=8) => n,
        _ => panic!("STARDUST_CPUS={cpus:?}: expected a count of CPUs from 1 to 8 (MAX_CPUS)"),
    };

    // The kernel's features are the facade's, by the same names.
    let errors = catalog.check_features(|feature| {
        let var = format!("CARGO_FEATURE_{}", feature.to_uppercase().replace('-', "_"));
        env::var_os(var).is_some()
    });
    let errors: String = errors
        .iter()
        .map(|e| format!("compile_error!({e:?});\n"))
        .collect();

    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    fs::write(
        out.join("config.rs"),
        format!(
            "/// Default log level (profile `log_level`).\n\
             pub const LOG_LEVEL: log::LevelFilter = log::LevelFilter::{level:?};\n\
             /// Heap cap in bytes, 0 = all free RAM (profile `heap_size`).\n\
             pub const HEAP_SIZE: u64 = {heap};\n\
             /// Preemption time slice in nanoseconds (profile `time_slice`).\n\
             pub const TIME_SLICE_NS: u64 = {slice};\n\
             /// The guest's IPv4 address with its prefix length, or `dhcp` (profile `net_ip`;\n\
             /// the command line's `ip=` overrides it).\n\
             pub const NET_IP: &str = {net_ip:?};\n\
             /// The default gateway, empty for none (profile `net_gateway`; `gw=` overrides it).\n\
             pub const NET_GATEWAY: &str = {net_gateway:?};\n\
             /// Bytes of each TCP socket's receive and of its transmit buffer (`net_tcp_buffer`).\n\
             pub const NET_TCP_BUFFER: usize = {tcp_buffer};\n\
             /// Bytes of each UDP socket's receive and of its transmit buffer (`net_udp_buffer`).\n\
             pub const NET_UDP_BUFFER: usize = {udp_buffer};\n\
             /// TCP sockets in all, listening pools included (profile `net_sockets`).\n\
             pub const NET_SOCKETS: usize = {sockets};\n\
             /// The key-value server's most keys (profile `kv_max_keys`).\n\
             pub const KV_MAX_KEYS: usize = {kv_max_keys};\n\
             /// The key-value server's largest request in bytes (profile `kv_max_frame`).\n\
             pub const KV_MAX_FRAME: usize = {kv_max_frame};\n\
             /// The most CPUs the kernel brings up, 1 ..= 8 (profile `cpus`).\n\
             pub const CPUS: usize = {cpus};\n\
             {errors}"
        ),
    )
    .expect("write config.rs");
}
