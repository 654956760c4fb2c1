//! `~/.ragged/config/backend.toml`: named stores, personas, the default store, and settings; shell
//! completions.

use ragged_tests::TestEnv;

#[test]
fn named_stores_personas_and_the_default_store() {
    let env = TestEnv::new();
    let old = env.path("old");
    env.write_config(&format!(
        "[migration]\nbatch_size = 128\n\n[stores.old]\nbackend = \"parquet\"\nlocation = {:?}\n\n\
             [personas.researcher]\ncollections = [\"papers\"]\n",
        old.display().to_string()
    ));
    env.generate("old", "papers", 300, 8, &[]);
    env.generate("old", "notes", 200, 8, &[]);
    env.ragged(&["backend", "current"])
        .ok()
        .stdout_has("no default store set");
    env.ragged(&["backend", "set", "old", "--global"]).ok();
    env.ragged(&["backend", "current"])
        .ok()
        .stdout_has(&format!("old (parquet:{}), global default", old.display()));

    let new = env.store("parquet", "new");
    let report = env
        .ragged(&[
            "backend",
            "migrate",
            "old",
            &new,
            "--persona",
            "researcher",
            "--set-default",
            "--json",
        ])
        .ok()
        .json();
    let migrated: Vec<&str> = report["collections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(migrated, ["papers"], "the persona's collections only: {report:#}");
    let run: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(report["run_dir"].as_str().unwrap().to_owned() + "/run.json").unwrap(),
    )
    .unwrap();
    assert_eq!(run["batch_size"], 128, "the configured batch size");
    env.ragged(&["backend", "current", "--persona", "researcher"])
        .ok()
        .stdout_has(&format!("{new} ({new}), persona researcher"));
    env.ragged(&["backend", "current"]).ok().stdout_has("old (parquet:");
    let listed = env.ragged(&["backend", "collections", &new, "--json"]).ok().json();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    env.ragged(&["backend", "collections", "nowhere"])
        .code(2)
        .stderr_has("or the name of a store in the configuration (configured: old)");
}

#[test]
fn a_mistake_in_the_configuration_names_the_file_and_the_key() {
    let env = TestEnv::new();
    env.write_config("[migration]\nbatch_sise = 5\n");
    env.ragged(&["backend", "current"])
        .code(2)
        .stderr_has("backend.toml: invalid configuration")
        .stderr_has("batch_sise");
}

#[test]
fn completion_scripts_know_every_command_and_option() {
    let env = TestEnv::new();
    for shell in ["bash", "zsh", "fish"] {
        let run = env.ragged(&["completions", shell]);
        run.ok();
        // fish names long options without their dashes.
        for word in ["cutover", "compare-storage", "sample-rate", "vector-of"] {
            assert!(run.stdout().contains(word), "{shell}: no '{word}'");
        }
    }
    env.ragged(&["completions", "tcsh"]).code(2);
}
