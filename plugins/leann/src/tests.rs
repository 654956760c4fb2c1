//! Tests of the store as the host sees it, through the real plugin boundary.

use std::collections::BTreeMap;
use std::path::Path;

use ragged_plugin_api::arrow::{batch_to_records, canonical_schema, records_to_batch};
use ragged_plugin_api::testing::open_through_ffi;
use ragged_plugin_api::{
    Access, Backend, BatchStream, CollectionInfo, DistanceMetric, ErrorCode, ExtractRequest, LoadMode, LoadRequest,
    OpenRequest, Record,
};

use super::*;
use crate::recompute::fake;

fn open(location: &Path, access: Access, options: &[(&str, &str)]) -> Box<dyn Backend> {
    try_open(location, access, options).expect("opens")
}

fn try_open(location: &Path, access: Access, options: &[(&str, &str)]) -> Result<Box<dyn Backend>, PluginError> {
    open_through_ffi::<LeannStore>(&OpenRequest {
        location: location.display().to_string(),
        options: options
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<BTreeMap<_, _>>(),
        access,
    })
}

fn info(name: &str, dimension: u32, metric: DistanceMetric) -> CollectionInfo {
    CollectionInfo {
        name: name.to_owned(),
        dimension,
        metric,
        count: 0,
        embedding_model: None,
        index_params: None,
        metadata: serde_json::Map::new(),
        extras: serde_json::Map::new(),
    }
}

/// Deterministic pseudo-random records in a few clusters.
fn records(n: usize, dimension: usize, seed: u64) -> Vec<Record> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let center = (i % 5) as f32 * 3.0;
            Record {
                id: format!("r{i:04}"),
                document: Some(format!("document number {i}")),
                metadata: Some(format!(r#"{{"i":{i},"half":{}.5,"even":{}}}"#, i / 2, i % 2 == 0)),
                embedding: (0..dimension)
                    .map(|_| center + rng.random_range(-1.0f32..1.0))
                    .collect(),
            }
        })
        .collect()
}

fn stream(records: &[Record], dimension: u32) -> BatchStream {
    let batches = records
        .chunks(50)
        .map(|chunk| records_to_batch(chunk, dimension).expect("batch"))
        .collect();
    BatchStream::from_batches(canonical_schema(dimension), batches)
}

fn load(
    store: &dyn Backend,
    collection: &CollectionInfo,
    mode: LoadMode,
    records: &[Record],
) -> Result<u64, PluginError> {
    store
        .load(
            &LoadRequest {
                collection: collection.clone(),
                mode,
            },
            stream(records, collection.dimension),
        )
        .map(|summary| summary.records_written)
}

fn collect(stream: BatchStream) -> Vec<Record> {
    let mut out = Vec::new();
    for batch in stream.into_reader().expect("reader") {
        out.extend(batch_to_records(&batch.expect("batch")).expect("records"));
    }
    out
}

fn extract(store: &dyn Backend, name: &str) -> Vec<Record> {
    collect(store.extract(name, &ExtractRequest::records(33, 0)).expect("extracts"))
}

/// A record's fields with canonical metadata and the embedding's bits.
type Comparable = (String, Option<String>, Option<String>, Vec<u32>);

fn bits(records: &[Record]) -> Vec<Comparable> {
    records
        .iter()
        .map(|r| {
            (
                r.id.clone(),
                r.document.clone(),
                // Stores may reorder keys; compare metadata canonically.
                r.metadata
                    .as_deref()
                    .map(|m| serde_json::from_str::<serde_json::Value>(m).expect("json").to_string()),
                r.embedding.iter().map(|x| x.to_bits()).collect(),
            )
        })
        .collect()
}

#[test]
fn every_metric_round_trips_exactly_and_finds_each_record_first() {
    for metric in [DistanceMetric::L2, DistanceMetric::Ip, DistanceMetric::Cosine] {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = open(dir.path(), Access::ReadWrite, &[]);
        let mut input = records(300, 8, 3);
        input[1].document = None;
        input[2].document = Some(String::new());
        input[3].metadata = None;
        input[4].id = "ünïcödé 🦀 \u{2028}".into();
        let collection = info("c", 8, metric);
        assert_eq!(
            load(&*store, &collection, LoadMode::Create, &input).expect("loads"),
            300
        );
        assert_eq!(bits(&extract(&*store, "c")), bits(&input), "{metric}");
        let described = store.describe("c").expect("describes");
        assert_eq!(
            (described.dimension, described.metric, described.count),
            (8, metric, 300)
        );
        assert_eq!(described.extras.get("leann_shape"), Some(&serde_json::json!("full")));
        for record in input.iter().step_by(13) {
            let hits = store.query("c", &record.embedding, 5).expect("queries");
            // The true nearest record (itself, except under ip where longer vectors can win).
            let best = input
                .iter()
                .min_by(|a, b| {
                    let da = metric.distance(&record.embedding, &a.embedding);
                    da.total_cmp(&metric.distance(&record.embedding, &b.embedding))
                })
                .expect("records");
            assert_eq!(hits[0].id, best.id, "{metric}");
            let exact = metric.distance(&record.embedding, &best.embedding);
            assert!(
                (hits[0].distance - exact).abs() < 1e-4 * exact.abs().max(1.0),
                "{metric}: {hits:?}"
            );
            assert!(hits.windows(2).all(|w| w[0].distance <= w[1].distance));
        }
        let paths = IndexPaths::cli(dir.path(), "c").expect("paths");
        let originals = paths.dir.join(paths.originals_name());
        assert_eq!(originals.exists(), metric == DistanceMetric::Cosine, "{metric}");
    }
}

