//! `cargo xtask disk`: make and inspect disk images of the Stardust filesystem ([`crate::disk`]).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;

use crate::profile::parse_size;
use crate::{disk, disklog};

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
    /// Print a write log (`run --disk-log`): its entries, flushes and superblock.
    Log { log: PathBuf },
    /// Replay a write log to a cut point into a new image file OUT, the writes no flush covered
    /// dropped (`--survival none`), kept (`all`) or kept sector by sector from a seed (a number).
    Replay {
        /// The write log.
        log: PathBuf,
        /// The image the guest started with (else a blank one of --size).
        #[arg(
            long,
            value_name = "IMAGE",
            conflicts_with = "size",
            required_unless_present = "size"
        )]
        base: Option<PathBuf>,
        /// The size of the blank image the guest started with.
        #[arg(long)]
        size: Option<String>,
        /// Entries applied (default: all of them).
        #[arg(long)]
        cut: Option<usize>,
        /// `none`, `all` or a seed.
        #[arg(long, default_value = "none")]
        survival: String,
        /// The image to write (refused if it exists).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
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
        DiskCmd::Log { log } => {
            let log = disklog::Log::read(&log)?;
            print!("{}", disklog::format_log(&log));
        }
        DiskCmd::Replay {
            log,
            base,
            size,
            cut,
            survival,
            out,
        } => {
            let survival = disklog::parse_survival(&survival)?;
            let parsed = disklog::Log::read(&log)?;
            let base = match (base, size) {
                (Some(base), _) => {
                    std::fs::read(&base).with_context(|| format!("{}", base.display()))?
                }
                (None, Some(size)) => {
                    vec![0; parse_size(&size).with_context(|| format!("--size {size}"))? as usize]
                }
                (None, None) => anyhow::bail!("give --base IMAGE or --size"),
            };
            let cut = cut.unwrap_or(parsed.entries.len());
            let image = disklog::Replayer::new(&parsed, base)?.image(cut, survival)?;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&out)
                .and_then(|mut f| f.write_all(&image))
                .with_context(|| format!("{}: cannot write (it must not exist)", out.display()))?;
            eprintln!(
                "disk: {} replayed to cut {cut} of {} ({} writes not covered, {survival:?}) into {}",
                log.display(),
                parsed.entries.len(),
                parsed.uncovered(cut),
                out.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
