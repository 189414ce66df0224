//! `bench size`: the stripped image size of each profile and app, per crate, with the change
//! since the saved baseline (benches/baseline.json).

use serde::{Deserialize, Serialize};

use super::baseline::BaselineImage;
use crate::size::{HEADERS_PADDING, SizeReport};

/// Bytes attributed to one crate (or to `[headers+padding]`), and in the baseline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrateBytes {
    /// Crate name, or a bracketed bucket (`[asm/other]`, `[headers+padding]`).
    pub name: String,
    /// Bytes now.
    pub bytes: i64,
    /// Bytes in the baseline (`None`: no baseline for this image; 0: the crate is new).
    pub baseline: Option<i64>,
}

impl CrateBytes {
    /// Change since the baseline.
    pub fn delta(&self) -> Option<i64> {
        self.baseline.map(|b| self.bytes - b)
    }
}

/// The size bench of one app with one profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SizeResult {
    /// Profile tag.
    pub profile: String,
    /// App.
    pub app: String,
    /// The stripped image.
    pub image: String,
    /// Its size in bytes.
    pub image_bytes: u64,
    /// The profile's `image_bytes` budget.
    pub budget: Option<u64>,
    /// Size in the baseline, if it has this image.
    pub baseline_bytes: Option<u64>,
    /// Bytes per crate, largest first, then `[headers+padding]`; crates that only the
    /// baseline has follow with 0 bytes.
    pub crates: Vec<CrateBytes>,
}

impl SizeResult {
    /// From a per-crate report and the baseline's entry for the same image.
    pub fn new(report: &SizeReport, baseline: Option<&BaselineImage>) -> SizeResult {
        let was = |name: &str| baseline.map(|b| b.crates.get(name).copied().unwrap_or(0));
        let mut crates: Vec<CrateBytes> = report
            .crates
            .iter()
            .map(|(name, bytes)| (name.as_str(), *bytes as i64))
            .chain([(HEADERS_PADDING, report.headers_padding)])
            .map(|(name, bytes)| CrateBytes {
                name: name.to_string(),
                bytes,
                baseline: was(name),
            })
            .collect();
        if let Some(b) = baseline {
            for (name, bytes) in &b.crates {
                if !crates.iter().any(|c| c.name == *name) {
                    crates.push(CrateBytes {
                        name: name.clone(),
                        bytes: 0,
                        baseline: Some(*bytes),
                    });
                }
            }
        }
        SizeResult {
            profile: report.profile.clone(),
            app: report.app.clone(),
            image: crate::workspace::display_path(&report.image),
            image_bytes: report.image_bytes,
            budget: report.budget,
            baseline_bytes: baseline.map(|b| b.image_bytes),
            crates,
        }
    }

    /// Change of the image size since the baseline.
    pub fn delta(&self) -> Option<i64> {
        self.baseline_bytes
            .map(|b| self.image_bytes as i64 - b as i64)
    }

    /// `profile/app`, the row label in reports and charts.
    pub fn label(&self) -> String {
        format!("{}/{}", self.profile, self.app)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    fn report() -> SizeReport {
        SizeReport {
            app: "hello".into(),
            profile: "minimal".into(),
            image: PathBuf::from("target/stardust/minimal/hello.elf"),
            image_bytes: 1000,
            budget: Some(2000),
            crates: vec![("kernel".into(), 600), ("core".into(), 300)],
            headers_padding: 100,
            unsymbolized: vec![],
        }
    }

    #[test]
    fn without_a_baseline_there_are_no_deltas() {
        let r = SizeResult::new(&report(), None);
        assert_eq!(r.delta(), None);
        assert_eq!(r.label(), "minimal/hello");
        let names: Vec<&str> = r.crates.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["kernel", "core", HEADERS_PADDING]);
        assert!(r.crates.iter().all(|c| c.delta().is_none()));
    }

    #[test]
    fn deltas_against_the_baseline_include_new_and_gone_crates() {
        let base = BaselineImage {
            profile: "minimal".into(),
            app: "hello".into(),
            image_bytes: 960,
            crates: BTreeMap::from([
                ("kernel".to_string(), 610),
                ("log".to_string(), 40),
                (HEADERS_PADDING.to_string(), 100),
            ]),
        };
        let r = SizeResult::new(&report(), Some(&base));
        assert_eq!(r.delta(), Some(40));
        let deltas: Vec<(&str, Option<i64>)> = r
            .crates
            .iter()
            .map(|c| (c.name.as_str(), c.delta()))
            .collect();
        assert_eq!(
            deltas,
            [
                ("kernel", Some(-10)),
                ("core", Some(300)),
                (HEADERS_PADDING, Some(0)),
                ("log", Some(-40)),
            ]
        );
    }
}