#[test]
fn the_files_are_where_leann_cli_looks_for_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(dir.path(), Access::ReadWrite, &[]);
    load(
        &*store,
        &info("docs", 4, DistanceMetric::L2),
        LoadMode::Create,
        &records(10, 4, 1),
    )
    .expect("loads");
    let index_dir = dir.path().join(".leann/indexes/docs");
    let mut names: Vec<String> = fs::read_dir(&index_dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "documents.ids.txt",
            "documents.index",
            "documents.leann.meta.json",
            "documents.leann.passages.idx",
            "documents.leann.passages.jsonl",
            "ragged-write.lock"
        ]
    );
    let mut files = store.files("docs").expect("files");
    files.sort();
    assert_eq!(files.len(), 5);
    assert!(files.iter().all(|f| Path::new(f).starts_with(&index_dir)));
    let ids = fs::read_to_string(index_dir.join("documents.ids.txt")).expect("ids");
    assert_eq!(ids.lines().next(), Some("r0000"));
}

#[test]
fn modes_follow_the_interface() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(dir.path(), Access::ReadWrite, &[]);
    let collection = info("c", 4, DistanceMetric::L2);
    let error = load(&*store, &collection, LoadMode::Append, &records(3, 4, 1)).expect_err("missing");
    assert_eq!(error.code, ErrorCode::NotFound);
    assert!(
        !dir.path().join(".leann/indexes/c").exists(),
        "a refused load leaves nothing"
    );
    load(&*store, &collection, LoadMode::Upsert, &records(20, 4, 1)).expect("creates");
    let error = load(&*store, &collection, LoadMode::Create, &records(3, 4, 1)).expect_err("exists");
    assert_eq!(error.code, ErrorCode::AlreadyExists);
    // Appending replaces by id in place and adds new ids at the end.
    let mut more = records(25, 4, 2)[15..].to_vec();
    more[0].document = Some("replaced".into());
    load(&*store, &collection, LoadMode::Append, &more).expect("appends");
    let all = extract(&*store, "c");
    assert_eq!(all.len(), 25);
    assert_eq!(all[15].id, "r0015");
    assert_eq!(all[15].document.as_deref(), Some("replaced"));
    assert_eq!(bits(&all[15..]), bits(&more));
    assert_eq!(bits(&all[..15]), bits(&records(20, 4, 1)[..15]));
    // The append grew the graph (record 15 got a new vector, so this one was rebuilt); a
    // checkpointed migration's appends of new ids grow it in place. Either way it finds everything.
    let grown = records(60, 4, 3)[25..].to_vec();
    load(&*store, &collection, LoadMode::Append, &grown).expect("appends");
    for record in all.iter().chain(&grown) {
        assert_eq!(
            store.query("c", &record.embedding, 1).expect("queries")[0].id,
            record.id
        );
    }
    let all = extract(&*store, "c");
    assert_eq!(all.len(), 60);
    assert_eq!(bits(&all[25..]), bits(&grown));
    // A repeated id within one load: the last version wins.
    let mut twice = records(2, 4, 9);
    twice[1].id = twice[0].id.clone();
    load(&*store, &collection, LoadMode::Upsert, &twice).expect("upserts");
    let got = collect(store.fetch("c", &[twice[0].id.clone()]).expect("fetches"));
    assert_eq!(bits(&got), bits(&twice[1..]));
    assert_eq!(store.count("c").expect("count"), 60);
    // Another metric or dimension is refused without changing anything.
    let error = load(&*store, &info("c", 4, DistanceMetric::Ip), LoadMode::Append, &more).expect_err("metric");
    assert_eq!(error.code, ErrorCode::InvalidInput);
    assert!(
        error.message.contains("has dimension 4 and metric l2"),
        "{}",
        error.message
    );
    assert_eq!(store.count("c").expect("count"), 60);
}

#[test]
fn refused_records_change_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(dir.path(), Access::ReadWrite, &[]);
    let collection = info("c", 4, DistanceMetric::L2);
    load(&*store, &collection, LoadMode::Create, &records(10, 4, 1)).expect("loads");
    let before = bits(&extract(&*store, "c"));
    for (id, metadata, why) in [
        ("a\nb", None, "contains a line break"),
        ("a\rb", None, "contains a line break"),
        ("ok", Some(r#"{"x": null}"#), "'x' is null"),
    ] {
        let mut bad = records(60, 4, 5);
        bad[55].id = id.to_owned();
        bad[55].metadata = metadata.map(str::to_owned);
        let error = load(&*store, &collection, LoadMode::Upsert, &bad).expect_err(why);
        assert_eq!(error.code, ErrorCode::InvalidInput);
        assert!(error.message.contains(why), "{}", error.message);
        assert_eq!(bits(&extract(&*store, "c")), before);
        let staging = dir.path().join(".leann/indexes/c").join(layout::STAGING_DIR);
        assert!(!staging.exists(), "the failed load removed its staged batches");
    }
}

#[test]
fn an_interrupted_load_is_resumed_by_the_next_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = records(40, 4, 1);
    // What a crash after the first staged batch leaves behind.
    let paths = IndexPaths::cli(dir.path(), "c").expect("paths");
    let staging = staging::Staging::open(
        paths.staging_dir(),
        staging::StagingInfo {
            dimension: 4,
            metric: DistanceMetric::L2,
        },
    )
    .expect("staging");
    staging.append(&input[..25], 4).expect("stages");
    fs::write(paths.staging_dir().join("0000000002.tmp"), b"half a batch").expect("write");
    let store = open(dir.path(), Access::ReadWrite, &[]);
    assert!(store.list_collections().expect("lists").is_empty());
    // The resumed load sends from record 20 on; the index gets everything once.
    load(
        &*store,
        &info("c", 4, DistanceMetric::L2),
        LoadMode::Create,
        &input[20..],
    )
    .expect("loads");
    assert_eq!(bits(&extract(&*store, "c")), bits(&input));
    assert!(!paths.staging_dir().exists());
}

