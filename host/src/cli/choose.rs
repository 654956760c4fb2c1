//! Choosing a store: `backend benchmark`, `compare-storage`, `platform`, `recommend`, and the
//! top-level `query`.

use anyhow::{Context as _, Result, bail};
use clap::Args;
use ragged_plugin_api::{Access, DistanceMetric};

use super::backend::{OutputArgs, open_store, store_or_default};
use super::{EXIT_ERROR, EXIT_OK};
use crate::benchmark::{self, BackendResult, Workload, exact_neighbours};
use crate::context::Context;
use crate::corpus::Corpus;
use crate::output::{human_bytes, print_json, print_text, status};
use crate::platform;
use crate::records::collect_records;
use crate::select::{self, Preference};
use crate::store::{InStore, Store};

pub(crate) const BENCHMARK_EXAMPLES: &str = "Examples:
  ragged backend benchmark chroma lance leann parquet
  ragged backend benchmark chroma lance --corpus-size 10000 --queries 200 --dim 768 --plot bench.svg
  ragged backend benchmark lance leann --dataset chroma:./chroma_db --collection notes --json

Every backend gets the same records (a deterministic clustered corpus, or the first --corpus-size
records of --dataset) in a fresh store in a temporary directory, removed afterwards. Recall@10 is
measured against exact brute-force neighbours. INGEST MEM is how far the process's resident
memory rose during the load (Linux).";

pub(crate) const COMPARE_EXAMPLES: &str = "Examples:
  ragged backend compare-storage chroma:./chroma_db lance:./lancedb
  ragged backend compare-storage chroma:./chroma_db leann --json

A bare backend name (no location) is estimated: a sample of the first store's records is written
through that plugin in a temporary directory and its bytes per record scaled to the full count.";

pub(crate) const PLATFORM_EXAMPLES: &str = "Examples:
  ragged backend platform
  ragged backend platform --json";

pub(crate) const RECOMMEND_EXAMPLES: &str = "Examples:
  ragged backend recommend
  ragged backend recommend --max-storage 500
  ragged backend recommend --store chroma:./chroma_db --prefer speed --json

Sizes come from the store holding your data (measured) and from a sample of it written through
every other installed plugin (estimated); speed from querying that sample in each.";

pub(crate) const QUERY_EXAMPLES: &str = "Examples:
  ragged query \"how are backups made?\" --store chroma:./chroma_db -k 5
  ragged query \"retention period\" --store lance:./lancedb --model ./models/all-MiniLM-L6-v2 --json
  ragged query --store lance:./lancedb --collection notes --vector-of doc-00000042 -k 5

Query text is embedded with the collection's embedding model (the one its store records, or
--model), run natively: a sentence-transformers model directory, or a Hugging Face id found in the
offline Hugging Face cache (nothing is downloaded). --embedding-mode openai or ollama sends the text
to such a service instead (see docs/embedding.md). --vector-of queries with a stored record's
vector and needs no model.";

#[derive(Debug, Args)]
pub(crate) struct BenchmarkArgs {
    /// The backends (plugin names) to measure.
    #[arg(required = true, value_name = "BACKEND")]
    backends: Vec<String>,
    /// Records per backend.
    #[arg(long, default_value_t = 1000)]
    corpus_size: u64,
    /// Queries per backend.
    #[arg(long, default_value_t = 100)]
    queries: usize,
    /// Embedding dimension of the synthetic corpus.
    #[arg(long = "dim", default_value_t = 384)]
    dimension: u32,
    /// Metric of the synthetic corpus: l2, cosine or ip.
    #[arg(long, default_value = "cosine")]
    metric: DistanceMetric,
    /// Benchmark on this store's records instead of a synthetic corpus.
    #[arg(long, value_name = "STORE")]
    dataset: Option<String>,
    /// With --dataset: the collection (default: the store's first).
    #[arg(long, requires = "dataset")]
    collection: Option<String>,
    /// Seed of the synthetic corpus.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Also write an SVG bar chart here.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<std::path::PathBuf>,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Args)]
pub(crate) struct CompareStorageArgs {
    /// The store holding the data: BACKEND:LOCATION or a configured name.
    first: String,
    /// Another store, or a bare backend name to estimate.
    second: String,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Args)]
