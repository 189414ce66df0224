//! Where things are in the repository, and the lists that validation draws its choices from.

use std::path::{Path, PathBuf};

use crate::profile::{Catalog, Profile};
use anyhow::bail;
use anyhow::{Context, Result};

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

    /// What `app` needs of a profile: `[package.metadata.stardust.requires]` of
    /// `apps/<app>/Cargo.toml` (see [`AppRequires`]).
    pub fn app_requires(&self, app: &str) -> Result<AppRequires> {
        let path = self.apps_dir().join(app).join("Cargo.toml");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        AppRequires::from_manifest(&text).with_context(|| format!("apps/{app}/Cargo.toml"))
    }

    /// The profile `app` is built with when none is given (`[package.metadata.stardust] profile`
    /// in its Cargo.toml), if it names one.
    pub fn app_profile(&self, app: &str) -> Result<Option<String>> {
        let path = self.apps_dir().join(app).join("Cargo.toml");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        app_profile_of(&text).with_context(|| format!("apps/{app}/Cargo.toml"))
    }

    /// Fails, before anything is built, when `app` cannot be built with `profile`: a slot value
    /// its `requires` does not list (rustc would only say "unresolved import"), or a
    /// requirement that names no slot or value of the catalog.
    pub fn check_app_fits(&self, app: &str, profile: &Profile) -> Result<()> {
        self.app_requires(app)?
            .check(app, profile, &self.catalog()?)
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
        Catalog::from_manifest(&text)
            .map_err(|e| anyhow::anyhow!("parsing {}: {e}", path.display()))
    }

    /// The allocators that give a heap: every `allocator` value of the catalog but `none`, in
    /// the facade's order (`bump` first).
    pub fn allocators(&self) -> Result<Vec<String>> {
        let catalog = self.catalog()?;
        let values = catalog.values("allocator").unwrap_or(&[]);
        Ok(values.iter().filter(|v| *v != "none").cloned().collect())
    }

    /// The crates an allocator brings into an image: `alloc-<name>` and the crates.io crates
    /// its `crates/alloc-<name>/Cargo.toml` depends on (as Rust names: `alloc_talc`, `talc`).
    pub fn allocator_crates(&self, allocator: &str) -> Result<Vec<String>> {
        let dir = format!("alloc-{allocator}");
        let path = self.root.join("crates").join(&dir).join("Cargo.toml");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let manifest: toml::Table =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let mut crates = vec![dir];
        if let Some(deps) = manifest.get("dependencies").and_then(|d| d.as_table()) {
            crates.extend(deps.iter().filter_map(|(name, dep)| {
                let registry = dep.is_str() || dep.get("version").is_some();
                registry.then(|| name.clone())
            }));
        }
        Ok(crates.into_iter().map(|c| c.replace('-', "_")).collect())
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

/// What an app needs of a profile, declared in its `Cargo.toml`:
///
/// ```toml
/// [package.metadata.stardust.requires]
/// scheduler = ["coop", "preempt"]   # any of these values of the slot
/// ```
///
/// Keys are slots (`platform` included), values the slot values the app builds with.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AppRequires {
    /// `(slot, accepted values)`, in the manifest's order.
    pub slots: Vec<(String, Vec<String>)>,
}

/// `[package.metadata.stardust] profile` of an app manifest: the profile the app is built with
/// when none is given, or `None`.
pub fn app_profile_of(text: &str) -> Result<Option<String>> {
    let doc: toml::Table = toml::from_str(text).map_err(|e| anyhow::Error::msg(e.to_string()))?;
    let profile = doc
        .get("package")
        .and_then(|p| p.get("metadata"))
        .and_then(|m| m.get("stardust"))
        .and_then(|s| s.get("profile"));
    match profile {
        None => Ok(None),
        Some(toml::Value::String(p)) if !p.is_empty() => Ok(Some(p.clone())),
        Some(other) => {
            bail!("[package.metadata.stardust] profile must be a profile's name, not {other}")
        }
    }
}

