//! What this machine is and which store plugins work on it: OS, architecture, CPU features,
//! memory, free disk at the store locations, and the installed plugins with the platforms each
//! supports. Everything is read from the OS and the plugin manifests; nothing loads a store.

use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use crate::context::Context;
use crate::plugin_manager::{self, Status, manifest::platform_supported};
use crate::store::local_path;

/// The machine and its plugins.
#[derive(Debug, Clone, Serialize)]
pub struct Platform {
    /// `linux`, `macos`, `windows`...
    pub os: &'static str,
    /// `x86_64`, `aarch64`...
    pub arch: &'static str,
    /// Logical CPUs.
    pub cpus: usize,
    /// SIMD features the vector code can use.
    pub cpu_features: Vec<&'static str>,
    /// Installed memory, where the OS tells.
    pub memory_total_bytes: Option<u64>,
    /// Memory available for new work, where the OS tells.
    pub memory_available_bytes: Option<u64>,
    /// Free space where the configured stores live.
    pub disks: Vec<DiskSpace>,
    /// The installed plugins.
    pub plugins: Vec<PluginSupport>,
    /// How long detection took.
    pub detection_ms: f64,
}

/// Free space at a store's location (or its nearest existing parent).
#[derive(Debug, Clone, Serialize)]
pub struct DiskSpace {
    /// The store, as configured.
    pub store: String,
    /// Bytes free there, when measurable.
    pub free_bytes: Option<u64>,
}

/// An installed plugin and whether it works here.
#[derive(Debug, Clone, Serialize)]
pub struct PluginSupport {
    /// Its name.
    pub name: String,
    /// Whether it is usable on this machine.
    pub usable: bool,
    /// The platforms its manifest lists.
    pub platforms: Vec<String>,
    /// Why it is not usable, when it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Detects the platform. The configured stores (the default and the named ones) are where free
/// disk is measured.
pub fn detect(ctx: &Context) -> Platform {
    let started = Instant::now();
    let (memory_total_bytes, memory_available_bytes) = memory();
    let mut stores: Vec<String> = ctx.config.default_store.iter().cloned().collect();
    stores.extend(ctx.config.stores.keys().cloned());
    stores.dedup();
    let disks = stores
        .into_iter()
        .map(|store| {
            let free_bytes = ctx
                .config
                .resolve_store(&store)
                .ok()
                .and_then(|(spec, _)| local_path(&spec.location))
                .and_then(|path| free_space(&path));
            DiskSpace { store, free_bytes }
        })
        .collect();
    let plugins = plugin_manager::discover(ctx)
        .into_iter()
        .filter(|entry| !matches!(entry.status, Status::Shadowed(_)))
        .map(|entry| {
            let platforms = entry.manifest.as_ref().map(|m| m.platforms.clone()).unwrap_or_default();
            let reason = match &entry.status {
                Status::Valid => None,
                Status::Invalid(reason) | Status::Shadowed(reason) => Some(reason.clone()),
            };
            PluginSupport {
                usable: reason.is_none()
                    && platform_supported(&platforms, std::env::consts::OS, std::env::consts::ARCH),
                name: entry.name,
                platforms,
                reason,
            }
        })
        .collect();
    Platform {
        os: std::env::consts::OS,
        arch: std::env::consts::ARCH,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu_features: cpu_features(),
        memory_total_bytes,
        memory_available_bytes,
        disks,
        plugins,
        detection_ms: started.elapsed().as_secs_f64() * 1000.0,
    }
}

/// Free bytes on the file system holding `path`, or its nearest existing ancestor (a store that
/// does not exist yet will be created there).
pub fn free_space(path: &Path) -> Option<u64> {
    let existing = path.ancestors().find(|p| p.exists())?;
    fs4::available_space(existing).ok()
}

fn cpu_features() -> Vec<&'static str> {
    let mut features = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! detect {
            ($($name:tt),*) => {
                $(if std::arch::is_x86_feature_detected!($name) { features.push($name); })*
            };
        }
        detect!("sse4.2", "avx", "avx2", "fma", "f16c", "avx512f");
    }
    #[cfg(target_arch = "aarch64")]
    {
        macro_rules! detect {
            ($($name:tt),*) => {
                $(if std::arch::is_aarch64_feature_detected!($name) { features.push($name); })*
            };
        }
        detect!("neon", "dotprod", "fp16", "sve");
    }
    features
}

/// Total and available memory: /proc/meminfo on Linux, sysctl on macOS, unknown elsewhere.
fn memory() -> (Option<u64>, Option<u64>) {
    #[cfg(target_os = "linux")]
    {
        let Ok(text) = std::fs::read_to_string("/proc/meminfo") else {
            return (None, None);
        };
        let field = |name: &str| -> Option<u64> {
            let line = text.lines().find(|l| l.starts_with(name))?;
            Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
        };
        (field("MemTotal:"), field("MemAvailable:"))
    }
    #[cfg(target_os = "macos")]
    {
        let total = std::process::Command::new("sysctl")
            .args(["-n", "hw.memsize"])
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok());
        (total, None)
    }
    #[cfg(not(any(target_os = "linux", target_os = "macos")))]
    {
        (None, None)
    }
}
