//! `cargo xtask disk`: make and inspect disk images of the Stardust filesystem ([`crate::disk`]).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;

use crate::disk;
use crate::profile::parse_size;

#[derive(Subcommand, Debug)]
pub enum DiskCmd {
    /// Make an image holding the files and directories under DIR.
    Create {
        /// The image file to make.
        image: PathBuf,
        /// The directory to copy in.
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
        /// The image's size (`65536`, `64K`, `64M`, `1G`; a whole number of 4 KiB blocks).
        #[arg(long, default_value = "64M")]
        size: String,
        /// Replace an existing image.
        #[arg(long)]
        force: bool,
    },
    /// List a directory of an image (the root by default), or show a file.
    Ls {
        image: PathBuf,
        #[arg(default_value = "/")]
        path: String,
    },
    /// Print a file of an image.
    Cat { image: PathBuf, path: String },
    /// Copy every file and directory of an image under DEST (new or empty).
    Extract { image: PathBuf, dest: PathBuf },
    /// Check an image as a mount does, every data block too: a report, or what is wrong
    /// (exit status 1).
    Check { image: PathBuf },
}

pub fn run(cmd: DiskCmd) -> Result<ExitCode> {
    match cmd {
        DiskCmd::Create {
            image,
            from,
            size,
            force,
        } => {
            let bytes = parse_size(&size).with_context(|| format!("--size {size}"))?;
            let c = disk::create(&image, &from, bytes, force)?;
            eprintln!(
                "disk: {}: {} files, {} directories, {} bytes, in {bytes} bytes",
                image.display(),
                c.files,
                c.dirs,
                c.bytes
            );
        }
        DiskCmd::Ls { image, path } => {
            for e in disk::ls(&image, &path)? {
                match e.kind {
                    sdfs::Kind::Dir => println!("d {:>12}  {}/", e.size, e.name),
                    sdfs::Kind::File => println!("f {:>12}  {}", e.size, e.name),
                }
            }
        }
        DiskCmd::Cat { image, path } => {
            let data = disk::cat(&image, &path)?;
            std::io::stdout()
                .lock()
                .write_all(&data)
                .context("writing to stdout")?;
        }
        DiskCmd::Extract { image, dest } => {
            let c = disk::extract(&image, &dest)?;
            eprintln!(
                "disk: {} files, {} directories, {} bytes into {}",
                c.files,
                c.dirs,
                c.bytes,
                dest.display()
            );
        }
        DiskCmd::Check { image } => match disk::check(&image) {
            Ok(report) => println!("{}", disk::format_report(&image, &report)),
            Err(e) => {
                println!("{e:#}");
                return Ok(ExitCode::FAILURE);
            }
        },
    }
    Ok(ExitCode::SUCCESS)
}