impl AppRequires {
    /// Reads `[package.metadata.stardust.requires]` of an app manifest (none: no requirement).
    pub fn from_manifest(text: &str) -> Result<AppRequires> {
        let doc: toml::Table =
            toml::from_str(text).map_err(|e| anyhow::Error::msg(e.to_string()))?;
        let requires = doc
            .get("package")
            .and_then(|p| p.get("metadata"))
            .and_then(|m| m.get("stardust"))
            .and_then(|s| s.get("requires"));
        let Some(requires) = requires else {
            return Ok(AppRequires::default());
        };
        let Some(table) = requires.as_table() else {
            bail!("[package.metadata.stardust.requires] must be a table of slot = [values]");
        };
        let mut slots = Vec::new();
        for (slot, values) in table {
            let values: Option<Vec<String>> = match values {
                toml::Value::String(v) => Some(vec![v.clone()]),
                toml::Value::Array(a) => a.iter().map(|v| v.as_str().map(String::from)).collect(),
                _ => None,
            };
            match values {
                Some(v) if !v.is_empty() => slots.push((slot.clone(), v)),
                _ => bail!(
                    "[package.metadata.stardust.requires] {slot}: expected a list of {slot} \
                     values, like [\"coop\", \"preempt\"]"
                ),
            }
        }
        Ok(AppRequires { slots })
    }

