//! Third parties add a store without rebuilding the host: a crate scaffolded with
//! `ragged plugin new`, built outside the workspace, packaged and installed, carries a migration
//! in and out with the already-built host.

use ragged_tests::{TestEnv, build_out_of_tree, test_out_of_tree};

#[test]
fn a_scaffolded_plugin_builds_installs_and_migrates() {
    let env = TestEnv::new();
    let crate_dir = env.path("ragged-plugin-acme");
    env.ragged(&["plugin", "new", "acme", "--path", &crate_dir.display().to_string()])
        .ok();
    env.ragged(&["plugin", "new", "acme", "--path", &crate_dir.display().to_string()])
        .code(2)
        .stderr_has("not empty");
    test_out_of_tree(&crate_dir);
    let library = build_out_of_tree(&crate_dir, "ragged_plugin_acme");
    let package = env
        .ragged(&[
            "plugin",
            "package",
            &library.display().to_string(),
            "--out",
            &env.path("dist").display().to_string(),
        ])
        .ok()
        .stdout();
    env.ragged(&["plugin", "install", package.trim()]).ok();
    // The scaffold must pass every check the suite has, however many that is today.
    let reference = env.ragged(&["plugin", "test", "parquet", "--json"]).ok().json();
    let checks = ["passed", "failed", "skipped"]
        .iter()
        .map(|field| reference[field].as_u64().unwrap())
        .sum::<u64>();
    env.ragged(&["plugin", "test", "acme"])
        .ok()
        .stdout_has(&format!("acme: {checks} passed, 0 failed, 0 skipped"));

    let source = env.store("parquet", "source");
    env.generate(&source, "notes", 700, 24, &[]);
    let middle = env.store("acme", "middle");
    let back = env.store("parquet", "back");
    env.ragged(&["backend", "migrate", &source, &middle])
        .ok()
        .stdout_has("verified: every record matches");
    env.ragged(&["backend", "migrate", &middle, &back])
        .ok()
        .stdout_has("verified: every record matches");
    env.ragged(&["backend", "verify", &source, &back])
        .ok()
        .stdout_has("notes: 700 vs 700 records, verified: every record matches");
}
