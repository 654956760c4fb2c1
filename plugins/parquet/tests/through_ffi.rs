//! The parquet plugin seen from the host's side: every store here is opened through
//! `ragged_plugin_api::testing::open_through_ffi`, so requests cross the real vtable as JSON and
//! records cross as Arrow C streams, exactly as when the host loads the library.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use arrow_array::builder::{FixedSizeListBuilder, Float32Builder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use ragged_plugin_api::arrow::{batch_to_records, canonical_schema, records_to_batch};
use ragged_plugin_api::testing::open_through_ffi;
use ragged_plugin_api::{
    Access, Backend, BatchStream, CollectionInfo, DistanceMetric, ErrorCode, ExtractRequest, LoadMode, LoadRequest,
    OpenRequest, PluginError, Record,
};
use ragged_plugin_parquet::ParquetStore;

fn open(location: &Path, access: Access) -> Result<Box<dyn Backend>, PluginError> {
    open_through_ffi::<ParquetStore>(&OpenRequest {
        location: location.display().to_string(),
        options: BTreeMap::new(),
        access,
    })
}

fn info(name: &str, dimension: u32, metric: DistanceMetric) -> CollectionInfo {
    CollectionInfo {
        name: name.to_owned(),
        dimension,
        metric,
        count: 0,
        embedding_model: Some("test-model".to_owned()),
        index_params: None,
        metadata: serde_json::Map::new(),
        extras: serde_json::Map::new(),
    }
}

fn load(store: &dyn Backend, info: &CollectionInfo, mode: LoadMode, batches: &[&[Record]]) -> Result<u64, PluginError> {
    let batches: Vec<RecordBatch> = batches
        .iter()
        .map(|records| records_to_batch(records, info.dimension).expect("valid records"))
        .collect();
    load_stream(store, info, mode, canonical_schema(info.dimension), batches)
}

fn load_stream(
    store: &dyn Backend,
    info: &CollectionInfo,
    mode: LoadMode,
    schema: Arc<Schema>,
    batches: Vec<RecordBatch>,
) -> Result<u64, PluginError> {
    let request = LoadRequest {
        collection: info.clone(),
        mode,
    };
    Ok(store
        .load(&request, BatchStream::from_batches(schema, batches))?
        .records_written)
}

fn drain(stream: BatchStream) -> Vec<Record> {
    let mut records = Vec::new();
    for batch in stream.into_reader().expect("a readable stream") {
        records.extend(batch_to_records(&batch.expect("a batch")).expect("canonical batch"));
    }
    records
}

fn extract(store: &dyn Backend, collection: &str, start: u64, batch_size: u32) -> Vec<Record> {
    drain(
        store
            .extract(collection, &ExtractRequest::records(batch_size, start))
            .expect("extracts"),
    )
}

fn ids(records: &[Record]) -> Vec<&str> {
    records.iter().map(|r| r.id.as_str()).collect()
}

/// Records compared field by field, embeddings by their bits (so -0.0, NaN payloads count).
fn assert_bit_exact(got: &[Record], expected: &[Record]) {
    assert_eq!(ids(got), ids(expected));
    for (a, b) in got.iter().zip(expected) {
        assert_eq!(a.document, b.document, "document of {}", a.id);
        assert_eq!(a.metadata, b.metadata, "metadata of {}", a.id);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
        assert_eq!(bits(&a.embedding), bits(&b.embedding), "embedding of {}", a.id);
    }
}

/// `n` plain records `r000…` with dimension 3, version `v` in the document and first value.
fn plain(range: std::ops::Range<u32>, version: u32) -> Vec<Record> {
    range
        .map(|i| Record {
            id: format!("r{i:03}"),
            document: Some(format!("record {i} version {version}")),
            metadata: Some(format!("{{\"i\": {i}, \"version\": {version}}}")),
            embedding: vec![version as f32, i as f32, 1.0],
        })
        .collect()
}