    /// Fails when `profile` has a slot value the app does not build with, naming what it needs;
    /// or when a requirement names a slot or value that `catalog` does not have.
    pub fn check(&self, app: &str, profile: &Profile, catalog: &Catalog) -> Result<()> {
        for (slot, accepted) in &self.slots {
            let Some(valid) = catalog.values(slot) else {
                bail!(
                    "apps/{app}/Cargo.toml requires slot `{slot}`, which does not exist; slots: {}",
                    catalog.slot_names().collect::<Vec<_>>().join(", ")
                );
            };
            if let Some(bad) = accepted.iter().find(|v| !valid.contains(v)) {
                bail!(
                    "apps/{app}/Cargo.toml requires {slot} `{bad}`, which is not a {slot}; \
                     valid: {}",
                    valid.join(", ")
                );
            }
            let has = profile.slot(slot).unwrap_or("?");
            if !accepted.iter().any(|v| v == has) {
                let choices = accepted
                    .iter()
                    .map(|v| format!("`{v}`"))
                    .collect::<Vec<_>>()
                    .join(" or ");
                bail!(
                    "app `{app}` needs {slot} {choices} (apps/{app}/Cargo.toml, \
                     [package.metadata.stardust.requires]), but profile `{}` has {slot} `{has}`: \
                     add --set {slot}={}",
                    profile.name,
                    accepted[accepted.len() - 1]
                );
            }
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(sets: &[&str]) -> (Profile, Catalog) {
        let catalog = crate::profile::test_catalog(
            &[
                "platform-kvm",
                "platform-xen",
                "allocator-none",
                "allocator-talc",
                "scheduler-none",
                "scheduler-coop",
                "scheduler-preempt",
                "console-serial",
                "console-xen",
            ],
            "",
        );
        let text = "platform = \"kvm\"\n[slots]\nallocator = \"talc\"\nscheduler = \"none\"\nconsole = \"serial\"\n";
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        let p = Profile::parse("default", text, &sets, &catalog).expect("valid");
        (p, catalog)
    }

    const THREADS: &str = r#"
[package]
name = "threads"

[package.metadata.stardust.requires]
scheduler = ["coop", "preempt"]
"#;

    #[test]
    fn an_app_may_name_its_own_profile() {
        let text = "[package]\nname = \"httpd\"\n[package.metadata.stardust]\nprofile = \"net\"\n";
        assert_eq!(app_profile_of(text).unwrap().as_deref(), Some("net"));
        assert_eq!(
            app_profile_of("[package]\nname = \"hello\"\n").unwrap(),
            None
        );
        let bad = "[package.metadata.stardust]\nprofile = 3\n";
        assert!(
            app_profile_of(bad)
                .unwrap_err()
                .to_string()
                .contains("profile's name")
        );
        assert!(app_profile_of("[package.metadata.stardust]\nprofile = \"\"\n").is_err());
        let ws = Workspace::locate();
        assert_eq!(ws.app_profile("httpd").unwrap().as_deref(), Some("net"));
        assert_eq!(ws.app_profile("echo").unwrap().as_deref(), Some("net"));
        assert_eq!(ws.app_profile("hello").unwrap(), None);
        // Every app's own profile exists and fits it.
        let apps = std::fs::read_dir(ws.apps_dir()).unwrap();
        for app in apps.flatten() {
            let app = app.file_name().to_string_lossy().into_owned();
            if let Some(p) = ws.app_profile(&app).unwrap() {
                let profile = ws.load_profile(&p, &[]).unwrap();
                ws.check_app_fits(&app, &profile).unwrap();
            }
        }
    }

    #[test]
    fn an_app_names_the_slot_values_it_needs() {
        let req = AppRequires::from_manifest(THREADS).unwrap();
        assert_eq!(
            req.slots,
            [(
                "scheduler".to_string(),
                vec!["coop".to_string(), "preempt".to_string()]
            )]
        );
        let (p, c) = profile(&[]);
        let e = req.check("threads", &p, &c).unwrap_err().to_string();
        assert!(
            e.contains("app `threads` needs scheduler `coop` or `preempt`")
                && e.contains("profile `default` has scheduler `none`")
                && e.contains("--set scheduler=preempt"),
            "{e}"
        );
        let (p, c) = profile(&["scheduler=coop"]);
        req.check("threads", &p, &c).unwrap();
        // The platform is a slot like the others; one value may be a plain string.
        let xen = AppRequires::from_manifest(
            "[package.metadata.stardust.requires]\nplatform = \"xen\"\n",
        )
        .unwrap();
        let e = xen.check("xenprobe", &p, &c).unwrap_err().to_string();
        assert!(
            e.contains("needs platform `xen`") && e.contains("--set platform=xen"),
            "{e}"
        );
        // No requirements: anything goes.
        let none = AppRequires::from_manifest("[package]\nname = \"hello\"\n").unwrap();
        assert!(none.slots.is_empty());
        none.check("hello", &p, &c).unwrap();
    }

    #[test]
    fn the_allocators_and_their_crates_come_from_the_manifests() {
        let ws = Workspace::locate();
        assert_eq!(ws.allocators().unwrap(), ["bump", "buddy", "talc"]);
        assert_eq!(ws.allocator_crates("bump").unwrap(), ["alloc_bump"]);
        assert_eq!(
            ws.allocator_crates("buddy").unwrap(),
            ["alloc_buddy", "buddy_system_allocator"]
        );
        assert_eq!(ws.allocator_crates("talc").unwrap(), ["alloc_talc", "talc"]);
    }

    #[test]
    fn the_real_facade_is_a_valid_catalog_whose_defaults_build() {
        let ws = Workspace::locate();
        let catalog = ws.catalog().unwrap();
        let p = Profile::parse("empty", "", &[], &catalog).unwrap();
        assert_eq!(
            p.features(),
            [
                "stardust/platform-kvm",
                "stardust/allocator-talc",
                "stardust/scheduler-none",
                "stardust/console-serial",
                "stardust/net_device-none",
                "stardust/block_device-none",
                "stardust/filesystem-none"
            ]
        );
        for (platform, console) in [("xen", "xen"), ("universal", "auto")] {
            let p =
                Profile::parse("empty", "", &[format!("platform={platform}")], &catalog).unwrap();
            assert_eq!(p.slot("console"), Some(console));
        }
    }

    #[test]
    fn bad_requirements_are_errors_of_the_manifest() {
        let (p, c) = profile(&[]);
        let req = |t: &str| {
            AppRequires::from_manifest(&format!("[package.metadata.stardust.requires]\n{t}\n"))
        };
        let e = req("scheduler = [\"fifo\"]")
            .unwrap()
            .check("a", &p, &c)
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("requires scheduler `fifo`, which is not"),
            "{e}"
        );
        let e = req("sched = [\"coop\"]")
            .unwrap()
            .check("a", &p, &c)
            .unwrap_err();
        assert!(e.to_string().contains("requires slot `sched`"), "{e}");
        assert!(req("scheduler = []").is_err());
        assert!(req("scheduler = 3").is_err());
        assert!(AppRequires::from_manifest("[package.metadata.stardust]\nrequires = 1\n").is_err());
    }
}