pub(crate) struct RecommendArgs {
    /// The store holding your data (default: the configured default store).
    #[arg(long)]
    store: Option<String>,
    /// The most disk the data may take, in MiB.
    #[arg(long, value_name = "MB")]
    max_storage: Option<u64>,
    /// What matters most.
    #[arg(long, value_enum)]
    prefer: Option<PreferArg>,
    #[command(flatten)]
    output: OutputArgs,
}

/// `--prefer` on the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum PreferArg {
    /// The fastest queries.
    Speed,
    /// The least disk.
    Storage,
}

#[derive(Debug, Args)]
pub(crate) struct QueryArgs {
    /// The query text, embedded with the collection's embedding model.
    text: Option<String>,
    /// The store (default: the configured default store).
    #[arg(long)]
    store: Option<String>,
    /// The collection (default: the store's only collection).
    #[arg(long)]
    collection: Option<String>,
    /// Query with the vector of the record with this id.
    #[arg(long, value_name = "ID", conflicts_with = "text", required_unless_present = "text")]
    vector_of: Option<String>,
    /// The embedding model for the query text: a model directory or a Hugging Face id (default:
    /// the model the collection records).
    #[arg(long, value_name = "MODEL", conflicts_with = "vector_of")]
    model: Option<String>,
    /// How the query text is embedded: sentence-transformers (native), openai or ollama.
    #[arg(
        long,
        value_name = "MODE",
        default_value = "sentence-transformers",
        conflicts_with = "vector_of"
    )]
    embedding_mode: String,
    /// Number of results.
    #[arg(short, default_value_t = 10)]
    k: u32,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn benchmark(ctx: &Context, args: BenchmarkArgs) -> Result<u8> {
    let workload = match &args.dataset {
        Some(dataset) => dataset_workload(ctx, dataset, args.collection.as_deref(), &args)?,
        None => {
            // Records past the corpus size come from the same clusters: held-out queries.
            let mut records = Corpus {
                records: args.corpus_size + args.queries as u64,
                dimension: args.dimension,
                clusters: 16,
                seed: args.seed,
                metric: args.metric,
            }
            .all_records();
            let queries = records
                .split_off(args.corpus_size as usize)
                .into_iter()
                .map(|r| r.embedding)
                .collect();
            Workload {
                description: format!(
                    "synthetic clustered corpus: {} records x {} dims, {}, seed {}",
                    args.corpus_size, args.dimension, args.metric, args.seed
                ),
                records,
                queries,
                dimension: args.dimension,
                metric: args.metric,
            }
        }
    };
    let truth: Vec<Vec<String>> = workload
        .queries
        .iter()
        .map(|q| exact_neighbours(&workload.records, q, workload.metric, benchmark::K as usize))
        .collect();
    let mut results = Vec::new();
    let mut failures = Vec::new();
    for backend in &args.backends {
        if !args.output.quiet && !args.output.json {
            status(&format!(
                "{backend}: {} records, {} queries...",
                workload.records.len(),
                workload.queries.len()
            ));
        }
        match benchmark::run_backend(ctx, backend, &workload, &truth) {
            Ok(result) => results.push(result),
            Err(error) => failures.push((backend.clone(), format!("{error:#}"))),
        }
    }
    if let Some(path) = &args.plot {
        std::fs::write(path, benchmark::svg_chart(&results)).with_context(|| format!("writing {}", path.display()))?;
    }
    if args.output.json {
        print_json(&serde_json::json!({
            "workload": workload.description,
            "records": workload.records.len(),
            "queries": workload.queries.len(),
            "results": results,
            "failures": failures.iter().map(|(b, e)| serde_json::json!({"backend": b, "error": e})).collect::<Vec<_>>(),
        }))?;
    } else {
        print_text(&benchmark_table(&workload, &results, &failures))?;
    }
    Ok(if failures.is_empty() { EXIT_OK } else { EXIT_ERROR })
}