#[test]
fn read_only_changes_nothing_and_refuses_writes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(dir.path(), Access::ReadWrite, &[]);
    load(
        &*store,
        &info("c", 4, DistanceMetric::L2),
        LoadMode::Create,
        &records(5, 4, 1),
    )
    .expect("loads");
    let reader = open(dir.path(), Access::ReadOnly, &[]);
    let error = load(
        &*reader,
        &info("c", 4, DistanceMetric::L2),
        LoadMode::Upsert,
        &records(1, 4, 1),
    )
    .expect_err("ro");
    assert_eq!(error.code, ErrorCode::ReadOnly);
    assert_eq!(reader.drop_collection("c").expect_err("ro").code, ErrorCode::ReadOnly);
    let error = try_open(&dir.path().join("missing"), Access::ReadOnly, &[])
        .err()
        .expect("missing");
    assert_eq!(error.code, ErrorCode::NotFound);
    assert!(!dir.path().join("missing").exists());
}

#[test]
fn options_are_checked() {
    let dir = tempfile::tempdir().expect("temp dir");
    let error = try_open(dir.path(), Access::ReadWrite, &[("shpae", "full")])
        .err()
        .expect("typo");
    assert_eq!(
        error.message,
        "unknown option 'shpae' for the leann store (known options: shape, model, m, ef_construction, ef_search, seed)"
    );
    let error = try_open(dir.path(), Access::ReadWrite, &[("shape", "pruned")])
        .err()
        .expect("bad");
    assert!(error.message.contains("expected full or compact"), "{}", error.message);
    let error = try_open(dir.path(), Access::ReadWrite, &[("m", "1")])
        .err()
        .expect("bad m");
    assert_eq!(
        error.message,
        "option 'm' must be a whole number from 2 to 512, not '1'"
    );
}

#[test]
fn the_model_option_and_the_collection_model_end_up_in_meta() {
    let dir = tempfile::tempdir().expect("temp dir");
    let model_of = |store: &dyn Backend, name: &str| {
        let text = fs::read_to_string(
            dir.path()
                .join(format!(".leann/indexes/{name}/documents.leann.meta.json")),
        )
        .expect("meta");
        let value: serde_json::Value = serde_json::from_str(&text).expect("json");
        (
            value["embedding_model"].as_str().map(str::to_owned),
            store.describe(name).expect("describes").embedding_model,
        )
    };
    let store = open(dir.path(), Access::ReadWrite, &[]);
    load(
        &*store,
        &info("a", 4, DistanceMetric::L2),
        LoadMode::Create,
        &records(3, 4, 1),
    )
    .expect("loads");
    assert_eq!(model_of(&*store, "a"), (Some(meta::DEFAULT_MODEL.to_owned()), None));
    let mut named = info("b", 4, DistanceMetric::L2);
    named.embedding_model = Some("BAAI/bge-small-en-v1.5".into());
    named.metadata.insert("topic".into(), serde_json::json!("x"));
    load(&*store, &named, LoadMode::Create, &records(3, 4, 1)).expect("loads");
    assert_eq!(
        model_of(&*store, "b"),
        (
            Some("BAAI/bge-small-en-v1.5".into()),
            Some("BAAI/bge-small-en-v1.5".into())
        )
    );
    assert_eq!(store.describe("b").expect("describes").metadata, named.metadata);
    let store = open(dir.path(), Access::ReadWrite, &[("model", "/abs/model")]);
    load(
        &*store,
        &info("c", 4, DistanceMetric::L2),
        LoadMode::Create,
        &records(3, 4, 1),
    )
    .expect("loads");
    // The `model` option says the vectors are that model's: the collection records it too.
    assert_eq!(
        model_of(&*store, "c"),
        (Some("/abs/model".into()), Some("/abs/model".into()))
    );
}

#[test]
fn sample_fetch_storage_and_drop() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(dir.path(), Access::ReadWrite, &[]);
    let input = records(100, 4, 1);
    load(&*store, &info("c", 4, DistanceMetric::L2), LoadMode::Create, &input).expect("loads");
    let sample = |seed| collect(store.sample("c", 10, seed).expect("samples"));
    assert_eq!(sample(1).len(), 10);
    assert_eq!(bits(&sample(1)), bits(&sample(1)));
    assert_ne!(bits(&sample(1)), bits(&sample(2)));
    let got = collect(
        store
            .fetch("c", &["r0050".into(), "nope".into(), "r0003".into()])
            .expect("fetches"),
    );
    assert_eq!(bits(&got), bits(&[input[50].clone(), input[3].clone()]));
    let report = store.storage("c").expect("storage");
    assert_eq!(report.records, 100);
    assert!(report.vectors_bytes >= 100 * 4 * 4);
    assert!(report.vectors_bytes + report.documents_bytes + report.index_bytes <= report.total_bytes);
    let tail = collect(store.extract("c", &ExtractRequest::records(7, 95)).expect("extracts"));
    assert_eq!(bits(&tail), bits(&input[95..]));
    store.drop_collection("c").expect("drops");
    assert!(store.list_collections().expect("lists").is_empty());
    assert_eq!(store.describe("c").expect_err("gone").code, ErrorCode::NotFound);
}

