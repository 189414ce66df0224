//! The size baseline, `benches/baseline.json`: image bytes per profile and app, per crate, as
//! last saved by `cargo xtask bench size --save-baseline`. `bench size` reports every change
//! against it; nothing but `--save-baseline` writes it, so it moves only in a reviewed commit.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::size::SizeResult;
use anyhow::{Context, Error, Result};

/// Where the baseline lives, relative to the workspace root.
pub const PATH: &str = "benches/baseline.json";

const COMMENT: &str = "Stripped image bytes per profile and app, per crate. Written only by \
                       `cargo xtask bench size --save-baseline`; `cargo xtask bench size` reports \
                       deltas against it.";

/// One image of the baseline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaselineImage {
    /// Profile tag.
    pub profile: String,
    /// App.
    pub app: String,
    /// Stripped image bytes.
    pub image_bytes: u64,
    /// Bytes per crate (and `[headers+padding]`).
    pub crates: BTreeMap<String, i64>,
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Baseline {
    /// What the file is (for a person opening it).
    #[serde(default)]
    pub comment: String,
    /// `rustc -V` of the toolchain that built the images (sizes change with the compiler).
    #[serde(default)]
    pub rustc: Option<String>,
    /// Images, sorted by profile then app.
    pub images: Vec<BaselineImage>,
}

impl Default for Baseline {
    fn default() -> Self {
        Baseline {
            comment: COMMENT.to_string(),
            rustc: None,
            images: Vec::new(),
        }
    }
}

impl Baseline {
    /// Parses the file's text.
    pub fn parse(text: &str) -> Result<Baseline> {
        serde_json::from_str(text).map_err(|e| Error::msg(e.to_string()))
    }

    /// Reads `path`; `None` when there is no such file.
    pub fn load(path: &Path) -> Result<Option<Baseline>> {
        match std::fs::read_to_string(path) {
            Ok(text) => Baseline::parse(&text)
                .map(Some)
                .with_context(|| {
                    format!(
                        "{}: not a baseline file (fix it, or delete it and run `cargo xtask bench size --save-baseline`)",
                        path.display()
                    )
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::msg(format!("reading {}: {e}", path.display()))),
        }
    }

    /// The entry for `profile` and `app`.
    pub fn find(&self, profile: &str, app: &str) -> Option<&BaselineImage> {
        self.images
            .iter()
            .find(|i| i.profile == profile && i.app == app)
    }

    /// Replaces (or adds) the entries of `results`, keeps the others whose profile still
    /// exists (`profiles`), sorts, and records `rustc`.
    pub fn update(&mut self, results: &[SizeResult], profiles: &[String], rustc: Option<String>) {
        self.images.retain(|i| {
            profiles.contains(&i.profile)
                && !results
                    .iter()
                    .any(|r| r.profile == i.profile && r.app == i.app)
        });
        self.images.extend(results.iter().map(|r| {
            BaselineImage {
                profile: r.profile.clone(),
                app: r.app.clone(),
                image_bytes: r.image_bytes,
                crates: r
                    .crates
                    .iter()
                    .filter(|c| c.bytes != 0)
                    .map(|c| (c.name.clone(), c.bytes))
                    .collect(),
            }
        }));
        self.images
            .sort_by(|a, b| (&a.profile, &a.app).cmp(&(&b.profile, &b.app)));
        self.comment = COMMENT.to_string();
        if rustc.is_some() {
            self.rustc = rustc;
        }
    }

    /// Pretty JSON with a final newline (stable: maps are sorted).
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }
}

/// `rustc -V` in the workspace (its `rust-toolchain.toml` applies), if it runs.
pub fn rustc_version(root: &Path) -> Option<String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = std::process::Command::new(rustc)
        .arg("-V")
        .current_dir(root)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::size::CrateBytes;

    fn result(profile: &str, bytes: u64) -> SizeResult {
        SizeResult {
            profile: profile.into(),
            app: "hello".into(),
            image: "x.elf".into(),
            image_bytes: bytes,
            budget: None,
            baseline_bytes: None,
            crates: vec![
                CrateBytes {
                    name: "kernel".into(),
                    bytes: bytes as i64,
                    baseline: None,
                },
                CrateBytes {
                    name: "gone".into(),
                    bytes: 0,
                    baseline: Some(5),
                },
            ],
        }
    }

    #[test]
    fn update_merges_drops_deleted_profiles_and_round_trips() {
        let mut b = Baseline::default();
        b.update(
            &[result("minimal", 100), result("default", 200)],
            &["default".into(), "minimal".into(), "old".into()],
            Some("rustc 1.0.0".into()),
        );
        assert_eq!(b.images[0].profile, "default", "sorted");
        assert_eq!(
            b.images[1].crates,
            BTreeMap::from([("kernel".to_string(), 100)]),
            "zero rows are not saved"
        );
        b.images.push(BaselineImage {
            profile: "old".into(),
            app: "hello".into(),
            image_bytes: 1,
            crates: BTreeMap::new(),
        });
        // A later run of one profile replaces it and keeps the rest, but not deleted profiles.
        b.update(
            &[result("minimal", 90)],
            &["default".into(), "minimal".into()],
            None,
        );
        assert_eq!(b.images.len(), 2);
        assert_eq!(b.find("minimal", "hello").map(|i| i.image_bytes), Some(90));
        assert_eq!(b.find("default", "hello").map(|i| i.image_bytes), Some(200));
        assert_eq!(b.rustc.as_deref(), Some("rustc 1.0.0"), "kept");
        let text = b.to_json();
        assert!(text.ends_with("}\n"));
        assert_eq!(Baseline::parse(&text).expect("round trip"), b);
    }

    #[test]
    fn bad_files_are_clear_errors_and_missing_is_none() {
        let e = Baseline::parse("{\"images\": 3}").expect_err("must fail");
        assert!(e.to_string().contains("expected a sequence"), "{e}");
        assert!(Baseline::parse("{\"imgs\": []}").is_err(), "unknown field");
        let dir = std::env::temp_dir().join(format!("xtask-baseline-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        assert_eq!(Baseline::load(&dir.join("none.json")).expect("ok"), None);
        let bad = dir.join("bad.json");
        std::fs::write(&bad, "not json").expect("write");
        let e = Baseline::load(&bad).expect_err("must fail").to_string();
        assert!(e.contains("--save-baseline"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
