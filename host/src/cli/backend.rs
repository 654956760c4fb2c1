//! `ragged backend ...`: migrate, verify, collections, generate.

use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};
use ragged_plugin_api::arrow::canonical_schema;
use ragged_plugin_api::{Access, BatchStream, CollectionInfo, DistanceMetric, LoadMode, LoadRequest};

use super::{EXIT_FINDINGS, EXIT_OK};
use crate::config::MigrationSettings;
use crate::context::Context;
use crate::corpus::Corpus;
use crate::output::{print_json, print_text, status};
use crate::store::{InStore, Store, parse_options};
use crate::verify::{self, CollectionVerification, Tolerance, VerifyOptions};

#[derive(Debug, Subcommand)]
pub(crate) enum BackendCommand {
    /// Copy collections from one store to another, then verify every record.
    #[command(after_help = super::migrate::EXAMPLES)]
    Migrate(super::migrate::MigrateArgs),
    /// Bring a store up to date with another: only what was added, changed or deleted since the last sync.
    #[command(after_help = super::sync::SYNC_EXAMPLES)]
    Sync(super::sync::SyncArgs),
    /// Final sync, verification, then make the target the default store (refused when they differ).
    #[command(after_help = super::sync::CUTOVER_EXAMPLES)]
    Cutover(super::sync::CutoverArgs),
    /// Restore the target of a migration to its state before that migration.
    #[command(after_help = super::backups::ROLLBACK_EXAMPLES)]
    Rollback(super::backups::RollbackArgs),
    /// List or clean the backups migrations took.
    #[command(
        subcommand,
        after_help = "Examples:\n  ragged backend backups list\n  ragged backend backups clean --keep-latest 3"
    )]
    Backups(super::backups::BackupsCommand),
    /// Set the default store, globally or for a persona.
    #[command(
        after_help = "Examples:\n  ragged backend set lance:./lancedb --global\n  ragged backend set chroma --persona researcher"
    )]
    Set {
        /// The store: BACKEND:LOCATION or a configured store name.
        store: String,
        /// Set it for this persona.
        #[arg(long, conflicts_with = "global", required_unless_present = "global")]
        persona: Option<String>,
        /// Set the global default.
        #[arg(long)]
        global: bool,
    },
    /// Show the default store, globally or for a persona.
    #[command(after_help = "Examples:\n  ragged backend current\n  ragged backend current --persona researcher --json")]
    Current {
        /// The persona (falls back to the global default).
        #[arg(long)]
        persona: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check that two stores hold the same collections: counts, ids, records, query results.
    #[command(after_help = VERIFY_EXAMPLES)]
    Verify {
        /// The reference store (BACKEND:LOCATION or a configured store name).
        source: String,
        /// The store checked against it.
        target: String,
        /// Verify only this collection (repeatable; default: all of the reference store's).
        #[arg(long = "collection", value_name = "NAME")]
        collections: Vec<String>,
        #[command(flatten)]
        checks: VerifyArgs,
        #[command(flatten)]
        options: StoreOptionArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Show the bytes each collection of a store occupies: vectors, documents, index, total.
    #[command(after_help = super::stores::STORAGE_EXAMPLES)]
    StorageInfo(super::stores::StorageInfoArgs),
    /// Remove collections from a store (after a migration), backing the store up first.
    #[command(after_help = super::stores::CLEANUP_EXAMPLES)]
    Cleanup(super::stores::CleanupArgs),
    /// Measure stores on the same records: ingest, query latency and QPS, recall@10, storage.
    #[command(after_help = super::choose::BENCHMARK_EXAMPLES)]
    Benchmark(super::choose::BenchmarkArgs),
    /// Compare the bytes two stores need for the same data (estimating a bare backend name).
    #[command(after_help = super::choose::COMPARE_EXAMPLES)]
    CompareStorage(super::choose::CompareStorageArgs),
    /// Show this machine (OS, CPU, memory, free disk) and which plugins work on it.
    #[command(after_help = super::choose::PLATFORM_EXAMPLES)]
    Platform {
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Recommend a store for your data, from measured sizes and speed, with the command to switch.
    #[command(after_help = super::choose::RECOMMEND_EXAMPLES)]
    Recommend(super::choose::RecommendArgs),
    /// List a store's collections with their dimension, metric and count.
    #[command(
        after_help = "Examples:\n  ragged backend collections chroma:./chroma_db\n  ragged backend collections parquet:./export --json"
    )]
    Collections {
        /// The store, as BACKEND:LOCATION or a configured store name.
        store: String,
        /// Store option KEY=VALUE (repeatable).
        #[arg(long = "option", value_name = "KEY=VALUE")]
        options: Vec<String>,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Write a deterministic synthetic collection (clustered vectors, documents, typed metadata).
    #[command(
        after_help = "Examples:\n  ragged backend generate parquet:./demo --collection notes --records 1000 --dim 384\n  \
        ragged backend generate chroma:./chroma_db --collection faq --records 50000 --metric cosine --seed 7"
    )]
    Generate {
        /// The store to write, as BACKEND:LOCATION or a configured store name.
        store: String,
        /// The collection to create.
        #[arg(long, default_value = "demo")]
        collection: String,
        /// Number of records.
        #[arg(long, default_value_t = 1000)]
        records: u64,
        /// Embedding dimension.
        #[arg(long = "dim", default_value_t = 384)]
        dimension: u32,
        /// Distance metric: l2, cosine or ip.
        #[arg(long, default_value = "cosine")]
        metric: DistanceMetric,
        /// Seed of the generator.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Store option KEY=VALUE (repeatable).
        #[arg(long = "option", value_name = "KEY=VALUE")]
        options: Vec<String>,
        #[command(flatten)]
        output: OutputArgs,
    },
}

