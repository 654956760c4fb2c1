//! docs/reference.md, generated from the clap definitions and the plugin manifests, and a test that
//! fails when the file is stale. `RAGGED_BLESS=1 cargo test -p ragged --lib reference` rewrites it.

use std::path::Path;

use clap::CommandFactory;

use super::Cli;

/// `command`'s `--help` and its subcommands', in command order (groups get a heading only).
fn commands(command: &mut clap::Command, path: &str, out: &mut String) {
    let name = format!("{path} {}", command.get_name()).trim().to_owned();
    if path.is_empty() {
        let help = command.render_long_help().to_string();
        out.push_str(&format!("\n## `{name}`\n\n```text\n{}\n```\n", help.trim_end()));
    } else if command.has_subcommands() {
        out.push_str(&format!("\n## `{name}`\n\n{}\n", about(command)));
    } else if !command.has_subcommands() {
        let help = command.render_long_help().to_string();
        out.push_str(&format!("\n### `{name}`\n\n```text\n{}\n```\n", help.trim_end()));
    }
    let mut subcommands: Vec<clap::Command> = command.get_subcommands().cloned().collect();
    for sub in &mut subcommands {
        if sub.get_name() != "help" {
            commands(sub, &name, out);
        }
    }
}

fn about(command: &clap::Command) -> String {
    command.get_about().map(|a| a.to_string()).unwrap_or_default()
}

/// The platforms each store plugin of this workspace supports, from its `plugin.toml`.
fn platform_matrix(plugins: &Path) -> String {
    const PLATFORMS: [&str; 3] = ["linux", "macos", "windows"];
    let mut rows = Vec::new();
    for entry in std::fs::read_dir(plugins).expect("plugins/ is readable").flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path().join("plugin.toml")) else {
            continue;
        };
        let manifest: toml::Table = text.parse().expect("plugin.toml is TOML");
        let name = manifest["name"].as_str().expect("a name").to_owned();
        let supported: Vec<&str> = manifest["platforms"]
            .as_array()
            .expect("a platforms list")
            .iter()
            .filter_map(|p| p.as_str())
            .collect();
        let cells: Vec<&str> = PLATFORMS
            .iter()
            .map(|os| {
                if supported.iter().any(|p| p == os || p.starts_with(&format!("{os}-"))) {
                    "yes"
                } else {
                    "no"
                }
            })
            .collect();
        rows.push(format!("| {name} | {} |", cells.join(" | ")));
    }
    rows.sort();
    format!(
        "| plugin | {} |\n|---|{}\n{}\n",
        PLATFORMS.join(" | "),
        "---|".repeat(PLATFORMS.len()),
        rows.join("\n")
    )
}

fn reference(workspace: &Path) -> String {
    let mut cli = Cli::command().term_width(100);
    cli.build();
    let mut text = String::from(
        "# Command reference\n\n\
         Generated from ragged's own `--help` and the plugins' `plugin.toml` files by\n\
         `RAGGED_BLESS=1 cargo test -p ragged --lib reference`; a test fails when this file is stale.\n\
         The configuration file is described in [migration.md](migration.md#configuration).\n\n\
         ## Exit codes\n\n\
         | code | meaning |\n|---|---|\n\
         | 0 | everything went as asked |\n\
         | 1 | the command ran but found differences or failed checks (verify, a migration whose verification failed, plugin test, a dry run predicting loss, writes queued for retry), or refused |\n\
         | 2 | an error stopped the command; the message names the file or store and the problem |\n\
         | 130 | interrupted by Ctrl-C; migrations and syncs continue where they stopped |\n\n\
         ## Platforms\n\n\
         Where each store plugin is built and shipped (`platforms` in its `plugin.toml`;\n\
         `ragged backend platform` shows what works on this machine).\n\n",
    );
    text.push_str(&platform_matrix(&workspace.join("plugins")));
    commands(&mut cli, "", &mut text);
    text
}

#[test]
fn the_reference_matches_the_commands() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent");
    let path = workspace.join("docs/reference.md");
    let expected = reference(workspace);
    if std::env::var_os("RAGGED_BLESS").is_some() {
        std::fs::write(&path, &expected).expect("docs/reference.md is writable");
    }
    let actual = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        actual == expected,
        "docs/reference.md is stale; regenerate it with RAGGED_BLESS=1 cargo test -p ragged --lib reference"
    );
}
