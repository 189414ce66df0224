//! `cargo xtask build`: builds an image and prints its path.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use super::ProfileArgs;
use crate::image::{self, CargoCommand};
use crate::workspace::{Workspace, display_path};

#[derive(Args, Debug)]
pub struct BuildArgs {
    /// App: a directory under apps/.
    pub app: String,
    #[command(flatten)]
    pub profile: ProfileArgs,
    /// Print the plain cargo command (with its environment) and exit without building.
    #[arg(long)]
    pub print_cargo: bool,
}

pub fn run(ws: &Workspace, args: BuildArgs) -> Result<ExitCode> {
    let name = args.profile.name(ws, Some(&args.app))?;
    let profile = ws.load_profile(&name, &args.profile.overrides())?;
    ws.check_app(&args.app)?;
    ws.check_app_fits(&args.app, &profile)?;
    if args.print_cargo {
        println!(
            "{}",
            CargoCommand::for_image(&profile, &args.app).shell_line()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let image = image::build(ws, &args.app, &profile)?;
    eprintln!(
        "xtask: {} bytes stripped; symbols in {}",
        image.bytes,
        display_path(&image.debug)
    );
    println!("{}", display_path(&image.elf));
    Ok(ExitCode::SUCCESS)
}
