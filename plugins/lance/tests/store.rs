//! The lance plugin through the real plugin boundary (in-process), without Python: load modes,
//! replays, refusals, version tags for rollback, the vector index and the storage report.

use std::path::Path;

use ragged_plugin_api::arrow::{batch_to_records, canonical_schema, records_to_batch};
use ragged_plugin_api::testing::open_through_ffi;
use ragged_plugin_api::{
    Access, Backend, BatchStream, CollectionInfo, DistanceMetric, ErrorCode, ExtractRequest, LoadMode, LoadRequest,
    OpenRequest, PluginError, Record,
};
use ragged_plugin_lance::LanceStore;

fn open_with(path: &Path, access: Access, options: &[(&str, &str)]) -> Result<Box<dyn Backend>, PluginError> {
    open_through_ffi::<LanceStore>(&OpenRequest {
        location: path.display().to_string(),
        options: options
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        access,
    })
}

fn request(name: &str, dimension: u32, metric: DistanceMetric, mode: LoadMode) -> LoadRequest {
    LoadRequest {
        collection: CollectionInfo {
            name: name.into(),
            dimension,
            metric,
            count: 0,
            embedding_model: None,
            index_params: None,
            metadata: serde_json::Map::new(),
            extras: serde_json::Map::new(),
        },
        mode,
    }
}

fn records(n: usize, dimension: usize, salt: u32) -> Vec<Record> {
    (0..n)
        .map(|i| Record {
            id: format!("r{i:04}"),
            document: Some(format!("doc {i} {salt}")),
            metadata: Some(format!(r#"{{"i":{i},"half":{}.5}}"#, i / 2)),
            embedding: (0..dimension)
                .map(|j| (((i * 31 + j * 17) % 97) as f32 / 97.0 - 0.5) * if j % 2 == 0 { 1.0 } else { -1.0 })
                .collect(),
        })
        .collect()
}

fn stream(records: &[Record], dimension: u32) -> BatchStream {
    let batches = records
        .chunks(64)
        .map(|c| records_to_batch(c, dimension).expect("valid"))
        .collect();
    BatchStream::from_batches(canonical_schema(dimension), batches)
}

fn extract_all(store: &dyn Backend, name: &str, start: u64) -> Vec<Record> {
    let stream = store
        .extract(name, &ExtractRequest { batch_size: 50, start })
        .expect("extracts");
    stream
        .into_reader()
        .expect("reader")
        .flat_map(|b| batch_to_records(&b.expect("batch")).expect("records"))
        .collect()
}

#[test]
fn load_modes_replays_and_refusals() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_with(dir.path(), Access::ReadWrite, &[]).expect("opens");
    let first = records(150, 6, 0);
    let error = store
        .load(
            &request("t", 6, DistanceMetric::L2, LoadMode::Append),
            stream(&first, 6),
        )
        .expect_err("append to a missing table");
    assert_eq!(error.code, ErrorCode::NotFound);
    assert_eq!(store.list_collections().expect("lists"), Vec::<String>::new());

    store
        .load(
            &request("t", 6, DistanceMetric::L2, LoadMode::Create),
            stream(&first, 6),
        )
        .expect("creates");
    let error = store
        .load(
            &request("t", 6, DistanceMetric::L2, LoadMode::Create),
            stream(&first[..1], 6),
        )
        .expect_err("create twice");
    assert_eq!(error.code, ErrorCode::AlreadyExists);

    // Mismatched dimensions are refused before anything is written.
    let wrong = records(3, 7, 0);
    let error = store
        .load(
            &request("t", 7, DistanceMetric::L2, LoadMode::Append),
            stream(&wrong, 7),
        )
        .expect_err("wrong dimension");
    assert_eq!(error.code, ErrorCode::InvalidInput);
    assert!(
        error
            .message
            .contains("holds vectors of 6 dimensions, the records have 7"),
        "{error}"
    );
    assert_eq!(store.count("t").expect("counts"), 150);

    // A replay that also repeats an id inside one batch: still 150 records, last value wins.
    let mut replay = records(100, 6, 1);
    replay.push(Record {
        document: Some("last".into()),
        ..replay[5].clone()
    });
    store
        .load(
            &request("t", 6, DistanceMetric::L2, LoadMode::Upsert),
            stream(&replay, 6),
        )
        .expect("replays");
    assert_eq!(store.count("t").expect("counts"), 150);
    let all = extract_all(store.as_ref(), "t", 0);
    assert_eq!(all.len(), 150);
    let r5 = all.iter().find(|r| r.id == "r0005").expect("r0005");
    assert_eq!(r5.document.as_deref(), Some("last"));
    let r120 = all.iter().find(|r| r.id == "r0120").expect("r0120");
    assert_eq!(r120, &first[120]);

    // Within one load into a new table, a later batch that repeats an id replaces the record.
    let mut twice = records(64, 6, 2);
    twice.push(Record {
        document: Some("second batch".into()),
        ..twice[3].clone()
    });
    store
        .load(
            &request("dup", 6, DistanceMetric::L2, LoadMode::Create),
            stream(&twice, 6),
        )
        .expect("loads");
    let dup = extract_all(store.as_ref(), "dup", 0);
    assert_eq!(dup.len(), 64);
    assert_eq!(
        dup.iter().find(|r| r.id == "r0003").and_then(|r| r.document.as_deref()),
        Some("second batch")
    );

    // An empty stream still creates the collection (upsert), with its dimension.
    store
        .load(
            &request("empty", 5, DistanceMetric::Cosine, LoadMode::Upsert),
            stream(&[], 5),
        )
        .expect("creates");
    let empty = store.describe("empty").expect("describes");
    assert_eq!(
        (empty.dimension, empty.metric, empty.count),
        (5, DistanceMetric::Cosine, 0)
    );
    assert_eq!(extract_all(store.as_ref(), "empty", 0), Vec::<Record>::new());

    // The cursor resumes exactly.
    assert_eq!(extract_all(store.as_ref(), "t", 137), all[137..].to_vec());

    // Not a LanceDB database.
    let other = tempfile::tempdir().expect("tempdir");
    std::fs::write(other.path().join("chroma.sqlite3"), b"SQLite format 3").expect("writes");
    let error = open_with(other.path(), Access::ReadOnly, &[]).err().expect("refused");
    assert_eq!(error.code, ErrorCode::Incompatible);
    assert!(error.message.contains("is not a LanceDB database"), "{error}");
    let error = open_with(dir.path(), Access::ReadOnly, &[("colour", "red")])
        .err()
        .expect("refused");
    assert!(error.message.contains("unknown option 'colour'"), "{error}");
    let error = open_with(&dir.path().join("t.lance"), Access::ReadOnly, &[])
        .err()
        .expect("refused");
    assert!(error.message.contains("is a single Lance table"), "{error}");
}

#[test]
fn writes_are_tagged_so_a_rollback_can_restore_the_previous_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_with(dir.path(), Access::ReadWrite, &[]).expect("opens");
    store
        .load(
            &request("t", 4, DistanceMetric::Cosine, LoadMode::Create),
            stream(&records(10, 4, 0), 4),
        )
        .expect("creates");
    let before = store.describe("t").expect("describes");
    let version = before.extras["lance_version"].as_u64().expect("version");
    store
        .load(
            &request("t", 4, DistanceMetric::Cosine, LoadMode::Upsert),
            stream(&records(20, 4, 1), 4),
        )
        .expect("upserts");
    let after = store.describe("t").expect("describes");
    assert_eq!(after.count, 20);
    assert_eq!(after.metric, DistanceMetric::Cosine);
    let tag = format!("ragged-before-v{version}");
    assert_eq!(after.extras["lance_tags"], serde_json::json!([tag]));

    // Restoring the tag (what a rollback does) gives the table as it was.
    let uri = dir.path().to_str().expect("utf-8").to_owned();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let db = lancedb::connect(&uri).execute().await.expect("connects");
        let table = db.open_table("t").execute().await.expect("opens");
        table.checkout_tag(&tag).await.expect("checks out");
        table.restore().await.expect("restores");
        assert_eq!(table.count_rows(None).await.expect("counts"), 10);
    });
    let restored = extract_all(store.as_ref(), "t", 0);
    assert_eq!(restored, records(10, 4, 0));
}