#[test]
fn an_empty_collection_is_an_index_with_no_nodes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(dir.path(), Access::ReadWrite, &[]);
    load(
        &*store,
        &info("empty", 4, DistanceMetric::Cosine),
        LoadMode::Create,
        &[],
    )
    .expect("loads");
    assert_eq!(store.list_collections().expect("lists"), ["empty"]);
    assert_eq!(store.count("empty").expect("count"), 0);
    assert!(extract(&*store, "empty").is_empty());
    assert!(
        store
            .query("empty", &[1.0, 0.0, 0.0, 0.0], 3)
            .expect("queries")
            .is_empty()
    );
    load(
        &*store,
        &info("empty", 4, DistanceMetric::Cosine),
        LoadMode::Append,
        &records(3, 4, 1),
    )
    .expect("appends");
    assert_eq!(store.count("empty").expect("count"), 3);
}

/// Each passage line of a collection's passages file, keyed by its id, exactly as stored.
fn passage_lines(dir: &Path, name: &str) -> Vec<(String, String)> {
    let path = dir.join(format!(".leann/indexes/{name}/documents.leann.passages.jsonl"));
    fs::read_to_string(path)
        .expect("passages")
        .lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).expect("json line");
            (value["id"].as_str().expect("id").to_owned(), line.to_owned())
        })
        .collect()
}

#[test]
fn delete_removes_records_from_every_read_and_keeps_the_rest_exactly() {
    for metric in [DistanceMetric::L2, DistanceMetric::Ip, DistanceMetric::Cosine] {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = open(dir.path(), Access::ReadWrite, &[]);
        let mut input = records(200, 8, 7);
        input[1].document = None;
        input[2].metadata = None;
        let mut collection = info("c", 8, metric);
        collection.embedding_model = Some("BAAI/bge-small-en-v1.5".into());
        collection.metadata.insert("topic".into(), serde_json::json!("x"));
        load(&*store, &collection, LoadMode::Create, &input).expect("loads");
        let before = extract(&*store, "c");
        let lines_before = passage_lines(dir.path(), "c");
        let described_before = store.describe("c").expect("describes");

        let gone: Vec<String> = input.iter().step_by(3).map(|r| r.id.clone()).collect();
        let mut asked = gone.clone();
        asked.extend(["nope".to_owned(), gone[0].clone()]);
        // Options for new indexes do not change the collection's parameters or model.
        let deleter = open(dir.path(), Access::ReadWrite, &[("m", "8"), ("model", "/abs/other")]);
        assert_eq!(
            deleter.delete("c", &asked).expect("deletes"),
            gone.len() as u64,
            "{metric}"
        );
        let is_gone = |id: &str| gone.iter().any(|g| g == id);
        let kept: Vec<Record> = before.iter().filter(|r| !is_gone(&r.id)).cloned().collect();
        assert_eq!(store.count("c").expect("count"), kept.len() as u64);
        assert_eq!(bits(&extract(&*store, "c")), bits(&kept), "{metric}");
        let lines_kept: Vec<_> = lines_before.into_iter().filter(|(id, _)| !is_gone(id)).collect();
        assert_eq!(
            passage_lines(dir.path(), "c"),
            lines_kept,
            "{metric}: passage lines are copied as they were"
        );
        let described = store.describe("c").expect("describes");
        assert_eq!(
            (
                described.embedding_model,
                described.metadata,
                described.index_params,
                described.extras
            ),
            (
                described_before.embedding_model,
                described_before.metadata,
                described_before.index_params,
                described_before.extras
            )
        );
        assert!(collect(store.fetch("c", &gone).expect("fetches")).is_empty());
        let some_kept = [kept[5].id.clone(), gone[1].clone(), kept[0].id.clone()];
        assert_eq!(
            bits(&collect(store.fetch("c", &some_kept).expect("fetches"))),
            bits(&[kept[5].clone(), kept[0].clone()])
        );
        for record in &kept {
            let hits = store.query("c", &record.embedding, 10).expect("queries");
            // The true nearest remaining record (itself, except under ip where longer vectors win).
            let best = kept
                .iter()
                .min_by(|a, b| {
                    let da = metric.distance(&record.embedding, &a.embedding);
                    da.total_cmp(&metric.distance(&record.embedding, &b.embedding))
                })
                .expect("records");
            assert_eq!(hits[0].id, best.id, "{metric}: the rebuilt graph finds every record");
            assert!(hits.iter().all(|h| !is_gone(&h.id)), "{metric}: {hits:?}");
        }
        for record in input.iter().filter(|r| is_gone(&r.id)) {
            let hits = store.query("c", &record.embedding, 10).expect("queries");
            assert_eq!(hits.len(), 10);
            assert!(hits.iter().all(|h| !is_gone(&h.id)), "{metric}: {hits:?}");
        }
    }
}