const VERIFY_EXAMPLES: &str = "Examples:
  ragged backend verify chroma:./chroma_db lance:./lancedb
  ragged backend verify chroma:./chroma_db lance:./lancedb --sample-rate 0.1 --queries 20
  ragged backend verify parquet:./export chroma:./chroma_db --collection notes --full --json

Counts, dimension, metric and the id sets are always compared in full. Record content (vectors,
documents, typed metadata) is compared for every record (--full) or for a random sample
(--sample-rate), and sampled vectors are queried in both stores (--queries).

Exit code 0 when everything matches, 1 when something differs.";

/// Store options for the two stores of a command.
#[derive(Debug, Args)]
pub(crate) struct StoreOptionArgs {
    /// Option for the source store, KEY=VALUE (repeatable).
    #[arg(long = "source-option", value_name = "KEY=VALUE")]
    pub(crate) source_options: Vec<String>,
    /// Option for the target store, KEY=VALUE (repeatable).
    #[arg(long = "target-option", value_name = "KEY=VALUE")]
    pub(crate) target_options: Vec<String>,
}

/// Opens a store named on the command line (BACKEND:LOCATION or a configured name), with the
/// configured options overridden by `cli_options`.
pub(crate) fn open_store(ctx: &Context, name: &str, cli_options: &[String], access: Access) -> Result<Store> {
    let (spec, mut options) = ctx.config.resolve_store(name)?;
    options.extend(parse_options(cli_options)?);
    Store::open(ctx, &spec, &options, access)
}

/// The store named on the command line, or the configured default store; `flag` names the
/// argument in the error when neither is there.
pub(crate) fn store_or_default(ctx: &Context, store: Option<String>, flag: &str) -> Result<String> {
    match store {
        Some(store) => Ok(store),
        None => Ok(ctx
            .config
            .current_store(None)
            .with_context(|| format!("no {flag} given and no default store set (`ragged backend set STORE --global`)"))?
            .0),
    }
}

/// What a verification compares and how strictly.
#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// Require vectors and metadata floats to match bit for bit. By default what a store keeps
    /// only approximately (Chroma: cosine vectors, some doubles) matches within cosine distance
    /// 1e-6 and 1 ulp, and is reported as approximate.
    #[arg(long)]
    exact: bool,
    /// Compare every record (through content digests), whatever the collection's size.
    #[arg(long, conflicts_with = "sample_rate")]
    full: bool,
    /// Compare this fraction of the records, chosen at random (counts and id sets are always
    /// checked in full). Default: migration.verification_sample_rate (0.1) for collections of
    /// migration.full_verify_threshold (100000) records or more, every record below that.
    #[arg(long, value_name = "R", value_parser = parse_fraction)]
    sample_rate: Option<f64>,
    /// Query this many sampled vectors in both stores and compare their top-10 ids (0: skip).
    #[arg(long, value_name = "N", default_value_t = 10)]
    queries: u32,
    /// The query check fails when the mean top-10 overlap is below this fraction (approximate
    /// indexes rarely agree on every neighbour; a lost metric or a broken index falls far below).
    #[arg(long, value_name = "F", default_value_t = 0.5, value_parser = parse_fraction)]
    min_overlap: f64,
    /// Seed of the samples (default: random; every report gives the seed it used).
    #[arg(long)]
    seed: Option<u64>,
}