fn benchmark_table(workload: &Workload, results: &[BackendResult], failures: &[(String, String)]) -> String {
    let mut text = format!(
        "{}; {} queries, k = {}\n",
        workload.description,
        workload.queries.len(),
        benchmark::K
    );
    text.push_str(&format!(
        "{:<10} {:>11} {:>10} {:>8} {:>8} {:>8} {:>8} {:>10} {:>9} {:>10} {:>11}\n",
        "BACKEND",
        "INGEST r/s",
        "INGEST MEM",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "QPS",
        "BATCH QPS",
        "RECALL",
        "STORAGE",
        "PER RECORD"
    ));
    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"));
    for r in results {
        text.push_str(&format!(
            "{:<10} {:>11.0} {:>10} {:>8} {:>8} {:>8} {:>8} {:>10} {:>9} {:>10} {:>11}\n",
            r.backend,
            r.ingest_records_per_second,
            r.ingest_memory_bytes.map_or_else(|| "-".to_owned(), human_bytes),
            ms(r.query.map(|q| q.p50_ms)),
            ms(r.query.map(|q| q.p95_ms)),
            ms(r.query.map(|q| q.p99_ms)),
            r.query.map_or_else(|| "-".to_owned(), |q| format!("{:.0}", q.qps)),
            r.batch_query
                .map_or_else(|| "-".to_owned(), |q| format!("{:.0}", q.qps)),
            r.recall_at_10.map_or_else(|| "-".to_owned(), |v| format!("{v:.3}")),
            r.storage_bytes.map_or_else(|| "-".to_owned(), human_bytes),
            r.bytes_per_record
                .map_or_else(|| "-".to_owned(), |b| human_bytes(b.round() as u64)),
        ));
        for note in &r.notes {
            text.push_str(&format!("  {}: {note}\n", r.backend));
        }
    }
    for (backend, error) in failures {
        text.push_str(&format!("{backend}: FAILED: {error}\n"));
    }
    text
}

/// Up to `--corpus-size` records of a user's collection, and `--queries` of their vectors.
fn dataset_workload(ctx: &Context, dataset: &str, collection: Option<&str>, args: &BenchmarkArgs) -> Result<Workload> {
    let store = open_store(ctx, dataset, &[], Access::ReadOnly)?;
    let name = match collection {
        Some(name) => name.to_owned(),
        None => store
            .backend
            .list_collections()
            .in_store(&store, "list collections")?
            .into_iter()
            .next()
            .with_context(|| format!("{dataset} holds no collection"))?,
    };
    let info = store
        .backend
        .describe(&name)
        .in_store(&store, &format!("describe '{name}'"))?;
    let records = collect_records(
        store
            .backend
            .sample(&name, args.corpus_size, args.seed)
            .in_store(&store, &format!("sample '{name}'"))?,
    )?;
    let queries = records.iter().take(args.queries).map(|r| r.embedding.clone()).collect();
    Ok(Workload {
        description: format!("{} records of '{name}' from {dataset}", records.len()),
        records,
        queries,
        dimension: info.dimension,
        metric: info.metric,
    })
}

pub(crate) fn compare_storage(ctx: &Context, args: CompareStorageArgs) -> Result<u8> {
    let first = open_store(ctx, &args.first, &[], Access::ReadOnly)?;
    let names = first.backend.list_collections().in_store(&first, "list collections")?;
    let select::StoreSample {
        records,
        bytes: first_bytes,
        samples,
    } = select::sample_store(&first, &names)?;
    let is_store = args.second.contains(':') || ctx.config.stores.contains_key(&args.second);
    let (second_label, second_bytes, estimated) = if is_store {
        let second = open_store(ctx, &args.second, &[], Access::ReadOnly)?;
        let mut bytes = 0;
        for name in second
            .backend
            .list_collections()
            .in_store(&second, "list collections")?
        {
            bytes += second
                .backend
                .storage(&name)
                .in_store(&second, &format!("measure '{name}'"))?
                .total_bytes;
        }
        (second.spec.to_string(), bytes, false)
    } else {
        let bytes = select::estimate_bytes(ctx, &args.second, &samples)
            .with_context(|| format!("could not write a sample through the {} plugin", args.second))?;
        (args.second.clone(), bytes, true)
    };
    let saving = 100.0 * (1.0 - second_bytes as f64 / first_bytes.max(1) as f64);
    if args.output.json {
        print_json(&serde_json::json!({
            "records": records,
            "first": { "store": first.spec.to_string(), "bytes": first_bytes },
            "second": { "store": second_label, "bytes": second_bytes, "estimated": estimated },
            "saving_percent": saving,
        }))?;
    } else {
        let per = |bytes: u64| human_bytes(bytes / records.max(1));
        print_text(&format!(
            "storage of {records} records\n{:<40} {:>11} ({} per record)\n{:<40} {:>11} ({} per record{})\n{}\n",
            first.spec.to_string(),
            human_bytes(first_bytes),
            per(first_bytes),
            second_label,
            human_bytes(second_bytes),
            per(second_bytes),
            if estimated { ", estimated from a sample" } else { "" },
            if second_bytes <= first_bytes {
                format!(
                    "{second_label} saves {} ({saving:.0}%)",
                    human_bytes(first_bytes - second_bytes)
                )
            } else {
                format!(
                    "{second_label} needs {} more ({:.0}%)",
                    human_bytes(second_bytes - first_bytes),
                    -saving
                )
            }
        ))?;
    }
    Ok(EXIT_OK)
}