#[test]
fn deleting_again_finds_nothing_and_loading_re_adds() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(dir.path(), Access::ReadWrite, &[]);
    let collection = info("c", 4, DistanceMetric::L2);
    let input = records(50, 4, 1);
    load(&*store, &collection, LoadMode::Create, &input).expect("loads");
    let gone = vec![input[10].id.clone(), input[20].id.clone()];
    assert_eq!(store.delete("c", &gone).expect("deletes"), 2);
    let index = dir.path().join(".leann/indexes/c/documents.index");
    let unchanged = fs::read(&index).expect("index");
    assert_eq!(store.delete("c", &gone).expect("deletes again"), 0);
    assert_eq!(store.delete("c", &[]).expect("deletes nothing"), 0);
    assert_eq!(
        fs::read(&index).expect("index"),
        unchanged,
        "deleting nothing rewrites nothing"
    );
    assert_eq!(store.count("c").expect("count"), 48);
    // Loading a deleted id adds it again, at the end.
    load(&*store, &collection, LoadMode::Append, &input[20..21]).expect("appends");
    let all = extract(&*store, "c");
    assert_eq!(all.len(), 49);
    assert_eq!(bits(&all[48..]), bits(&input[20..21]));
    assert_eq!(
        store.query("c", &input[20].embedding, 1).expect("queries")[0].id,
        input[20].id
    );
    assert!(collect(store.fetch("c", &gone[..1]).expect("fetches")).is_empty());
}

#[test]
fn deleting_every_record_leaves_an_empty_collection() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(dir.path(), Access::ReadWrite, &[]);
    let collection = info("c", 4, DistanceMetric::Cosine);
    let input = records(30, 4, 2);
    load(&*store, &collection, LoadMode::Create, &input).expect("loads");
    let ids: Vec<String> = input.iter().map(|r| r.id.clone()).collect();
    assert_eq!(store.delete("c", &ids).expect("deletes"), 30);
    assert_eq!(store.list_collections().expect("lists"), ["c"]);
    assert_eq!(store.count("c").expect("count"), 0);
    assert!(extract(&*store, "c").is_empty());
    assert!(store.query("c", &input[0].embedding, 3).expect("queries").is_empty());
    load(&*store, &collection, LoadMode::Append, &input).expect("loads again");
    assert_eq!(bits(&extract(&*store, "c")), bits(&input));
}

#[test]
fn delete_refusals_change_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(dir.path(), Access::ReadWrite, &[]);
    let collection = info("c", 4, DistanceMetric::L2);
    let input = records(20, 4, 1);
    load(&*store, &collection, LoadMode::Create, &input).expect("loads");
    let some = vec![input[0].id.clone()];
    let reader = open(dir.path(), Access::ReadOnly, &[]);
    assert_eq!(reader.delete("c", &some).expect_err("ro").code, ErrorCode::ReadOnly);
    assert_eq!(
        store.delete("nope", &some).expect_err("missing").code,
        ErrorCode::NotFound
    );
    assert_eq!(store.count("c").expect("count"), 20);

    // An interrupted load's staged batches would bring deleted records back.
    let paths = IndexPaths::cli(dir.path(), "c").expect("paths");
    let staging = staging::Staging::open(
        paths.staging_dir(),
        staging::StagingInfo {
            dimension: 4,
            metric: DistanceMetric::L2,
        },
    )
    .expect("staging");
    staging.append(&input[..1], 4).expect("stages");
    let error = store.delete("c", &some).expect_err("staged");
    assert_eq!(error.code, ErrorCode::InvalidInput);
    assert!(error.message.contains("interrupted load"), "{}", error.message);
    staging.remove().expect("removes");

    // A flat-layout index (LEANN's Python API) is read but not written.
    for file in fs::read_dir(&paths.dir).expect("dir") {
        let name = file.expect("entry").file_name().into_string().expect("utf-8");
        if let Some(rest) = name.strip_prefix("documents.") {
            fs::copy(paths.dir.join(&name), dir.path().join(format!("flat.{rest}"))).expect("copies");
        }
    }
    assert_eq!(store.count("flat").expect("reads the flat index"), 20);
    let error = store.delete("flat", &some).expect_err("flat");
    assert_eq!(error.code, ErrorCode::Unsupported);
    assert!(
        error.message.contains("writes only LEANN's CLI layout"),
        "{}",
        error.message
    );
    assert_eq!(store.count("flat").expect("count"), 20);

    // A rebuild that fails half way (here at a passage line gone missing) leaves the files as
    // they were.
    let passages = paths.dir.join(paths.passages_name());
    let text = fs::read_to_string(&passages).expect("passages");
    let last_line = text.trim_end_matches('\n').rfind('\n').expect("lines") + 1;
    fs::write(&passages, &text[..last_line]).expect("truncates");
    let files = |dir: &Path| -> Vec<(String, Vec<u8>)> {
        let mut files: Vec<_> = fs::read_dir(dir)
            .expect("dir")
            .map(|e| {
                let e = e.expect("entry");
                let name = e.file_name().to_string_lossy().into_owned();
                match e.path().is_dir() {
                    true => (format!("{name}/"), Vec::new()),
                    false => (name, fs::read(e.path()).expect("reads")),
                }
            })
            .collect();
        files.sort();
        files
    };
    let before = files(&paths.dir);
    let error = store.delete("c", &some).expect_err("half way");
    assert_eq!(error.code, ErrorCode::Corrupt, "{}", error.message);
    assert_eq!(files(&paths.dir), before);
}

// The compact shape and indexes without vectors, with the stand-in model of `recompute::fake`.

/// Records whose vectors are what the stand-in model computes for their documents.
fn model_records(n: usize, dimension: u32) -> Vec<Record> {
    records(n, dimension as usize, 7)
        .into_iter()
        .map(|mut record| {
            record.embedding = fake::vector(record.document.as_deref().unwrap_or(""), dimension);
            record
        })
        .collect()
}