impl VerifyArgs {
    pub(crate) fn options(&self, settings: &MigrationSettings) -> VerifyOptions {
        let tolerance = if self.exact {
            Tolerance::EXACT
        } else {
            Tolerance::default()
        };
        let (sample_rate, full_below) = match (self.full, self.sample_rate) {
            (true, _) => (None, 0),
            (false, Some(rate)) => (Some(rate), 0),
            (false, None) => (Some(settings.verification_sample_rate), settings.full_verify_threshold),
        };
        VerifyOptions {
            tolerance,
            sample_rate,
            full_below,
            queries: self.queries,
            min_overlap: self.min_overlap,
            seed: self.seed.unwrap_or_else(random_seed),
        }
    }
}

fn parse_fraction(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if value > 0.0 && value <= 1.0 => Ok(value),
        _ => Err(format!("'{text}' is not a fraction in (0, 1], for example 0.1")),
    }
}

/// A seed from the standard library's per-process random keys (no RNG crate needed for one number).
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new().build_hasher().finish()
}

/// How results are shown.
#[derive(Debug, Args)]
pub(crate) struct OutputArgs {
    /// Print a JSON report on stdout instead of text.
    #[arg(long)]
    pub(crate) json: bool,
    /// No progress output.
    #[arg(long, short)]
    pub(crate) quiet: bool,
}

pub(crate) fn exec(ctx: &Context, command: BackendCommand) -> Result<u8> {
    match command {
        BackendCommand::Migrate(args) => super::migrate::exec(ctx, args),
        BackendCommand::Sync(args) => super::sync::sync(ctx, args),
        BackendCommand::Cutover(args) => super::sync::cutover(ctx, args),
        BackendCommand::Rollback(args) => super::backups::rollback(ctx, args),
        BackendCommand::Backups(command) => super::backups::exec(ctx, command),
        BackendCommand::StorageInfo(args) => super::stores::storage_info(ctx, args),
        BackendCommand::Cleanup(args) => super::stores::cleanup(ctx, args),
        BackendCommand::Benchmark(args) => super::choose::benchmark(ctx, args),
        BackendCommand::CompareStorage(args) => super::choose::compare_storage(ctx, args),
        BackendCommand::Platform { output } => super::choose::platform(ctx, output),
        BackendCommand::Recommend(args) => super::choose::recommend(ctx, args),
        BackendCommand::Set {
            store,
            persona,
            global: _,
        } => {
            // Resolving checks that the name means a store before it is written down.
            let (spec, _) = ctx.config.resolve_store(&store)?;
            let mut config = ctx.config.clone();
            config.set_default_store(&store, persona.as_deref());
            config.save(&ctx.config_path())?;
            let scope = persona
                .map(|p| format!("persona {p}"))
                .unwrap_or_else(|| "the global default".to_owned());
            status(&format!(
                "{store} ({spec}) is now {scope} (in {})",
                ctx.config_path().display()
            ));
            Ok(EXIT_OK)
        }
        BackendCommand::Current { persona, json } => {
            let current = ctx.config.current_store(persona.as_deref());
            let resolved = current
                .as_ref()
                .map(|(store, _)| ctx.config.resolve_store(store))
                .transpose()?;
            if json {
                print_json(&serde_json::json!({
                    "store": current.as_ref().map(|(store, _)| store),
                    "from": current.as_ref().map(|(_, from)| from),
                    "spec": resolved.as_ref().map(|(spec, _)| spec.to_string()),
                }))?;
            } else {
                match (&current, &resolved) {
                    (Some((store, from)), Some((spec, _))) => print_text(&format!("{store} ({spec}), {from}\n"))?,
                    _ => print_text(&format!(
                        "no default store set; set one with `ragged backend set STORE --global` ({})\n",
                        ctx.config_path().display()
                    ))?,
                }
            }
            Ok(EXIT_OK)
        }
        BackendCommand::Verify {
            source,
            target,
            collections,
            checks,
            options,
            output,
        } => {
            let source = open_store(ctx, &source, &options.source_options, Access::ReadOnly)?;
            let target = open_store(ctx, &target, &options.target_options, Access::ReadOnly)?;
            let names = if collections.is_empty() {
                source
                    .backend
                    .list_collections()
                    .in_store(&source, "list collections")?
            } else {
                collections
            };
            let verify_options = checks.options(&ctx.config.migration);
            let results = names
                .iter()
                .map(|name| verify::compare_collection(&source, &target, name, &verify_options))
                .collect::<Result<Vec<_>>>()?;
            let ok = results.iter().all(|r| r.ok);
            if output.json {
                print_json(&serde_json::json!({ "ok": ok, "collections": results }))?;
            } else {
                let mut text = String::new();
                for r in &results {
                    text.push_str(&format!(
                        "{}: {} vs {} records, {}\n",
                        r.name,
                        r.source_count,
                        r.target_count,
                        verification_summary(r)
                    ));
                    for mismatch in &r.first_mismatches {
                        text.push_str(&format!("  {mismatch}\n"));
                    }
                }
                print_text(&text)?;
            }
            Ok(if ok { EXIT_OK } else { EXIT_FINDINGS })
        }
        BackendCommand::Collections { store, options, output } => {
            let store = open_store(ctx, &store, &options, Access::ReadOnly)?;
            let names = store.backend.list_collections().in_store(&store, "list collections")?;
            let infos = names
                .iter()
                .map(|name| {
                    store
                        .backend
                        .describe(name)
                        .in_store(&store, &format!("describe '{name}'"))
                })
                .collect::<Result<Vec<CollectionInfo>>>()?;
            if output.json {
                print_json(&infos)?;
            } else {
                let mut text = format!("{:<24} {:>10} {:>6} {:<7}\n", "COLLECTION", "RECORDS", "DIM", "METRIC");
                for info in &infos {
                    text.push_str(&format!(
                        "{:<24} {:>10} {:>6} {:<7}\n",
                        info.name, info.count, info.dimension, info.metric
                    ));
                }
                print_text(&text)?;
            }
            Ok(EXIT_OK)
        }
        BackendCommand::Generate {
            store,
            collection,
            records,
            dimension,
            metric,
            seed,
            options,
            output,
        } => {
            let store = open_store(ctx, &store, &options, Access::ReadWrite)?;
            let corpus = Corpus {
                records,
                dimension,
                clusters: 16,
                seed,
                metric,
            };
            let info = CollectionInfo {
                name: collection.clone(),
                dimension,
                metric,
                count: records,
                embedding_model: None,
                index_params: None,
                metadata: serde_json::Map::from_iter([("generator".to_owned(), serde_json::json!("ragged"))]),
                extras: serde_json::Map::new(),
            };
            let reader =
                arrow_array::RecordBatchIterator::new(corpus.batches(0, 1000).map(Ok), canonical_schema(dimension));
            let request = LoadRequest {
                collection: info,
                mode: LoadMode::Create,
            };
            let summary = store
                .backend
                .load(&request, BatchStream::from_reader(reader))
                .in_store(&store, &format!("load '{collection}'"))?;
            if output.json {
                print_json(
                    &serde_json::json!({ "store": store.spec.to_string(), "collection": collection, "records": summary.records_written }),
                )?;
            } else if !output.quiet {
                status(&format!(
                    "wrote {} records to {} in {}",
                    summary.records_written, collection, store.spec
                ));
            }
            Ok(EXIT_OK)
        }
    }
}