#[test]
fn large_tables_get_a_vector_index_with_the_collection_metric() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_with(dir.path(), Access::ReadWrite, &[("index_min_rows", "300")]).expect("opens");
    let all = records(400, 8, 0);
    store
        .load(
            &request("big", 8, DistanceMetric::Ip, LoadMode::Create),
            stream(&all, 8),
        )
        .expect("loads");
    let uri = dir.path().to_str().expect("utf-8").to_owned();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let indices = runtime.block_on(async {
        let db = lancedb::connect(&uri).execute().await.expect("connects");
        let table = db.open_table("big").execute().await.expect("opens");
        table.list_indices().await.expect("lists")
    });
    assert_eq!(indices.len(), 1, "{indices:?}");
    assert_eq!(indices[0].columns, ["vector"]);
    assert_eq!(format!("{:?}", indices[0].index_type), "IvfHnswSq");

    // The index is used with the collection's metric: distances are -a·b.
    let probe = &all[42];
    let hits = store.query("big", &probe.embedding, 5).expect("queries");
    assert!(hits.windows(2).all(|w| w[0].distance <= w[1].distance), "{hits:?}");
    let best = all
        .iter()
        .map(|r| DistanceMetric::Ip.distance(&probe.embedding, &r.embedding))
        .fold(f32::INFINITY, f32::min);
    assert!((hits[0].distance - best).abs() < 1e-3, "{hits:?} vs {best}");

    let report = store.storage("big").expect("storage");
    assert_eq!(report.records, 400);
    assert!(report.index_bytes > 0, "{report:?}");
    assert!(
        report.vectors_bytes == 400 * 8 * 4 && report.documents_bytes > 0,
        "{report:?}"
    );
    assert!(report.vectors_bytes + report.documents_bytes + report.index_bytes <= report.total_bytes);
}
