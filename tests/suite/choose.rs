//! Choosing a store: a small real benchmark across the installed plugins, storage comparison,
//! platform detection, the recommendation on real data, and `ragged query` by vector and by text.

use ragged_embed::{Embedder, SentenceTransformer};
use ragged_tests::{Run, TestEnv, store_plugins};

#[test]
fn a_small_benchmark_runs_on_every_installed_store_plugin() {
    let env = TestEnv::new();
    let plugins = store_plugins();
    let plot = env.path("bench.svg");
    let mut args = vec!["backend", "benchmark"];
    args.extend(plugins.iter().map(String::as_str));
    let plot_arg = plot.display().to_string();
    args.extend([
        "--corpus-size",
        "500",
        "--queries",
        "20",
        "--dim",
        "16",
        "--plot",
        &plot_arg,
        "--json",
    ]);
    let report = env.ragged(&args).ok().json();
    let results = report["results"].as_array().unwrap();
    assert_eq!(results.len(), plugins.len(), "{report:#}");
    for result in results {
        let backend = result["backend"].as_str().unwrap();
        assert!(
            result["ingest_records_per_second"].as_f64().unwrap() > 0.0,
            "{result:#}"
        );
        let query = &result["query"];
        assert!(
            query["p50_ms"].as_f64().unwrap() <= query["p95_ms"].as_f64().unwrap(),
            "{result:#}"
        );
        assert!(
            query["p95_ms"].as_f64().unwrap() <= query["p99_ms"].as_f64().unwrap(),
            "{result:#}"
        );
        let recall = result["recall_at_10"].as_f64().unwrap();
        // Brute-force stores are exact; graph indexes may miss a neighbour now and then.
        assert!(recall >= 0.9, "{backend}: recall@10 {recall}");
        assert!(result["storage_bytes"].as_u64().unwrap() > 0, "{result:#}");
        if cfg!(target_os = "linux") {
            assert!(result["ingest_memory_bytes"].as_u64().is_some(), "{result:#}");
        }
    }
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("recall@10"), "{svg}");
    for plugin in &plugins {
        assert!(svg.contains(plugin.as_str()), "{plugin} missing from the chart");
    }
    // Every temporary store is gone.
    let leftovers: Vec<_> = std::fs::read_dir(env.temp_dir()).unwrap().flatten().collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn storage_comparison_platform_recommendation_and_query_use_the_users_data() {
    let env = TestEnv::new();
    let source = env.store("parquet", "data");
    env.generate(&source, "notes", 3000, 32, &[]);
    let measured = env.ragged(&["backend", "storage-info", &source, "--json"]).ok().json()["total_bytes"]
        .as_u64()
        .unwrap();

    // An existing second store is measured, a bare backend name estimated from a sample.
    let copy = env.store("parquet", "copy");
    env.ragged(&["backend", "migrate", &source, &copy, "--json"]).ok();
    let compared = env
        .ragged(&["backend", "compare-storage", &source, &copy, "--json"])
        .ok()
        .json();
    assert_eq!(compared["first"]["bytes"].as_u64().unwrap(), measured, "{compared:#}");
    assert_eq!(compared["second"]["estimated"], false, "{compared:#}");
    let estimated = env
        .ragged(&["backend", "compare-storage", &source, "parquet", "--json"])
        .ok()
        .json();
    assert_eq!(estimated["second"]["estimated"], true, "{estimated:#}");
    let guess = estimated["second"]["bytes"].as_f64().unwrap();
    // The same plugin, scaled from a third of the records: within a quarter of the real size.
    assert!(
        (guess / measured as f64 - 1.0).abs() < 0.25,
        "estimated {guess}, measured {measured}"
    );

    let platform = env.ragged(&["backend", "platform", "--json"]).ok().json();
    assert_eq!(platform["os"], std::env::consts::OS);
    assert_eq!(platform["arch"], std::env::consts::ARCH);
    let usable: Vec<&str> = platform["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["usable"] == true)
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for plugin in store_plugins() {
        assert!(usable.contains(&plugin.as_str()), "{plugin} not usable: {platform:#}");
    }

    env.ragged(&["backend", "recommend"])
        .code(2)
        .stderr_has("no --store given");
    let report = env
        .ragged(&["backend", "recommend", "--store", &source, "--json"])
        .ok()
        .json();
    let candidates = report["situation"]["candidates"].as_array().unwrap();
    let current = candidates.iter().find(|c| c["backend"] == "parquet").unwrap();
    assert_eq!(current["bytes"].as_u64().unwrap(), measured);
    assert_eq!(current["measured"], true);
    assert_eq!(
        report["recommendation"]["backend"], "parquet",
        "no constraint keeps the store: {report:#}"
    );
    // A limit below the current size but above the smallest estimate recommends that store.
    let smallest = candidates.iter().min_by_key(|c| c["bytes"].as_u64().unwrap()).unwrap();
    if smallest["backend"] != "parquet" {
        let limit_mb = (smallest["bytes"].as_u64().unwrap() >> 20) + 1;
        if limit_mb << 20 < measured {
            let limited = env
                .ragged(&[
                    "backend",
                    "recommend",
                    "--store",
                    &source,
                    "--max-storage",
                    &limit_mb.to_string(),
                    "--json",
                ])
                .ok()
                .json();
            assert_eq!(limited["recommendation"]["backend"], smallest["backend"], "{limited:#}");
            assert!(
                limited["recommendation"]["command"]
                    .as_str()
                    .unwrap()
                    .starts_with("ragged backend migrate"),
                "{limited:#}"
            );
        }
    }

    let hits = env
        .ragged(&[
            "query",
            "--store",
            &source,
            "--vector-of",
            "doc-00000042",
            "-k",
            "5",
            "--json",
        ])
        .ok()
        .json();
    let results = hits["results"].as_array().unwrap();
    assert_eq!(results.len(), 5, "{hits:#}");
    assert_eq!(
        results[0]["id"], "doc-00000042",
        "a record is its own nearest neighbour: {hits:#}"
    );
    env.ragged(&["query", "what is a vector store", "--store", &source])
        .code(2)
        .stderr_has("--vector-of");
}

/// Notes whose vectors all-MiniLM-L6-v2 computes, and a question each answers best.
const NOTES: &[(&str, &str, &str)] = &[
    (
        "backups",
        "Backups of the vector store run every night at two o'clock.",
        "when are backups made?",
    ),
    (
        "oncall",
        "Query latency above 200 ms pages the on-call engineer.",
        "who gets paged when queries are slow?",
    ),
    (
        "retention",
        "Deleted records are kept for ninety days before they are purged.",
        "how long are deleted records retained?",
    ),
    (
        "cafeteria",
        "The cafeteria serves vegetarian lasagne on Fridays.",
        "what food is there on Friday?",
    ),
    (
        "onboarding",
        "New engineers start with the handbook's first chapter.",
        "where should a new hire begin reading?",
    ),
];

#[test]
fn query_text_is_embedded_with_the_collections_model() {
    let Some(model) = ragged_interop::minilm_model_dir("embed") else {
        return;
    };
    let embedder = SentenceTransformer::load(&model).unwrap();
    let documents: Vec<&str> = NOTES.iter().map(|(_, document, _)| *document).collect();
    let vectors = embedder.embed(&documents).unwrap();
    let env = TestEnv::new();
    let lines: Vec<String> = NOTES
        .iter()
        .zip(&vectors)
        .map(|((id, document, _), vector)| {
            serde_json::json!({ "id": id, "document": document, "metadata": {}, "embedding": vector }).to_string()
        })
        .collect();
    std::fs::write(env.path("notes.jsonl"), lines.join("\n")).unwrap();
    let parquet = env.store("parquet", "notes-parquet");
    env.ragged(&["ingest", "notes.jsonl", "--to", &parquet]).ok();

    // Parquet records no model: --model names it, else the query is refused.
    env.ragged(&["query", "when are backups made?", "--store", &parquet])
        .code(2)
        .stderr_has("records no embedding model");
    let model_arg = model.display().to_string();
    for (id, _, question) in NOTES {
        let hits = env
            .ragged(&[
                "query", question, "--store", &parquet, "--model", &model_arg, "-k", "2", "--json",
            ])
            .ok()
            .json();
        assert_eq!(hits["results"][0]["id"], *id, "{question}: {hits:#}");
        assert_eq!(hits["query"]["text"], *question);
    }

    // A LEANN index records the model its vectors came from (the store option `model`), found
    // here in an offline Hugging Face cache, as on a machine where the application ran.
    let leann = env.store("leann", "notes-leann");
    env.ragged(&[
        "backend",
        "migrate",
        &parquet,
        &leann,
        "--target-option",
        "model=sentence-transformers/all-MiniLM-L6-v2",
    ])
    .ok();
    let cache = env.path("hf-cache");
    let repo = cache.join("models--sentence-transformers--all-MiniLM-L6-v2");
    std::fs::create_dir_all(repo.join("snapshots")).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "0123abcd").unwrap();
    std::os::unix::fs::symlink(&model, repo.join("snapshots/0123abcd")).unwrap();
    let query = |question: &str, cache_dir: &std::path::Path| {
        let mut command = env.command();
        command
            .args(["query", question, "--store", &leann, "--json"])
            .env("HF_HUB_CACHE", cache_dir)
            .env_remove("HF_HOME");
        Run(command.output().unwrap(), format!("query {question:?} --store {leann}"))
    };
    let hits = query("how long are deleted records retained?", &cache).ok().json();
    assert_eq!(hits["results"][0]["id"], "retention", "{hits:#}");
    assert_eq!(hits["query"]["model"], "sentence-transformers/all-MiniLM-L6-v2");
    // Without the model anywhere, the error names it and where it looked.
    query("anything", &env.path("empty-cache"))
        .code(2)
        .stderr_has("sentence-transformers/all-MiniLM-L6-v2");

    // A model whose vectors have another length is not the collection's.
    let small = env.store("parquet", "small");
    env.generate(&small, "tiny", 20, 8, &[]);
    env.ragged(&["query", "anything", "--store", &small, "--model", &model_arg])
        .code(2)
        .stderr_has("384-dimensional");
}
