//! `#[stardust::main]`, the attribute that marks an application's entry function.
//!
//! It keeps the function as written and adds the symbol the kernel calls after boot:
//! `__stardust_main() -> u8`, which runs the function and turns its result into an exit status
//! through `stardust::Termination` (`()`, `ExitCode`, `u8`, `Result<(), E: Debug>`).
//!
//! Written without `syn`/`quote`: the macro only needs the function's name, and a hand-rolled
//! token scan keeps the build fast.
//!
//! # Cargo features
//! None.

use proc_macro::{Delimiter, TokenStream, TokenTree};

/// Marks the application's entry function. Use as `#[stardust::main] fn main() { ... }`, or
/// `#[stardust::main] async fn main() { ... }` with `scheduler = "async"` (it then runs on the
/// executor through `stardust::task::block_on`).
#[proc_macro_attribute]
pub fn main(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        return error("#[stardust::main] takes no arguments");
    }
    let mut tokens = item.clone().into_iter().peekable();
    let mut name = None;
    let mut has_params = false;
    let mut is_async = false;
    while let Some(t) = tokens.next() {
        if let TokenTree::Ident(i) = &t
            && i.to_string() == "async"
        {
            is_async = true;
        }
        if let TokenTree::Ident(i) = &t
            && i.to_string() == "fn"
        {
            if let Some(TokenTree::Ident(n)) = tokens.next() {
                name = Some(n.to_string());
                if let Some(TokenTree::Group(g)) = tokens.next() {
                    has_params = g.delimiter() == Delimiter::Parenthesis && !g.stream().is_empty();
                }
            }
            break;
        }
    }
    let Some(name) = name else {
        return error(
            "#[stardust::main] goes on a function: `#[stardust::main] fn main() { ... }`",
        );
    };
    if has_params {
        return error(
            "the main function takes no parameters; read arguments with `stardust::args()`",
        );
    }
    // An `async fn main` runs on the async executor (`scheduler = "async"`; elsewhere
    // `stardust::task` does not exist and the error names it).
    let call = if is_async {
        format!("::stardust::task::block_on({name}())")
    } else {
        format!("{name}()")
    };
    let shim: TokenStream = format!(
        "#[doc(hidden)] #[unsafe(export_name = \"__stardust_main\")] \
         pub fn __stardust_main_shim() -> u8 {{ ::stardust::Termination::report({call}) }}"
    )
    .parse()
    .expect("the shim is valid Rust");
    let mut out = item;
    out.extend(shim);
    out
}

fn error(message: &str) -> TokenStream {
    format!("::core::compile_error!({message:?});")
        .parse()
        .expect("compile_error! is valid Rust")
}