pub(crate) fn platform(ctx: &Context, output: OutputArgs) -> Result<u8> {
    let found = platform::detect(ctx);
    if output.json {
        print_json(&found)?;
        return Ok(EXIT_OK);
    }
    let mut text = format!(
        "platform: {}-{}, {} CPUs ({})\nmemory: {} total, {} available\n",
        found.os,
        found.arch,
        found.cpus,
        if found.cpu_features.is_empty() {
            "no SIMD features detected".to_owned()
        } else {
            found.cpu_features.join(", ")
        },
        found
            .memory_total_bytes
            .map_or_else(|| "unknown".to_owned(), human_bytes),
        found
            .memory_available_bytes
            .map_or_else(|| "unknown".to_owned(), human_bytes),
    );
    for disk in &found.disks {
        text.push_str(&format!(
            "free disk at {}: {}\n",
            disk.store,
            disk.free_bytes.map_or_else(|| "unknown".to_owned(), human_bytes)
        ));
    }
    text.push_str("plugins:\n");
    for plugin in &found.plugins {
        text.push_str(&format!(
            "  {:<10} {:<12} platforms: {}{}\n",
            plugin.name,
            if plugin.usable { "usable" } else { "NOT usable" },
            plugin.platforms.join(", "),
            plugin.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default()
        ));
    }
    text.push_str(&format!("detected in {:.1} ms\n", found.detection_ms));
    print_text(&text)?;
    Ok(EXIT_OK)
}

pub(crate) fn recommend(ctx: &Context, args: RecommendArgs) -> Result<u8> {
    let spec = store_or_default(ctx, args.store, "--store")?;
    let store = open_store(ctx, &spec, &[], Access::ReadOnly)?;
    let found = platform::detect(ctx);
    if !args.output.quiet && !args.output.json {
        status("measuring your data in every installed store...");
    }
    let mut situation = select::measure(ctx, &store, &found, &spec)?;
    situation.max_storage = args.max_storage.map(|mb| mb * 1024 * 1024);
    situation.prefer = args.prefer.map(|p| match p {
        PreferArg::Speed => Preference::Speed,
        PreferArg::Storage => Preference::Storage,
    });
    let recommendation = select::recommend(&situation)?;
    if args.output.json {
        print_json(&serde_json::json!({ "situation": situation, "recommendation": recommendation }))?;
        return Ok(EXIT_OK);
    }
    let mut text = format!(
        "platform: {}-{}\ncurrent store: {} ({} records)\n",
        found.os, found.arch, situation.current, situation.records
    );
    for c in &situation.candidates {
        text.push_str(&format!(
            "  {:<10} {:>11}{}  query p50 {}\n",
            c.backend,
            human_bytes(c.bytes),
            if c.measured { " (measured) " } else { " (estimated)" },
            c.query_p50_ms.map_or_else(|| "-".to_owned(), |v| format!("{v:.2} ms"))
        ));
    }
    text.push_str(&format!(
        "recommended: {}{}\n",
        recommendation.backend,
        if recommendation.keep_current {
            " (keep the current store)"
        } else {
            ""
        }
    ));
    for reason in &recommendation.reasons {
        text.push_str(&format!("  - {reason}\n"));
    }
    if let Some(command) = &recommendation.command {
        text.push_str(&format!("to switch:\n  {command}\n"));
    }
    print_text(&text)?;
    Ok(EXIT_OK)
}