/// `records` as an index of `metric` gives them back when it recomputes their vectors.
fn recomputed(records: &[Record], metric: DistanceMetric) -> Vec<Record> {
    let mut records = records.to_vec();
    if metric == DistanceMetric::Cosine {
        for record in &mut records {
            let dimension = record.embedding.len();
            read::normalize_rows(&mut record.embedding, dimension);
        }
    }
    records
}

/// The meta file of collection `name`, as JSON.
fn meta_json(dir: &Path, name: &str) -> serde_json::Value {
    let text = fs::read_to_string(dir.join(format!(".leann/indexes/{name}/documents.leann.meta.json"))).expect("meta");
    serde_json::from_str(&text).expect("json")
}

/// The nearest record to `query` by brute force.
fn nearest<'a>(records: &'a [Record], query: &[f32], metric: DistanceMetric) -> &'a Record {
    records
        .iter()
        .min_by(|a, b| {
            metric
                .distance(query, &a.embedding)
                .total_cmp(&metric.distance(query, &b.embedding))
        })
        .expect("records")
}

#[test]
fn compact_indexes_keep_no_vectors_and_give_back_the_models() {
    let model = fake::model(8);
    for metric in [DistanceMetric::L2, DistanceMetric::Ip, DistanceMetric::Cosine] {
        let dir = tempfile::tempdir().expect("temp dir");
        let compact = open(
            dir.path(),
            Access::ReadWrite,
            &[("shape", "compact"), ("model", &model)],
        );
        let mut input = model_records(300, 8);
        input[3].metadata = None;
        input[4].id = "ünïcödé 🦀".into();
        load(&*compact, &info("c", 8, metric), LoadMode::Create, &input).expect("loads compact");
        let meta = meta_json(dir.path(), "c");
        assert_eq!(
            (&meta["is_compact"], &meta["is_pruned"], &meta["embedding_model"]),
            (
                &serde_json::json!(true),
                &serde_json::json!(true),
                &serde_json::json!(model)
            )
        );
        let paths = IndexPaths::cli(dir.path(), "c").expect("paths");
        let parsed = index_file::read(&paths.index(), false).expect("index");
        assert_eq!(parsed.layout, index_file::GraphLayout::Compact);
        assert!(parsed.vectors.is_none());
        assert!(!paths.dir.join(paths.originals_name()).exists());

        // Every read recomputes the vectors with the model.
        let expected = recomputed(&input, metric);
        assert_eq!(bits(&extract(&*compact, "c")), bits(&expected), "{metric}");
        let sampled = collect(compact.sample("c", 10, 4).expect("samples"));
        assert_eq!(sampled.len(), 10);
        for record in &sampled {
            let want = expected.iter().find(|r| r.id == record.id).expect("sampled id");
            assert_eq!(bits(std::slice::from_ref(record)), bits(std::slice::from_ref(want)));
        }
        let fetched = collect(
            compact
                .fetch("c", &[input[42].id.clone(), "nope".into()])
                .expect("fetches"),
        );
        assert_eq!(bits(&fetched), bits(&expected[42..43]));
        let described = compact.describe("c").expect("describes");
        assert_eq!(described.extras["leann_shape"], serde_json::json!("compact"));
        assert_eq!(described.count, 300);
        // The graph search recomputes the vectors of the nodes it visits.
        for record in expected.iter().step_by(11) {
            let hits = compact.query("c", &record.embedding, 5).expect("queries");
            let best = nearest(&expected, &record.embedding, metric);
            assert_eq!(hits[0].id, best.id, "{metric}");
            let exact = metric.distance(&record.embedding, &best.embedding);
            assert!(
                (hits[0].distance - exact).abs() < 1e-4 * exact.abs().max(1.0),
                "{metric}: {hits:?}"
            );
        }

        // The same records in a full index take more room: the vectors are LEANN's saving.
        let full = open(dir.path(), Access::ReadWrite, &[("model", &model)]);
        load(&*full, &info("f", 8, metric), LoadMode::Create, &input).expect("loads full");
        let (full, compact) = (
            full.storage("f").expect("storage"),
            compact.storage("c").expect("storage"),
        );
        assert_eq!(compact.vectors_bytes, 0);
        assert!(full.vectors_bytes >= 300 * 8 * 4);
        assert_eq!(compact.documents_bytes, full.documents_bytes);
        assert!(compact.index_bytes < full.index_bytes, "{compact:?} vs {full:?}");
        assert!(
            compact.total_bytes + full.vectors_bytes <= full.total_bytes,
            "{compact:?} vs {full:?}"
        );
    }
}

