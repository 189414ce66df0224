//! Hello: prints a greeting and its command line, and exits 0.
#![no_std]
#![no_main]

#[stardust::main]
fn main() {
    stardust::println!("Hello from Stardust!");
    stardust::print!("command line:");
    for arg in stardust::args() {
        stardust::print!(" {arg}");
    }
    stardust::println!();
}