/// One line about a collection's verification.
pub(crate) fn verification_summary(v: &CollectionVerification) -> String {
    let (scope, verb) = match v.sample_rate {
        Some(rate) => (
            format!("{} sampled records ({:.0}%, seed {})", v.compared, rate * 100.0, v.seed),
            "match",
        ),
        None => ("every record".to_owned(), "matches"),
    };
    let queries = match &v.queries {
        Some(q) if q.skipped.is_none() => format!(
            "; {} queries: mean top-{} overlap {:.2}, lowest {:.2}",
            q.queries, q.k, q.mean_overlap, q.min_overlap
        ),
        Some(q) => format!("; queries skipped: {}", q.skipped.as_deref().unwrap_or_default()),
        None => String::new(),
    };
    if !v.ok {
        let mut problems = vec![format!(
            "{} missing, {} extra, {} different of {scope}",
            v.missing, v.extra, v.records.different
        )];
        if !v.description_matches {
            problems.push("dimension or metric differ".to_owned());
        }
        if v.queries.as_ref().is_some_and(|q| !q.ok) {
            problems.push("query results disagree".to_owned());
        }
        return format!(
            "VERIFICATION FAILED: {}{queries} ({})",
            problems.join("; "),
            v.first_mismatches.join(", ")
        );
    }
    let ids = if v.sample_rate.is_some() {
        "counts and ids match, "
    } else {
        ""
    };
    if v.records.approximate == 0 {
        return format!("verified: {ids}{scope} {verb}{queries}");
    }
    let mut how = Vec::new();
    if v.records.inexact_vectors > 0 {
        let distance = v
            .vector_similarity
            .map(|s| format!(", largest cosine distance {:.1e}", 1.0 - s.min))
            .unwrap_or_default();
        how.push(format!("{} vectors not bit-exact{distance}", v.records.inexact_vectors));
    }
    if v.records.rounded_floats > 0 {
        how.push(format!(
            "{} with a metadata float rounded by 1 ulp",
            v.records.rounded_floats
        ));
    }
    format!(
        "verified: {ids}{scope} {verb} ({} exact; {} approximate: {}){queries}",
        v.records.exact,
        v.records.approximate,
        how.join("; ")
    )
}