/// Every file and directory under `root` with its bytes and modification time: any write,
/// including a temp file created and removed again, changes it.
fn tree(root: &Path) -> BTreeMap<PathBuf, (Vec<u8>, SystemTime)> {
    let mut entries = BTreeMap::new();
    let mut pending = vec![root.to_owned()];
    while let Some(path) = pending.pop() {
        let metadata = fs::metadata(&path).expect("stat");
        let modified = metadata.modified().expect("mtime");
        if metadata.is_dir() {
            for entry in fs::read_dir(&path).expect("lists") {
                pending.push(entry.expect("entry").path());
            }
            entries.insert(path, (Vec::new(), modified));
        } else {
            entries.insert(path.clone(), (fs::read(&path).expect("reads"), modified));
        }
    }
    entries
}

fn tricky_records() -> Vec<Record> {
    vec![
        Record {
            id: "zéro-∅-🦀".to_owned(),
            document: Some("ünïcødé 文字 \u{0} nul inside".to_owned()),
            metadata: Some(
                r#"{"int": 2, "float": 2.0, "tags": ["a", "b"], "flags": [true, false], "nums": [1, 2]}"#.to_owned(),
            ),
            embedding: vec![-0.0, 0.0, f32::from_bits(1), f32::MIN_POSITIVE / 2.0],
        },
        Record {
            id: "empty-document".to_owned(),
            document: Some(String::new()),
            metadata: Some("{}".to_owned()),
            embedding: vec![f32::MAX, f32::MIN, f32::INFINITY, f32::NEG_INFINITY],
        },
        Record {
            id: "no-document".to_owned(),
            document: None,
            metadata: None,
            embedding: vec![f32::from_bits(0x7fc0_0001), f32::from_bits(0xffc0_1234), 1e-40, -1e-45],
        },
        Record {
            id: " spaced id ".to_owned(),
            document: Some("  ".to_owned()),
            metadata: Some("{ \"spacing\" :  1.50 , \"e\": 1e3 }".to_owned()),
            embedding: vec![0.1, 0.2, 0.3, std::f32::consts::PI],
        },
    ]
}