#[test]
fn compact_refuses_vectors_that_are_not_the_models() {
    let dir = tempfile::tempdir().expect("temp dir");
    let model = fake::model(8);
    let store = open(
        dir.path(),
        Access::ReadWrite,
        &[("shape", "compact"), ("model", &model)],
    );
    // One record whose vector came from elsewhere: the sample covers all 40, so it is named.
    let mut input = model_records(40, 8);
    input[17].embedding = records(40, 8, 3)[17].embedding.clone();
    let error =
        load(&*store, &info("c", 8, DistanceMetric::Cosine), LoadMode::Create, &input).expect_err("not the model's");
    assert_eq!(error.code, ErrorCode::InvalidInput);
    for part in [
        format!("the embedding model '{model}'"),
        "record 'r0017': cosine similarity".to_owned(),
        "below 0.99".to_owned(),
    ] {
        assert!(error.message.contains(&part), "{part}: {}", error.message);
    }
    assert!(
        error.help.as_deref().is_some_and(|h| h.contains("shape=full")),
        "{error:?}"
    );
    assert!(
        store.list_collections().expect("lists").is_empty(),
        "a refused load leaves nothing"
    );
    // Vectors from another model altogether: the worst of the sample is named.
    let error = load(
        &*store,
        &info("c", 8, DistanceMetric::L2),
        LoadMode::Create,
        &records(500, 8, 3),
    )
    .expect_err("another model");
    assert!(error.message.contains("64 records checked"), "{}", error.message);
    // The model the vectors came from writes them fine; full keeps any vectors.
    load(
        &*store,
        &info("c", 8, DistanceMetric::L2),
        LoadMode::Create,
        &model_records(40, 8),
    )
    .expect("loads");
    let full = open(dir.path(), Access::ReadWrite, &[("shape", "full")]);
    load(&*full, &info("f", 8, DistanceMetric::L2), LoadMode::Create, &input).expect("loads full");
    assert_eq!(bits(&extract(&*full, "f")), bits(&input));
}

#[test]
fn compact_refuses_records_without_a_document() {
    let dir = tempfile::tempdir().expect("temp dir");
    let model = fake::model(4);
    let store = open(
        dir.path(),
        Access::ReadWrite,
        &[("shape", "compact"), ("model", &model)],
    );
    let collection = info("c", 4, DistanceMetric::L2);
    load(&*store, &collection, LoadMode::Create, &model_records(30, 4)).expect("loads");
    for document in [None, Some(String::new())] {
        let mut more = model_records(60, 4)[30..].to_vec();
        more[12].document = document.clone();
        more[20].document = None;
        let error = load(&*store, &collection, LoadMode::Append, &more).expect_err("no document");
        assert_eq!(error.code, ErrorCode::InvalidInput);
        assert!(
            error
                .message
                .starts_with("record 'r0042' has no document (or an empty one)"),
            "{}",
            error.message
        );
        assert!(error.message.contains("compact LEANN index 'c'"), "{}", error.message);
        assert_eq!(store.count("c").expect("count"), 30);
    }
    // A full collection holding a record without a document cannot become compact.
    let full = open(dir.path(), Access::ReadWrite, &[]);
    let mut input = model_records(10, 4);
    input[6].document = None;
    load(&*full, &info("f", 4, DistanceMetric::L2), LoadMode::Create, &input).expect("loads full");
    let error = load(&*store, &info("f", 4, DistanceMetric::L2), LoadMode::Append, &[]).expect_err("no document");
    assert!(
        error.message.starts_with("record 'r0006' has no document"),
        "{}",
        error.message
    );
    assert_eq!(meta_json(dir.path(), "f")["is_compact"], serde_json::json!(false));
}

#[test]
fn compact_collections_grow_change_shrink_and_keep_their_shape() {
    let dir = tempfile::tempdir().expect("temp dir");
    let model = fake::model(8);
    let compact = open(
        dir.path(),
        Access::ReadWrite,
        &[("shape", "compact"), ("model", &model)],
    );
    let collection = info("c", 8, DistanceMetric::Cosine);
    let mut input = model_records(150, 8);
    // A checkpointed migration loads in chunks.
    load(&*compact, &collection, LoadMode::Create, &input[..50]).expect("creates");
    load(&*compact, &collection, LoadMode::Append, &input[50..100]).expect("appends");
    // Without a shape option, a compact collection stays compact.
    let plain = open(dir.path(), Access::ReadWrite, &[]);
    load(&*plain, &collection, LoadMode::Append, &input[100..]).expect("appends");
    assert_eq!(meta_json(dir.path(), "c")["is_compact"], serde_json::json!(true));
    assert_eq!(meta_json(dir.path(), "c")["embedding_model"], serde_json::json!(model));
    assert_eq!(
        bits(&extract(&*plain, "c")),
        bits(&recomputed(&input, DistanceMetric::Cosine))
    );
    // An upsert with a new document and its vector.
    input[7].document = Some("a document rewritten".into());
    input[7].embedding = fake::vector("a document rewritten", 8);
    load(&*plain, &collection, LoadMode::Upsert, &input[7..8]).expect("upserts");
    // A delete rebuilds it compact, from recomputed vectors.
    let gone: Vec<String> = input.iter().step_by(4).map(|r| r.id.clone()).collect();
    assert_eq!(plain.delete("c", &gone).expect("deletes"), gone.len() as u64);
    let kept: Vec<Record> = input.iter().filter(|r| !gone.contains(&r.id)).cloned().collect();
    let expected = recomputed(&kept, DistanceMetric::Cosine);
    assert_eq!(bits(&extract(&*plain, "c")), bits(&expected));
    assert_eq!(meta_json(dir.path(), "c")["is_compact"], serde_json::json!(true));
    for record in &expected {
        assert_eq!(
            plain.query("c", &record.embedding, 1).expect("queries")[0].id,
            record.id
        );
    }
    // shape=full turns it into a full index holding the recomputed vectors.
    let full = open(dir.path(), Access::ReadWrite, &[("shape", "full")]);
    load(&*full, &collection, LoadMode::Append, &[]).expect("converts");
    assert_eq!(meta_json(dir.path(), "c")["is_pruned"], serde_json::json!(false));
    assert!(full.storage("c").expect("storage").vectors_bytes > 0);
    assert_eq!(bits(&extract(&*full, "c")), bits(&expected));
    // And shape=compact turns it back, its vectors being the model's.
    load(&*compact, &collection, LoadMode::Append, &[]).expect("converts back");
    assert_eq!(meta_json(dir.path(), "c")["is_compact"], serde_json::json!(true));
    assert_eq!(bits(&extract(&*compact, "c")), bits(&expected));
}

