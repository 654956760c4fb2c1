//! `ragged plugin ...`: list, info, install, remove, package, new, test.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::Subcommand;

use super::{EXIT_FINDINGS, EXIT_OK};
use crate::conformance::{self, Outcome};
use crate::context::Context;
use crate::output::{print_json, print_text, status};
use crate::plugin_manager::{self, Status, package, scaffold};

#[derive(Debug, Subcommand)]
pub(crate) enum PluginCommand {
    /// List installed plugins with their versions, capabilities and whether they can be used.
    #[command(after_help = "Examples:\n  ragged plugin list\n  ragged plugin list --json")]
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one plugin's manifest and status.
    #[command(after_help = "Examples:\n  ragged plugin info chroma")]
    Info {
        /// The plugin name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Install a plugin package after checking its checksum, target and interface version.
    #[command(
        after_help = "Examples:\n  ragged plugin install chroma-0.1.0-x86_64-unknown-linux-gnu.tar.zst\n  ragged plugin install ./dist/lance.tar.zst --force"
    )]
    Install {
        /// The `.tar.zst` package.
        package: PathBuf,
        /// Replace an installed plugin of the same name.
        #[arg(long)]
        force: bool,
    },
    /// Remove a plugin from the user plugin directory.
    #[command(after_help = "Examples:\n  ragged plugin remove chroma")]
    Remove {
        /// The plugin name.
        name: String,
    },
    /// Package a built plugin library as a `.tar.zst` with its manifest and checksum.
    #[command(after_help = "Examples:\n  ragged plugin package target/release/libragged_plugin_parquet.so --out dist")]
    Package {
        /// The built library (`.so`, `.dylib` or `.dll`).
        library: PathBuf,
        /// Where to write the package.
        #[arg(long, default_value = ".", value_name = "DIR")]
        out: PathBuf,
    },
    /// Create a new out-of-tree plugin crate that builds and passes its own tests.
    #[command(
        after_help = "Examples:\n  ragged plugin new qdrant\n  ragged plugin new my-store --path ~/src/ragged-plugin-my-store"
    )]
    New {
        /// The store name (lowercase letters, digits, '-' and '_').
        name: String,
        /// Where to create the crate (default: ./ragged-plugin-NAME).
        #[arg(long, value_name = "DIR")]
        path: Option<PathBuf>,
        /// Depend on ragged-plugin-api at this path instead of the default.
        #[arg(long, value_name = "DIR")]
        api_path: Option<PathBuf>,
    },
    /// Run the conformance suite against an installed plugin or a library file.
    #[command(
        after_help = "Examples:\n  ragged plugin test parquet\n  ragged plugin test target/debug/libragged_plugin_mystore.so --json"
    )]
    Test {
        /// An installed plugin's name, or the path of a plugin library.
        plugin: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn exec(ctx: &Context, command: PluginCommand) -> Result<u8> {
    match command {
        PluginCommand::List { json } => list(ctx, json),
        PluginCommand::Info { name, json } => info(ctx, &name, json),
        PluginCommand::Install { package: path, force } => {
            let report = package::install(&path, &ctx.user_plugin_dir, force)?;
            status(&format!(
                "installed {} {} into {}{}",
                report.manifest.name,
                report.manifest.version,
                report.dir.display(),
                if report.replaced {
                    " (replaced the previous installation)"
                } else {
                    ""
                }
            ));
            Ok(EXIT_OK)
        }
        PluginCommand::Remove { name } => {
            let dir = package::remove(&name, &ctx.user_plugin_dir)?;
            status(&format!("removed {name} ({})", dir.display()));
            Ok(EXIT_OK)
        }
        PluginCommand::Package { library, out } => {
            let report = package::package(&library, &out)?;
            print_text(&format!("{}\n", report.path.display()))?;
            Ok(EXIT_OK)
        }
        PluginCommand::New { name, path, api_path } => {
            let dir = path.unwrap_or_else(|| PathBuf::from(format!("ragged-plugin-{name}")));
            scaffold::create(&name, &dir, api_path.as_deref())?;
            status(&format!(
                "created {}\nnext: cd {} && cargo test && ragged plugin package target/debug/{}",
                dir.display(),
                dir.display(),
                scaffold::library_file_name(&name)
            ));
            Ok(EXIT_OK)
        }
        PluginCommand::Test { plugin, json } => test(ctx, &plugin, json),
    }
}

fn list(ctx: &Context, json: bool) -> Result<u8> {
    let entries = plugin_manager::discover(ctx);
    if json {
        print_json(&entries)?;
        return Ok(EXIT_OK);
    }
    if entries.is_empty() {
        let searched: Vec<String> = ctx.plugin_search_path.iter().map(|p| p.display().to_string()).collect();
        print_text(&format!("no plugins found (searched: {})\n", searched.join(", ")))?;
        return Ok(EXIT_OK);
    }
    let mut text = format!(
        "{:<10} {:<9} {:<10} {:<8} {:<52} {}\n",
        "NAME", "VERSION", "INTERFACE", "STATUS", "CAPABILITIES", "PATH"
    );
    for entry in &entries {
        let (version, interface, capabilities) = match &entry.manifest {
            Some(m) => (m.version.as_str(), m.interface.as_str(), m.capabilities.join(",")),
            None => ("-", "-", String::new()),
        };
        let state = match &entry.status {
            Status::Valid => "valid",
            Status::Invalid(_) => "invalid",
            Status::Shadowed(_) => "shadowed",
        };
        text.push_str(&format!(
            "{:<10} {:<9} {:<10} {:<8} {:<52} {}\n",
            entry.name,
            version,
            interface,
            state,
            capabilities,
            entry.dir.display()
        ));
        if let Status::Invalid(reason) | Status::Shadowed(reason) = &entry.status {
            text.push_str(&format!("           {reason}\n"));
        }
    }
    print_text(&text)?;
    Ok(EXIT_OK)
}

fn info(ctx: &Context, name: &str, json: bool) -> Result<u8> {
    let entries = plugin_manager::discover(ctx);
    let Some(entry) = entries.iter().find(|e| e.name == name) else {
        bail!("no plugin named '{name}' is installed");
    };
    if json {
        print_json(entry)?;
    } else {
        let mut text = format!("{name}\n  directory: {}\n", entry.dir.display());
        if let Some(m) = &entry.manifest {
            text.push_str(&format!(
                "  version: {}\n  description: {}\n  interface: {}\n  target: {}\n  platforms: {}\n  capabilities: {}\n  library: {}\n  sha256: {}\n",
                m.version, m.description, m.interface, m.target, m.platforms.join(", "), m.capabilities.join(", "), m.library, m.sha256
            ));
        }
        let state = match &entry.status {
            Status::Valid => "valid".to_owned(),
            Status::Invalid(reason) => format!("invalid: {reason}"),
            Status::Shadowed(reason) => reason.clone(),
        };
        text.push_str(&format!("  status: {state}\n"));
        print_text(&text)?;
    }
    Ok(EXIT_OK)
}

fn test(ctx: &Context, plugin: &str, json: bool) -> Result<u8> {
    let path = Path::new(plugin);
    let (name, loaded) = if path.is_file() {
        let loaded = plugin_manager::load_library(path)?;
        let name = plugin_manager::manifest::SourceManifest::parse(&loaded.info.manifest_toml)
            .map(|m| m.name)
            .unwrap_or_else(|_| plugin.to_owned());
        (name, loaded)
    } else {
        let (entry, loaded) = plugin_manager::load(ctx, plugin)?;
        (entry.name, loaded)
    };
    let scratch = tempfile::tempdir()?;
    let limits = crate::guard::Limits::from_context(ctx);
    let report = conformance::run(&loaded, &name, scratch.path(), &limits);
    if json {
        print_json(&report)?;
    } else {
        let mut text = String::new();
        for check in &report.checks {
            let mark = match check.outcome {
                Outcome::Pass => "ok  ",
                Outcome::Fail => "FAIL",
                Outcome::Skip => "skip",
            };
            text.push_str(&format!("{mark} {}\n", check.name));
            if !check.detail.is_empty() {
                text.push_str(&format!("     {}\n", check.detail));
            }
        }
        text.push_str(&format!(
            "\n{}: {} passed, {} failed, {} skipped\n",
            name, report.passed, report.failed, report.skipped
        ));
        print_text(&text)?;
    }
    Ok(if report.failed == 0 { EXIT_OK } else { EXIT_FINDINGS })
}