#[test]
fn records_round_trip_bit_exact() {
    let root = tempfile::tempdir().expect("temp dir");
    let store = open(root.path(), Access::ReadWrite).expect("opens");
    let records = tricky_records();
    let mut described = info("tricky", 4, DistanceMetric::Cosine);
    described.metadata.insert("two".to_owned(), serde_json::json!(2));
    described
        .metadata
        .insert("two_float".to_owned(), serde_json::json!(2.0));
    described.index_params = Some(serde_json::json!({"M": 16}));
    described
        .extras
        .insert("source".to_owned(), serde_json::json!("chroma"));
    assert_eq!(
        load(&*store, &described, LoadMode::Create, &[&records[..2], &records[2..]]),
        Ok(4)
    );

    assert_bit_exact(&extract(&*store, "tricky", 0, 3), &records);
    // Reopened read-only, as a migration's source would be.
    let reader = open(root.path(), Access::ReadOnly).expect("opens");
    assert_bit_exact(&extract(&*reader, "tricky", 0, 1000), &records);
    assert_eq!(reader.describe("tricky"), Ok(CollectionInfo { count: 4, ..described }));
    let metadata = serde_json::to_string(&reader.describe("tricky").expect("describes").metadata).expect("json");
    assert_eq!(metadata, r#"{"two":2,"two_float":2.0}"#);
}

/// A store with collection `docs` (dimension 3, l2) of 47 records in four parts.
fn four_parts() -> (tempfile::TempDir, Box<dyn Backend>, Vec<Record>) {
    let root = tempfile::tempdir().expect("temp dir");
    let store = open(root.path(), Access::ReadWrite).expect("opens");
    let docs = info("docs", 3, DistanceMetric::L2);
    let records = plain(0..47, 1);
    load(&*store, &docs, LoadMode::Create, &[&records[..10], &records[10..13]]).expect("loads");
    load(&*store, &docs, LoadMode::Append, &[&records[13..30]]).expect("loads");
    load(&*store, &docs, LoadMode::Append, &[&records[30..31]]).expect("loads");
    load(&*store, &docs, LoadMode::Append, &[&records[31..]]).expect("loads");
    (root, store, records)
}

#[test]
fn extract_from_any_start_is_the_tail_of_the_full_extract() {
    let (_root, store, records) = four_parts();
    let all = extract(&*store, "docs", 0, 7);
    assert_bit_exact(&all, &records);
    let mut runner = TestRunner::new(Config::with_cases(96));
    runner
        .run(&(0u64..55, 1u32..20), |(start, batch_size)| {
            let tail = extract(&*store, "docs", start, batch_size);
            let expected = &all[(start as usize).min(all.len())..];
            prop_assert_eq!(ids(&tail), ids(expected));
            Ok(())
        })
        .expect("every start gives the tail");
}

#[test]
fn batches_never_exceed_the_batch_size() {
    let (_root, store, _records) = four_parts();
    let stream = store.extract("docs", &ExtractRequest::records(8, 5)).expect("extracts");
    let sizes: Vec<usize> = stream
        .into_reader()
        .expect("a stream")
        .map(|b| b.expect("a batch").num_rows())
        .collect();
    // Parts of 13, 17, 1 and 16 rows, starting 5 rows in.
    assert_eq!(sizes, vec![8, 8, 8, 1, 1, 8, 8]);
}

#[test]
fn replaying_batches_keeps_the_count_and_the_newest_values() {
    let (_root, store, _records) = four_parts();
    let docs = info("docs", 3, DistanceMetric::L2);
    let replay = plain(10..35, 2);
    assert_eq!(load(&*store, &docs, LoadMode::Upsert, &[&replay]), Ok(25));
    assert_eq!(store.count("docs"), Ok(47));
    let newer = plain(20..25, 3);
    assert_eq!(load(&*store, &docs, LoadMode::Append, &[&newer, &newer]), Ok(10));
    assert_eq!(store.count("docs"), Ok(47));
    let all = extract(&*store, "docs", 0, 100);
    let mut by_id: Vec<(String, f32)> = all.iter().map(|r| (r.id.clone(), r.embedding[0])).collect();
    by_id.sort_by(|a, b| a.0.cmp(&b.0));
    for (i, (id, version)) in by_id.iter().enumerate() {
        assert_eq!(id, &format!("r{i:03}"));
        let expected = match i {
            20..25 => 3.0,
            10..35 => 2.0,
            _ => 1.0,
        };
        assert_eq!(*version, expected, "{id}");
    }
}

#[test]
fn create_on_an_existing_collection_is_already_exists() {
    let (root, store, _records) = four_parts();
    let error = load(
        &*store,
        &info("docs", 3, DistanceMetric::L2),
        LoadMode::Create,
        &[&plain(0..1, 9)],
    )
    .expect_err("exists");
    assert_eq!(error.code, ErrorCode::AlreadyExists);
    assert_eq!(
        error.message,
        format!("collection 'docs' already exists in {}", root.path().display())
    );
    assert_eq!(store.count("docs"), Ok(47));
}

#[test]
fn samples_are_fixed_by_the_seed_and_have_the_size_asked() {
    let (_root, store, records) = four_parts();
    let sample = |n, seed| drain(store.sample("docs", n, seed).expect("samples"));
    let first = sample(10, 42);
    assert_eq!(first.len(), 10);
    assert_bit_exact(&sample(10, 42), &first);
    assert_ne!(ids(&sample(10, 43)), ids(&first));
    // Distinct records, in extract order.
    let positions: Vec<usize> = first
        .iter()
        .map(|r| records.iter().position(|o| o.id == r.id).expect("a real record"))
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    assert_bit_exact(&sample(47, 1), &records);
    assert_bit_exact(&sample(1000, 1), &records);
    assert!(sample(0, 1).is_empty());
}

#[test]
fn fetch_returns_records_in_the_order_asked() {
    let (_root, store, records) = four_parts();
    let asked: Vec<String> = ["r046", "r000", "missing", "r030", "r013"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let got = drain(store.fetch("docs", &asked).expect("fetches"));
    let expected: Vec<Record> = [46, 0, 30, 13].iter().map(|&i| records[i].clone()).collect();
    assert_bit_exact(&got, &expected);
}

/// Unit vectors at distinct angles in the plane, lifted to 3 dimensions.
fn unit_vectors(n: u32) -> Vec<Record> {
    (0..n)
        .map(|i| {
            let angle = i as f32 * 0.3;
            Record {
                id: format!("u{i:02}"),
                document: None,
                metadata: None,
                embedding: vec![angle.cos(), angle.sin(), 0.0],
            }
        })
        .collect()
}

#[test]
fn every_record_is_its_own_nearest_neighbour_under_each_metric() {
    let root = tempfile::tempdir().expect("temp dir");
    let store = open(root.path(), Access::ReadWrite).expect("opens");
    let records = unit_vectors(20);
    for metric in [DistanceMetric::L2, DistanceMetric::Cosine, DistanceMetric::Ip] {
        let name = format!("units-{metric}");
        let described = info(&name, 3, metric);
        load(&*store, &described, LoadMode::Create, &[&records[..7], &records[7..]]).expect("loads");
        for record in &records {
            let hits = store.query(&name, &record.embedding, 3).expect("queries");
            assert_eq!(hits.len(), 3);
            assert_eq!(hits[0].id, record.id, "{metric}");
            assert_eq!(hits[0].distance, metric.distance(&record.embedding, &record.embedding));
            assert!(
                hits.windows(2).all(|w| w[0].distance <= w[1].distance),
                "{metric}: {hits:?}"
            );
        }
        let error = store.query(&name, &[1.0, 0.0], 3).expect_err("wrong length");
        assert_eq!(error.code, ErrorCode::InvalidInput);
        assert_eq!(
            error.message,
            format!("the query vector has 2 dimensions, collection '{name}' has 3")
        );
    }
    assert_eq!(
        store.list_collections(),
        Ok(vec![
            "units-cosine".to_owned(),
            "units-ip".to_owned(),
            "units-l2".to_owned()
        ])
    );
}

#[test]
fn a_read_only_store_refuses_writes_and_changes_nothing() {
    let (root, writer, records) = four_parts();
    drop(writer);
    let before = tree(root.path());
    let store = open(root.path(), Access::ReadOnly).expect("opens");
    let error = load(
        &*store,
        &info("docs", 3, DistanceMetric::L2),
        LoadMode::Upsert,
        &[&records[..1]],
    )
    .expect_err("read-only");
    assert_eq!(error.code, ErrorCode::ReadOnly);
    assert!(
        error.message.contains("open read-only, so load is refused"),
        "{}",
        error.message
    );
    let error = load(
        &*store,
        &info("fresh", 3, DistanceMetric::L2),
        LoadMode::Create,
        &[&records[..1]],
    )
    .expect_err("read-only");
    assert_eq!(error.code, ErrorCode::ReadOnly);
    let error = store.drop_collection("docs").expect_err("read-only");
    assert_eq!(error.code, ErrorCode::ReadOnly);
    let error = store.delete("docs", &["r001".to_owned()]).expect_err("read-only");
    assert_eq!(error.code, ErrorCode::ReadOnly);
    assert!(
        error.message.contains("open read-only, so delete is refused"),
        "{}",
        error.message
    );
    // Every reading operation, for good measure.
    assert_eq!(store.list_collections(), Ok(vec!["docs".to_owned()]));
    assert_eq!(store.count("docs"), Ok(47));
    assert_eq!(extract(&*store, "docs", 3, 5).len(), 44);
    assert_eq!(drain(store.sample("docs", 5, 1).expect("samples")).len(), 5);
    assert_eq!(
        drain(store.fetch("docs", &["r001".to_owned()]).expect("fetches")).len(),
        1
    );
    assert_eq!(store.query("docs", &[1.0, 0.0, 1.0], 2).expect("queries").len(), 2);
    store.storage("docs").expect("measures");
    store.files("docs").expect("lists");
    drop(store);
    assert_eq!(
        tree(root.path()),
        before,
        "a read-only store must be left byte-identical"
    );
}

#[test]
fn a_missing_location_opened_read_only_is_not_found_and_not_created() {
    let root = tempfile::tempdir().expect("temp dir");
    let location = root.path().join("nowhere");
    let error = open(&location, Access::ReadOnly).err().expect("missing");
    assert_eq!(error.code, ErrorCode::NotFound);
    assert_eq!(
        error.message,
        format!(
            "no parquet store at {}: the directory does not exist",
            location.display()
        )
    );
    assert!(!location.exists());
    let error = open(root.path(), Access::ReadOnly)
        .expect("opens")
        .describe("docs")
        .expect_err("no collection");
    assert_eq!(error.code, ErrorCode::NotFound);
    assert!(error.message.contains("no collection 'docs' in "), "{}", error.message);
}

#[test]
fn a_truncated_part_is_corrupt_and_named() {
    let (root, store, _records) = four_parts();
    let part = root.path().join("docs").join("part-000002.parquet");
    let bytes = fs::read(&part).expect("reads");
    fs::write(&part, &bytes[..bytes.len() - 10]).expect("truncates");
    let check = |error: PluginError| {
        assert_eq!(error.code, ErrorCode::Corrupt, "{error}");
        assert!(
            error
                .message
                .starts_with(&format!("{}: not a readable parquet file", part.display())),
            "{}",
            error.message
        );
    };
    check(
        store
            .extract("docs", &ExtractRequest::records(10, 0))
            .err()
            .expect("corrupt"),
    );
    check(store.sample("docs", 3, 1).err().expect("corrupt"));
    check(store.fetch("docs", &["r000".to_owned()]).err().expect("corrupt"));
    check(store.query("docs", &[0.0, 0.0, 0.0], 1).expect_err("corrupt"));
    check(store.storage("docs").expect_err("corrupt"));
    // The manifest alone still answers.
    assert_eq!(store.count("docs"), Ok(47));
}

#[test]
fn a_garbage_manifest_is_corrupt_and_named() {
    let (root, store, _records) = four_parts();
    let manifest = root.path().join("docs").join("_collection.json");
    fs::write(&manifest, b"{\"format\": 1, \"parts\": [oops").expect("writes");
    let error = store.describe("docs").expect_err("corrupt");
    assert_eq!(error.code, ErrorCode::Corrupt);
    assert!(
        error
            .message
            .starts_with(&format!("{}: not a valid collection manifest", manifest.display())),
        "{}",
        error.message
    );
    let error = store
        .extract("docs", &ExtractRequest::records(10, 0))
        .err()
        .expect("corrupt");
    assert_eq!(error.code, ErrorCode::Corrupt);
}

/// Loads `batches` into a fresh `docs` holding `plain(0..5, 1)` and checks the refusal, and that
/// neither the records nor the files changed.
fn check_refused(schema: Arc<Schema>, batches: Vec<RecordBatch>, message: &str) {
    let (root, store, _) = {
        let root = tempfile::tempdir().expect("temp dir");
        let store = open(root.path(), Access::ReadWrite).expect("opens");
        let records = plain(0..5, 1);
        load(
            &*store,
            &info("docs", 3, DistanceMetric::L2),
            LoadMode::Create,
            &[&records],
        )
        .expect("loads");
        (root, store, records)
    };
    let before = extract(&*store, "docs", 0, 100);
    let files_before: Vec<PathBuf> = tree(root.path()).into_keys().collect();
    let error = load_stream(
        &*store,
        &info("docs", 3, DistanceMetric::L2),
        LoadMode::Upsert,
        schema,
        batches,
    )
    .expect_err("refused");
    assert_eq!(error.code, ErrorCode::InvalidInput, "{error}");
    assert_eq!(error.message, message);
    assert_bit_exact(&extract(&*store, "docs", 0, 100), &before);
    let files_after: Vec<PathBuf> = tree(root.path()).into_keys().collect();
    assert_eq!(files_after, files_before, "a refused load must leave no file behind");
}

/// A batch in the canonical layout but with every column nullable, so nulls can be sent.
fn nullable_batch(ids: &[Option<&str>], metadata: &[Option<&str>], dimension: i32) -> RecordBatch {
    let item = Arc::new(Field::new("item", DataType::Float32, true));
    let mut embeddings = FixedSizeListBuilder::new(Float32Builder::new(), dimension).with_field(item.clone());
    let mut documents = StringBuilder::new();
    for _ in ids {
        embeddings.values().append_slice(&vec![0.5; dimension as usize]);
        embeddings.append(true);
        documents.append_null();
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, true),
        Field::new("document", DataType::Utf8, true),
        Field::new("metadata", DataType::Utf8, true),
        Field::new("embedding", DataType::FixedSizeList(item, dimension), true),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(arrow_array::StringArray::from(ids.to_vec())),
        Arc::new(documents.finish()),
        Arc::new(arrow_array::StringArray::from(metadata.to_vec())),
        Arc::new(embeddings.finish()),
    ];
    RecordBatch::try_new(schema, columns).expect("a batch")
}

#[test]
fn bad_records_are_refused_by_name_and_nothing_is_committed() {
    let good = nullable_batch(&[Some("r001"), Some("new")], &[None, Some("{}")], 3);
    let schema = good.schema();
    check_refused(
        schema.clone(),
        vec![good.clone(), nullable_batch(&[Some("ok"), None], &[None, None], 3)],
        "row 1 of batch 2 has a null id",
    );
    check_refused(
        schema.clone(),
        vec![
            good.clone(),
            nullable_batch(&[Some("bad-meta")], &[Some(r#"{"k": null}"#)], 3),
        ],
        "record 'bad-meta': metadata key 'k' is null (leave the key out instead)",
    );
    check_refused(
        schema,
        vec![nullable_batch(&[Some("mixed")], &[Some(r#"{"k": [1, "a"]}"#)], 3)],
        "record 'mixed': metadata key 'k': array mixes types (int, string)",
    );
    let wide = nullable_batch(&[Some("wide")], &[None], 4);
    check_refused(
        wide.schema(),
        vec![wide],
        "record 'wide' has 4 dimensions, collection 'docs' has 3",
    );
}

#[test]
fn storage_and_files_describe_what_is_on_disk() {
    let (root, store, _records) = four_parts();
    let dir = root.path().join("docs");
    let files = store.files("docs").expect("lists");
    let expected: Vec<String> = [
        "_collection.json",
        "part-000001.parquet",
        "part-000002.parquet",
        "part-000003.parquet",
        "part-000004.parquet",
    ]
    .iter()
    .map(|f| dir.join(f).display().to_string())
    .collect();
    assert_eq!(files, expected);
    assert!(
        files
            .iter()
            .all(|f| Path::new(f).is_absolute() && Path::new(f).is_file())
    );

    let report = store.storage("docs").expect("measures");
    let on_disk: u64 = fs::read_dir(&dir)
        .expect("lists")
        .map(|e| e.expect("entry").metadata().expect("stat").len())
        .sum();
    assert_eq!(report.total_bytes, on_disk);
    assert_eq!(report.records, 47);
    assert_eq!(report.index_bytes, 0);
    assert!(report.vectors_bytes > 0 && report.documents_bytes > 0, "{report:?}");
    assert!(
        report.vectors_bytes + report.documents_bytes < report.total_bytes,
        "{report:?}"
    );
}

/// Records sorted by id, to compare contents whatever the part order.
fn by_id(mut records: Vec<Record>) -> Vec<Record> {
    records.sort_by(|a, b| a.id.cmp(&b.id));
    records
}

#[test]
fn deleted_records_leave_every_read_and_the_rest_stay_bit_exact() {
    let (root, store, records) = four_parts();
    // From three of the four parts; part 3 holds r030 alone.
    let doomed = ["r000", "r012", "r020", "r030", "missing", "r020"];
    let doomed: Vec<String> = doomed.iter().map(|id| (*id).to_owned()).collect();
    assert_eq!(store.delete("docs", &doomed), Ok(4));
    let remaining: Vec<Record> = records.iter().filter(|r| !doomed.contains(&r.id)).cloned().collect();
    assert_eq!(store.count("docs"), Ok(43));
    assert_eq!(store.describe("docs").map(|info| info.count), Ok(43));
    let all = extract(&*store, "docs", 0, 9);
    assert_bit_exact(&by_id(all.clone()), &remaining);
    assert_eq!(extract(&*store, "docs", 40, 9), all[40..].to_vec());
    let fetched = drain(store.fetch("docs", &doomed).expect("fetches"));
    assert!(fetched.is_empty(), "{:?}", ids(&fetched));
    let fetched = drain(
        store
            .fetch("docs", &["r001".to_owned(), "r000".to_owned()])
            .expect("fetches"),
    );
    assert_bit_exact(&fetched, &records[1..2]);
    for record in &records[..31] {
        let hits = store.query("docs", &record.embedding, 47).expect("queries");
        assert_eq!(hits.len(), 43);
        assert!(hits.iter().all(|hit| !doomed.contains(&hit.id)), "{hits:?}");
    }
    assert_eq!(drain(store.sample("docs", 100, 7).expect("samples")).len(), 43);
    assert_eq!(store.storage("docs").expect("measures").records, 43);
    // Only listed parts remain on disk, so a directory reader sees the same records.
    let on_disk: Vec<String> = fs::read_dir(root.path().join("docs"))
        .expect("lists")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("part-"))
        .collect();
    assert_eq!(store.files("docs").expect("lists").len(), on_disk.len() + 1);

    // Deleting again finds nothing; loading a deleted id brings it back.
    assert_eq!(store.delete("docs", &doomed), Ok(0));
    let docs = info("docs", 3, DistanceMetric::L2);
    assert_eq!(
        load(&*store, &docs, LoadMode::Upsert, &[&records[..1], &records[30..31]]),
        Ok(2)
    );
    assert_eq!(store.count("docs"), Ok(45));
    let back = drain(
        store
            .fetch("docs", &["r030".to_owned(), "r000".to_owned()])
            .expect("fetches"),
    );
    assert_bit_exact(&back, &[records[30].clone(), records[0].clone()]);
}

#[test]
fn deleting_every_record_leaves_an_empty_collection_that_loads_again() {
    let (_root, store, records) = four_parts();
    let every: Vec<String> = records.iter().map(|r| r.id.clone()).collect();
    assert_eq!(store.delete("docs", &every), Ok(47));
    assert_eq!(store.list_collections(), Ok(vec!["docs".to_owned()]));
    let described = store.describe("docs").expect("describes");
    assert_eq!((described.dimension, described.count), (3, 0));
    assert!(extract(&*store, "docs", 0, 10).is_empty());
    assert!(store.query("docs", &[0.0, 0.0, 0.0], 5).expect("queries").is_empty());
    assert_eq!(store.files("docs").expect("lists").len(), 1, "only the manifest");
    assert_eq!(store.delete("docs", &every), Ok(0));
    let docs = info("docs", 3, DistanceMetric::L2);
    assert_eq!(load(&*store, &docs, LoadMode::Append, &[&records[5..7]]), Ok(2));
    assert_bit_exact(&extract(&*store, "docs", 0, 10), &records[5..7]);
    let error = store.delete("nope", &every).expect_err("no collection");
    assert_eq!(error.code, ErrorCode::NotFound);
}

#[test]
fn drop_collection_removes_it() {
    let (root, store, _records) = four_parts();
    store.drop_collection("docs").expect("drops");
    assert!(!root.path().join("docs").exists());
    assert_eq!(store.list_collections(), Ok(Vec::new()));
    assert_eq!(store.describe("docs").expect_err("gone").code, ErrorCode::NotFound);
    assert_eq!(
        store.drop_collection("docs").expect_err("gone").code,
        ErrorCode::NotFound
    );
    // The name is free again.
    load(&*store, &info("docs", 2, DistanceMetric::Ip), LoadMode::Create, &[]).expect("recreates");
    assert_eq!(store.describe("docs").expect("describes").dimension, 2);
}

#[test]
fn unknown_options_are_refused_naming_the_key() {
    let root = tempfile::tempdir().expect("temp dir");
    let error = open_through_ffi::<ParquetStore>(&OpenRequest {
        location: root.path().display().to_string(),
        options: BTreeMap::from([("row_group_size".to_owned(), "10".to_owned())]),
        access: Access::ReadWrite,
    })
    .err()
    .expect("refused");
    assert_eq!(error.code, ErrorCode::InvalidInput);
    assert_eq!(
        error.message,
        "unknown option 'row_group_size' for the parquet store (known options: compression)"
    );
}

#[test]
fn every_compression_reads_back_the_same() {
    for compression in ["zstd", "snappy", "none"] {
        let root = tempfile::tempdir().expect("temp dir");
        let store = open_through_ffi::<ParquetStore>(&OpenRequest {
            location: root.path().display().to_string(),
            options: BTreeMap::from([("compression".to_owned(), compression.to_owned())]),
            access: Access::ReadWrite,
        })
        .expect("opens");
        let records = tricky_records();
        load(
            &*store,
            &info("c", 4, DistanceMetric::L2),
            LoadMode::Create,
            &[&records],
        )
        .expect("loads");
        assert_bit_exact(&extract(&*store, "c", 0, 2), &records);
    }
}

#[test]
fn parts_written_by_other_tools_are_read_in_the_canonical_schema() {
    // What pyarrow writes: the list item is called "element" and there is no ragged metadata.
    let root = tempfile::tempdir().expect("temp dir");
    let dir = root.path().join("foreign");
    fs::create_dir(&dir).expect("mkdir");
    let item = Arc::new(Field::new("element", DataType::Float32, true));
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("document", DataType::Utf8, true),
        Field::new("metadata", DataType::Utf8, true),
        Field::new("embedding", DataType::FixedSizeList(item.clone(), 2), false),
    ]));
    let mut embeddings = FixedSizeListBuilder::new(Float32Builder::new(), 2).with_field(item);
    for pair in [[1.0, 2.0], [3.0, 4.0]] {
        embeddings.values().append_slice(&pair);
        embeddings.append(true);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(arrow_array::StringArray::from(vec!["x", "y"])),
        Arc::new(arrow_array::StringArray::from(vec![Some("hello"), None])),
        Arc::new(arrow_array::StringArray::from(vec![Some(r#"{"a": 1}"#), None])),
        Arc::new(embeddings.finish()),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns).expect("a batch");
    let file = fs::File::create(dir.join("part-000001.parquet")).expect("creates");
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, schema, None).expect("a writer");
    writer.write(&batch).expect("writes");
    writer.close().expect("closes");
    fs::write(
        dir.join("_collection.json"),
        r#"{"format": 1, "collection": {"name": "foreign", "dimension": 2, "metric": "l2"},
            "parts": [{"file": "part-000001.parquet", "rows": 2}]}"#,
    )
    .expect("writes");

    let store = open(root.path(), Access::ReadOnly).expect("opens");
    let stream = store
        .extract("foreign", &ExtractRequest::records(10, 0))
        .expect("extracts");
    let reader = stream.into_reader().expect("a stream");
    assert_eq!(arrow_array::RecordBatchReader::schema(&reader), canonical_schema(2));
    let records: Vec<Record> = reader
        .flat_map(|b| batch_to_records(&b.expect("a batch")).expect("canonical"))
        .collect();
    let expected = vec![
        Record {
            id: "x".to_owned(),
            document: Some("hello".to_owned()),
            metadata: Some(r#"{"a": 1}"#.to_owned()),
            embedding: vec![1.0, 2.0],
        },
        Record {
            id: "y".to_owned(),
            document: None,
            metadata: None,
            embedding: vec![3.0, 4.0],
        },
    ];
    assert_bit_exact(&records, &expected);
    assert_eq!(store.query("foreign", &[3.0, 4.0], 1).expect("queries")[0].id, "y");
}