#[test]
fn pruned_indexes_are_read_with_or_without_the_flag_byte_and_stay_pruned() {
    let dir = tempfile::tempdir().expect("temp dir");
    let model = fake::model(8);
    let store = open(dir.path(), Access::ReadWrite, &[("model", &model)]);
    let input = model_records(120, 8);
    load(&*store, &info("p", 8, DistanceMetric::L2), LoadMode::Create, &input).expect("loads");
    // LEANN's CLI default: the graph in faiss's layout, the storage pruned, the meta saying so.
    let paths = IndexPaths::cli(dir.path(), "p").expect("paths");
    let parsed = index_file::read(&paths.index(), true).expect("index");
    let graph = parsed.graph.expect("graph");
    let params = index_file::WriteParams {
        dimension: 8,
        metric: index_file::FaissMetric::L2,
        m: 32,
        ef_construction: 200,
        ef_search: 16,
        body: index_file::Body::Pruned,
    };
    index_file::write(&paths.index(), &graph, &params).expect("prunes");
    let mut meta = meta_json(dir.path(), "p");
    meta["is_pruned"] = serde_json::json!(true);
    meta["backend_kwargs"]["is_recompute"] = serde_json::json!(true);
    fs::write(paths.meta(), serde_json::to_vec(&meta).expect("json")).expect("writes meta");
    assert_eq!(
        store.describe("p").expect("describes").extras["leann_shape"],
        serde_json::json!("pruned")
    );
    assert_eq!(bits(&extract(&*store, "p")), bits(&input));
    // LEANN's Python pruner writes no flag byte.
    let mut bytes = fs::read(paths.index()).expect("index");
    let (probas, cum) = index_file::default_probas(32);
    let flag_at = 4 + 33 + 8 + 8 * probas.len() + 8 + 4 * cum.len() + 8 + 4 * 120;
    assert_eq!(bytes[flag_at], 0);
    bytes.remove(flag_at);
    fs::write(paths.index(), &bytes).expect("writes");
    assert_eq!(
        index_file::read(&paths.index(), false).expect("index").layout,
        index_file::GraphLayout::NonCompactUnflagged
    );
    assert_eq!(bits(&extract(&*store, "p")), bits(&input));
    for record in input.iter().step_by(9) {
        assert_eq!(
            store.query("p", &record.embedding, 1).expect("queries")[0].id,
            record.id
        );
    }
    // Rewritten by a delete, it stays pruned (with the flag byte).
    assert_eq!(store.delete("p", &[input[0].id.clone()]).expect("deletes"), 1);
    let parsed = index_file::read(&paths.index(), false).expect("index");
    assert_eq!(parsed.layout, index_file::GraphLayout::NonCompactFlagged);
    assert!(parsed.vectors.is_none());
    assert_eq!(
        store.describe("p").expect("describes").extras["leann_shape"],
        serde_json::json!("pruned")
    );
    assert_eq!(bits(&extract(&*store, "p")), bits(&input[1..]));
}

#[test]
fn a_missing_model_is_named_with_how_to_provide_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("no-such-model").display().to_string();
    let store = open(
        dir.path(),
        Access::ReadWrite,
        &[("shape", "compact"), ("model", &missing)],
    );
    let error = load(
        &*store,
        &info("c", 4, DistanceMetric::L2),
        LoadMode::Create,
        &model_records(5, 4),
    )
    .expect_err("no model");
    assert_eq!(error.code, ErrorCode::NotFound);
    assert!(
        error.message.contains(&format!("embedding model '{missing}'")),
        "{}",
        error.message
    );
    assert!(
        error.help.as_deref().is_some_and(|h| h.contains("Hugging Face cache")),
        "{error:?}"
    );
    assert!(store.list_collections().expect("lists").is_empty());

    // A compact index whose model is gone is still listed, described, counted and reported on;
    // its records and queries name the model.
    let model = fake::model(4);
    let writer = open(
        dir.path(),
        Access::ReadWrite,
        &[("shape", "compact"), ("model", &model)],
    );
    let input = model_records(5, 4);
    load(&*writer, &info("c", 4, DistanceMetric::L2), LoadMode::Create, &input).expect("loads");
    let mut meta = meta_json(dir.path(), "c");
    meta["embedding_model"] = serde_json::json!(missing);
    fs::write(
        dir.path().join(".leann/indexes/c/documents.leann.meta.json"),
        serde_json::to_vec(&meta).expect("json"),
    )
    .expect("writes meta");
    let reader = open(dir.path(), Access::ReadOnly, &[]);
    assert_eq!(reader.count("c").expect("count"), 5);
    assert_eq!(reader.storage("c").expect("storage").vectors_bytes, 0);
    let failures = [
        reader.extract("c", &ExtractRequest::records(10, 0)).err(),
        reader.sample("c", 2, 1).err(),
        reader.fetch("c", &[input[0].id.clone()]).err(),
        reader.query("c", &input[0].embedding, 1).err(),
    ];
    for error in failures {
        let error = error.expect("needs the model");
        assert_eq!(error.code, ErrorCode::NotFound);
        assert!(
            error
                .message
                .starts_with("reading collection 'c' (a compact LEANN index"),
            "{}",
            error.message
        );
        assert!(error.message.contains(&missing), "{}", error.message);
    }
}
