//! `cargo xtask size`: the stripped image size per profile, with a per-crate breakdown
//! ([`crate::size`]); fails over budget.

use std::process::ExitCode;

use anyhow::{Error, Result};
use clap::Args;

use crate::image;
use crate::size::{self, SizeReport};
use crate::workspace::Workspace;

#[derive(Args, Debug)]
pub struct SizeArgs {
    /// App (default: each profile's `[budgets] image_app`, hello unless it names one).
    pub app: Option<String>,
    /// Profile(s) to measure (repeatable; default: all profiles).
    #[arg(long = "profile", value_name = "PROFILE")]
    pub profiles: Vec<String>,
    /// Override a profile key (repeatable), applied to every profile.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Machine-readable output (a JSON array of reports on stdout).
    #[arg(long)]
    pub json: bool,
}

pub fn run(ws: &Workspace, args: SizeArgs) -> Result<ExitCode> {
    let profiles = if args.profiles.is_empty() {
        ws.profile_names()?
    } else {
        args.profiles.clone()
    };
    if profiles.is_empty() {
        return Err(Error::msg("no profiles found (profiles/*.toml)"));
    }
    // Validate everything before the first (slow) build.
    let loaded = profiles
        .iter()
        .map(|p| ws.load_profile(p, &args.set))
        .collect::<Result<Vec<_>>>()?;
    for profile in &loaded {
        ws.check_app(args.app.as_deref().unwrap_or(profile.image_app()))?;
    }
    let mut reports = Vec::new();
    for profile in &loaded {
        let app = args.app.as_deref().unwrap_or(profile.image_app());
        let image = image::build(ws, app, profile)?;
        let report = SizeReport::of_image(app, profile, &image)?;
        if !args.json {
            print!("{}", report.to_text());
        }
        reports.push(report);
    }
    if args.json {
        let items: Vec<String> = reports.iter().map(SizeReport::to_json).collect();
        println!("[{}]", items.join(",\n"));
    }
    let over: Vec<String> = reports
        .iter()
        .filter(|r| r.over_budget())
        .map(|r| {
            format!(
                "{} [{}] is {} bytes, budget {}",
                r.app,
                r.profile,
                size::group(r.image_bytes as i64),
                size::group(r.budget.unwrap_or(0) as i64)
            )
        })
        .collect();
    if !over.is_empty() {
        return Err(Error::msg(format!(
            "image size over budget: {}",
            over.join("; ")
        )));
    }
    Ok(ExitCode::SUCCESS)
}
