//! `ragged plugin new`: writes an out-of-tree plugin crate from the templates in
//! `host/templates/plugin/`, which build and pass their own test as written.

use std::path::Path;

use anyhow::{Context as _, Result, bail};

const TEMPLATES: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../../templates/plugin/Cargo.toml.tmpl")),
    ("plugin.toml", include_str!("../../templates/plugin/plugin.toml.tmpl")),
    ("README.md", include_str!("../../templates/plugin/README.md.tmpl")),
    ("src/lib.rs", include_str!("../../templates/plugin/src/lib.rs.tmpl")),
    (
        "tests/roundtrip.rs",
        include_str!("../../templates/plugin/tests/roundtrip.rs.tmpl"),
    ),
];

/// Where this host's interface crate sources were when it was built; used when they still exist
/// (a development checkout), since ragged-plugin-api is not on crates.io yet.
const BUILT_API_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../plugin-api");

/// Creates the crate for plugin `name` in `dir`, which must not exist or be empty.
pub fn create(name: &str, dir: &Path, api_path: Option<&Path>) -> Result<()> {
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid {
        bail!("plugin name '{name}' must be lowercase letters, digits, '-' or '_', starting with a letter");
    }
    if dir.exists() && std::fs::read_dir(dir).map(|mut d| d.next().is_some()).unwrap_or(true) {
        bail!("{} already exists and is not empty", dir.display());
    }
    let api_dependency = api_dependency(api_path)?;
    let lib_name = name.replace('-', "_");
    let library_file = library_file_name(name);
    for (relative, template) in TEMPLATES {
        let text = template
            .replace("{{api_dependency}}", &api_dependency)
            .replace("{{lib_name}}", &lib_name)
            .replace("{{library_file}}", &library_file)
            .replace("{{name}}", name);
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// The file name cargo gives the plugin's library on this platform.
pub fn library_file_name(name: &str) -> String {
    format!(
        "{}ragged_plugin_{}{}",
        std::env::consts::DLL_PREFIX,
        name.replace('-', "_"),
        std::env::consts::DLL_SUFFIX
    )
}

fn api_dependency(api_path: Option<&Path>) -> Result<String> {
    let built = Path::new(BUILT_API_PATH);
    let path = match api_path {
        Some(path) => Some(
            path.canonicalize()
                .with_context(|| format!("--api-path {}", path.display()))?,
        ),
        None => built
            .join("Cargo.toml")
            .is_file()
            .then(|| built.canonicalize().ok())
            .flatten(),
    };
    Ok(match path {
        Some(path) => {
            // A path dependency must ask for the version the crate at that path has.
            let manifest = path.join("Cargo.toml");
            let text = std::fs::read_to_string(&manifest).with_context(|| format!("reading {}", manifest.display()))?;
            let table: toml::Table =
                toml::from_str(&text).with_context(|| format!("parsing {}", manifest.display()))?;
            let version = table
                .get("package")
                .and_then(|p| p.get("version"))
                .and_then(|v| v.as_str())
                .with_context(|| format!("{}: no package.version", manifest.display()))?;
            format!(
                "ragged-plugin-api = {{ version = \"{version}\", path = {}, features = [\"arrow\", \"sampling\"] }}",
                toml_string(&path.display().to_string())
            )
        }
        None => format!(
            "ragged-plugin-api = {{ version = \"{}\", features = [\"arrow\", \"sampling\"] }}",
            ragged_plugin_api::INTERFACE_VERSION
        ),
    })
}

fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}
