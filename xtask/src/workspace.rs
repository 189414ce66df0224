//! Where things are in the repository, and the lists that validation draws its choices from.

use std::path::{Path, PathBuf};

use crate::bail;
use crate::error::{Context, Result};
use crate::profile::{Catalog, Profile};

/// The repository root and the paths derived from it.
#[derive(Debug, Clone)]
pub struct Workspace {
    /// Repository root (the directory holding the workspace `Cargo.toml`).
    pub root: PathBuf,
}

impl Workspace {
    /// The workspace this xtask was built from (the parent of its manifest directory).
    pub fn locate() -> Workspace {
        let xtask_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let root = xtask_dir.parent().unwrap_or(xtask_dir).to_path_buf();
        Workspace { root }
    }

    /// `profiles/`.
    pub fn profiles_dir(&self) -> PathBuf {
        self.root.join("profiles")
    }

    /// `apps/`.
    pub fn apps_dir(&self) -> PathBuf {
        self.root.join("apps")
    }

    /// `crates/stardust/Cargo.toml`, whose `[features]` define the slots and their values.
    pub fn facade_manifest(&self) -> PathBuf {
        self.root.join("crates").join("stardust").join("Cargo.toml")
    }

    /// Cargo's target directory (`$CARGO_TARGET_DIR` if set, else `target/`).
    pub fn target_dir(&self) -> PathBuf {
        match std::env::var_os("CARGO_TARGET_DIR") {
            Some(dir) if Path::new(&dir).is_absolute() => PathBuf::from(dir),
            Some(dir) => self.root.join(dir),
            None => self.root.join("target"),
        }
    }

    /// `target/stardust/`: where xtask puts images (`<tag>/<app>.elf` and `.debug`).
    pub fn images_dir(&self) -> PathBuf {
        self.target_dir().join("stardust")
    }

    /// Names of the profiles (`profiles/*.toml`), sorted.
    pub fn profile_names(&self) -> Result<Vec<String>> {
        let dir = self.profiles_dir();
        let mut names = Vec::new();
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "toml")
                && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
            {
                names.push(stem.to_string());
            }
        }
        names.sort();
        Ok(names)
    }

    /// Names of the apps (directories under `apps/` with a `Cargo.toml`), sorted.
    pub fn app_names(&self) -> Result<Vec<String>> {
        let dir = self.apps_dir();
        let mut names = Vec::new();
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(names);
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.join("Cargo.toml").is_file()
                && let Some(name) = path.file_name().and_then(|s| s.to_str())
            {
                names.push(name.to_string());
            }
        }
        names.sort();
        Ok(names)
    }

    /// Fails with the list of valid apps unless `app` is one.
    pub fn check_app(&self, app: &str) -> Result<()> {
        let apps = self.app_names()?;
        if apps.iter().any(|a| a == app) {
            return Ok(());
        }
        if apps.is_empty() {
            bail!("unknown app `{app}`: there are no apps (no apps/*/Cargo.toml)");
        }
        bail!(
            "unknown app `{app}`; valid apps: {} (directories under apps/)",
            apps.join(", ")
        )
    }

    /// The slots and their values, read from `crates/stardust/Cargo.toml` `[features]`.
    pub fn catalog(&self) -> Result<Catalog> {
        let path = self.facade_manifest();
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "reading {} (the facade crate defines the slot features)",
                path.display()
            )
        })?;
        Catalog::from_manifest(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// Loads, overrides and validates a profile.
    pub fn load_profile(&self, name: &str, overrides: &[String]) -> Result<Profile> {
        let names = self.profile_names()?;
        if !names.iter().any(|n| n == name) {
            bail!(
                "unknown profile `{name}`; valid profiles: {} (files profiles/*.toml)",
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            );
        }
        let path = self.profiles_dir().join(format!("{name}.toml"));
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let catalog = self.catalog()?;
        Profile::parse(name, &text, overrides, &catalog)
    }
}

/// `path` relative to the current directory when it is below it, else unchanged.
pub fn display_path(path: &Path) -> String {
    if let Ok(cwd) = std::env::current_dir()
        && let Ok(rel) = path.strip_prefix(&cwd)
    {
        return rel.display().to_string();
    }
    path.display().to_string()
}