pub(crate) fn query(ctx: &Context, args: QueryArgs) -> Result<u8> {
    let spec = store_or_default(ctx, args.store, "--store")?;
    let store = open_store(ctx, &spec, &[], Access::ReadOnly)?;
    let collection = match args.collection {
        Some(name) => name,
        None => only_collection(&store)?,
    };
    let (vector, query) = match (&args.text, &args.vector_of) {
        (_, Some(id)) => {
            let found = collect_records(
                store
                    .backend
                    .fetch(&collection, std::slice::from_ref(id))
                    .in_store(&store, &format!("fetch from '{collection}'"))?,
            )?;
            let Some(record) = found.into_iter().next() else {
                bail!("{spec}: collection '{collection}' has no record '{id}'");
            };
            (record.embedding, serde_json::json!({ "vector_of": id }))
        }
        (Some(text), None) => {
            let info = store
                .backend
                .describe(&collection)
                .in_store(&store, &format!("describe '{collection}'"))?;
            let Some(model) = args.model.clone().or(info.embedding_model) else {
                bail!(
                    "{spec}: collection '{collection}' records no embedding model; name the one its vectors came from with --model (a model directory or a Hugging Face id), or query with --vector-of ID"
                );
            };
            let embedder = ragged_embed::embedder_for(&args.embedding_mode, &model, &serde_json::Map::new())
                .with_context(|| format!("loading the embedding model '{model}'"))?;
            let vector = embedder
                .embed(&[text.as_str()])
                .with_context(|| format!("embedding the query with {}", embedder.describe()))?
                .pop()
                .context("the embedder returned no vector")?;
            if vector.len() != info.dimension as usize {
                bail!(
                    "{} gives {}-dimensional vectors, but collection '{collection}' in {spec} holds {}-dimensional ones: not the model its vectors came from (pass the right one with --model)",
                    embedder.describe(),
                    vector.len(),
                    info.dimension
                );
            }
            (
                vector,
                serde_json::json!({ "text": text, "model": model, "embedding_mode": args.embedding_mode }),
            )
        }
        (None, None) => bail!("give the query text, or --vector-of ID"),
    };
    let hits = store
        .backend
        .query(&collection, &vector, args.k)
        .in_store(&store, &format!("query '{collection}'"))?;
    let ids: Vec<String> = hits.iter().map(|h| h.id.clone()).collect();
    let records = collect_records(
        store
            .backend
            .fetch(&collection, &ids)
            .in_store(&store, &format!("fetch from '{collection}'"))?,
    )?;
    let document = |id: &str| records.iter().find(|r| r.id == id).and_then(|r| r.document.clone());
    if args.json {
        let results: Vec<_> = hits
            .iter()
            .map(|h| serde_json::json!({ "id": h.id, "distance": h.distance, "document": document(&h.id) }))
            .collect();
        print_json(
            &serde_json::json!({ "store": spec, "collection": collection, "query": query, "results": results }),
        )?;
    } else {
        let mut text = String::new();
        for (rank, hit) in hits.iter().enumerate() {
            let mut doc = document(&hit.id).unwrap_or_default().replace('\n', " ");
            if doc.chars().count() > 80 {
                doc = doc.chars().take(77).collect::<String>() + "...";
            }
            text.push_str(&format!(
                "{:>3}. {:<20} {:>10.6}  {doc}\n",
                rank + 1,
                hit.id,
                hit.distance
            ));
        }
        print_text(&text)?;
    }
    Ok(EXIT_OK)
}

fn only_collection(store: &Store) -> Result<String> {
    let names = store.backend.list_collections().in_store(store, "list collections")?;
    match names.as_slice() {
        [only] => Ok(only.clone()),
        [] => bail!("{} holds no collection", store.spec),
        _ => bail!(
            "{} holds several collections ({}); name one with --collection",
            store.spec,
            names.join(", ")
        ),
    }
}
