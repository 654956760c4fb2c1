//! The lance plugin through the real plugin boundary (in-process), without Python: load modes,
//! replays, refusals, version tags for rollback, delete, the vector index and the storage report.

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
        .extract(name, &ExtractRequest::records(50, start))
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
fn the_loads_of_a_migration_append_new_ids_in_few_commits_and_merge_replays() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_with(dir.path(), Access::ReadWrite, &[]).expect("opens");
    let all = records(300, 4, 0);
    let load = |store: &dyn Backend, mode, records: &[Record]| {
        store
            .load(&request("t", 4, DistanceMetric::L2, mode), stream(records, 4))
            .expect("loads");
    };
    // As the host loads a migration: a create, then more loads of new ids (64-record batches).
    load(store.as_ref(), LoadMode::Create, &all[..150]);
    load(store.as_ref(), LoadMode::Upsert, &all[150..]);
    let versions = |store: &dyn Backend| store.describe("t").expect("describes").extras["lance_versions"].clone();
    // The first load creates the table and the second appends: one commit each, not one merge
    // per batch.
    assert_eq!(versions(store.as_ref()), 2);
    assert_eq!(extract_all(store.as_ref(), "t", 0), all);

    // Replays, by the same store and by a fresh one, replace instead of duplicating.
    let mut replay = records(300, 4, 1)[100..200].to_vec();
    replay[0].document = Some("replayed".into());
    load(store.as_ref(), LoadMode::Upsert, &replay);
    drop(store);
    let reopened = open_with(dir.path(), Access::ReadWrite, &[]).expect("opens");
    load(reopened.as_ref(), LoadMode::Upsert, &all[250..]);
    let got = extract_all(reopened.as_ref(), "t", 0);
    assert_eq!(got.len(), 300);
    let r100 = got.iter().find(|r| r.id == "r0100").expect("r0100");
    assert_eq!(r100.document.as_deref(), Some("replayed"));
}

#[test]
fn a_load_stopped_by_a_bad_record_commits_none_of_its_batches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_with(dir.path(), Access::ReadWrite, &[]).expect("opens");
    // The bad record comes batches after the first: Lance is already writing those.
    let mut bad = records(300, 4, 0);
    bad[250].metadata = Some(r#"{"a": null}"#.into());
    let load = |name: &str, mode, records: &[Record]| {
        store.load(&request(name, 4, DistanceMetric::L2, mode), stream(records, 4))
    };

    // Into a new table: no table at all, and the name stays free.
    let error = load("new", LoadMode::Create, &bad).expect_err("bad metadata");
    assert!(error.message.contains("record 'r0250'"), "{error}");
    assert_eq!(store.list_collections().expect("lists"), Vec::<String>::new());
    load("new", LoadMode::Create, &bad[..100]).expect("the name is still free");
    assert_eq!(store.count("new").expect("counts"), 100);

    // Appending to a table the store's loads created: the table as it was, not one more version.
    let versions = || store.describe("new").expect("describes").extras["lance_versions"].clone();
    let before = (versions(), extract_all(store.as_ref(), "new", 0));
    let error = load("new", LoadMode::Upsert, &bad[100..]).expect_err("bad metadata");
    assert!(error.message.contains("record 'r0250'"), "{error}");
    assert_eq!((versions(), extract_all(store.as_ref(), "new", 0)), before);
}

#[test]
fn vectors_with_nan_survive_bit_exact_in_a_create_an_append_and_a_merge() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_with(dir.path(), Access::ReadWrite, &[]).expect("opens");
    let mut all = records(200, 4, 0);
    // A NaN with a payload, infinities and a negative zero: only the bits say they survived.
    for (i, record) in all.iter_mut().enumerate().filter(|(i, _)| i % 40 == 7) {
        record.embedding = vec![
            f32::from_bits(0x7fc0_0000 | i as u32),
            f32::INFINITY,
            -0.0,
            f32::NEG_INFINITY,
        ];
    }
    let load = |mode, records: &[Record]| {
        store
            .load(&request("t", 4, DistanceMetric::L2, mode), stream(records, 4))
            .expect("loads")
    };
    load(LoadMode::Create, &all[..100]);
    load(LoadMode::Upsert, &all[100..]);
    // A replay: merged, since these ids are in the table.
    load(LoadMode::Upsert, &all[40..90]);
    // A merge moves the rows it replaces to the end of the table.
    let mut got = extract_all(store.as_ref(), "t", 0);
    got.sort_by(|a, b| a.id.cmp(&b.id));
    assert_bit_exact(&got, &all);
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

    // A deleted record leaves the indexed search too.
    assert_eq!(
        store.delete("big", std::slice::from_ref(&probe.id)).expect("deletes"),
        1
    );
    let hits = store.query("big", &probe.embedding, 5).expect("queries");
    assert!(hits.iter().all(|hit| hit.id != probe.id), "{hits:?}");
    store
        .load(
            &request("big", 8, DistanceMetric::Ip, LoadMode::Upsert),
            stream(std::slice::from_ref(probe), 8),
        )
        .expect("loads again");

    let report = store.storage("big").expect("storage");
    assert_eq!(report.records, 400);
    assert!(report.index_bytes > 0, "{report:?}");
    assert!(
        report.vectors_bytes == 400 * 8 * 4 && report.documents_bytes > 0,
        "{report:?}"
    );
    assert!(report.vectors_bytes + report.documents_bytes + report.index_bytes <= report.total_bytes);
}

/// Records compared field by field, embeddings by their bits.
fn assert_bit_exact(got: &[Record], expected: &[Record]) {
    let ids = |records: &[Record]| records.iter().map(|r| r.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(got), ids(expected));
    for (a, b) in got.iter().zip(expected) {
        assert_eq!((&a.document, &a.metadata), (&b.document, &b.metadata), "{}", a.id);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
        assert_eq!(bits(&a.embedding), bits(&b.embedding), "embedding of {}", a.id);
    }
}

fn fetch_all(store: &dyn Backend, name: &str, ids: &[String]) -> Vec<Record> {
    store
        .fetch(name, ids)
        .expect("fetches")
        .into_reader()
        .expect("reader")
        .flat_map(|b| batch_to_records(&b.expect("batch")).expect("records"))
        .collect()
}

#[test]
fn deleted_records_leave_every_read_and_come_back_when_loaded_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_with(dir.path(), Access::ReadWrite, &[]).expect("opens");
    let mut all = records(150, 6, 0);
    // Ids that need quoting in the SQL filter.
    for (record, id) in all
        .iter_mut()
        .zip(["it's", "back\\slash", "quote\"d", "50%_off", "x' OR '1'='1"])
    {
        record.id = id.to_owned();
    }
    store
        .load(&request("t", 6, DistanceMetric::L2, LoadMode::Create), stream(&all, 6))
        .expect("creates");
    let version = store.describe("t").expect("describes").extras["lance_version"].clone();

    let doomed: Vec<String> = ["it's", "back\\slash", "r0100", "missing", "r0100", "r0149"]
        .iter()
        .map(|id| (*id).to_owned())
        .collect();
    assert_eq!(store.delete("t", &doomed).expect("deletes"), 4);
    let kept: Vec<Record> = all.iter().filter(|r| !doomed.contains(&r.id)).cloned().collect();
    assert_eq!(store.count("t").expect("counts"), 146);
    assert_bit_exact(&extract_all(store.as_ref(), "t", 0), &kept);
    assert_bit_exact(&extract_all(store.as_ref(), "t", 99), &kept[99..]);
    assert!(fetch_all(store.as_ref(), "t", &doomed).is_empty());
    let asked = ["x' OR '1'='1".to_owned(), "r0099".to_owned()];
    assert_bit_exact(
        &fetch_all(store.as_ref(), "t", &asked),
        &[all[4].clone(), all[99].clone()],
    );
    for record in all.iter().filter(|r| doomed.contains(&r.id)) {
        let hits = store.query("t", &record.embedding, 150).expect("queries");
        assert_eq!(hits.len(), 146);
        assert!(hits.iter().all(|hit| !doomed.contains(&hit.id)), "{hits:?}");
    }
    // The version before the delete is tagged for a rollback.
    let described = store.describe("t").expect("describes");
    assert_eq!(
        described.extras["lance_tags"],
        serde_json::json!([format!("ragged-before-v{version}")])
    );

    // A second delete finds nothing and commits nothing.
    let after = described.extras["lance_version"].clone();
    assert_eq!(store.delete("t", &doomed).expect("deletes"), 0);
    assert_eq!(store.delete("t", &[]).expect("deletes"), 0);
    assert_eq!(store.describe("t").expect("describes").extras["lance_version"], after);

    // Loading a deleted id adds it again.
    let again: Vec<Record> = all.iter().filter(|r| doomed.contains(&r.id)).cloned().collect();
    store
        .load(
            &request("t", 6, DistanceMetric::L2, LoadMode::Upsert),
            stream(&again, 6),
        )
        .expect("loads");
    assert_eq!(store.count("t").expect("counts"), 150);
    assert_bit_exact(
        &fetch_all(store.as_ref(), "t", &doomed[..3]),
        &[all[0].clone(), all[1].clone(), all[100].clone()],
    );

    // Refusals: read-only, missing table.
    let reader = open_with(dir.path(), Access::ReadOnly, &[]).expect("opens");
    let error = reader.delete("t", &doomed).expect_err("read-only");
    assert_eq!(error.code, ErrorCode::ReadOnly);
    assert!(
        error.message.contains("open read-only, so delete is refused"),
        "{error}"
    );
    assert_eq!(store.count("t").expect("counts"), 150);
    let error = store.delete("nope", &doomed).expect_err("missing");
    assert_eq!(error.code, ErrorCode::NotFound);
}

#[test]
fn deleting_every_record_in_many_filters_leaves_an_empty_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_with(dir.path(), Access::ReadWrite, &[]).expect("opens");
    let all = records(2100, 4, 0);
    store
        .load(
            &request("t", 4, DistanceMetric::Cosine, LoadMode::Create),
            stream(&all, 4),
        )
        .expect("creates");
    // More ids than one filter takes (4096), absent ones mixed in.
    let every: Vec<String> = all
        .iter()
        .flat_map(|r| [r.id.clone(), format!("{}-absent", r.id)])
        .collect();
    assert_eq!(store.delete("t", &every).expect("deletes"), 2100);
    let empty = store.describe("t").expect("describes");
    assert_eq!(
        (empty.dimension, empty.metric, empty.count),
        (4, DistanceMetric::Cosine, 0)
    );
    assert_eq!(extract_all(store.as_ref(), "t", 0), Vec::<Record>::new());
    assert!(store.query("t", &all[0].embedding, 5).expect("queries").is_empty());
    store
        .load(
            &request("t", 4, DistanceMetric::Cosine, LoadMode::Append),
            stream(&all[..3], 4),
        )
        .expect("loads");
    assert_bit_exact(&extract_all(store.as_ref(), "t", 0), &all[..3]);
}

#[test]
fn a_fetch_of_more_ids_than_one_filter_holds_keeps_the_order_asked() {
    // One `IN (...)` filter holds 4096 ids; this fetch needs two.
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_with(dir.path(), Access::ReadWrite, &[]).expect("opens");
    let all = records(5000, 2, 0);
    store
        .load(
            &request("many", 2, DistanceMetric::L2, LoadMode::Create),
            stream(&all, 2),
        )
        .expect("loads");
    // Six records of every seven (4285), last first, with five ids that do not exist in between.
    let wanted: Vec<Record> = (all.iter().rev().enumerate())
        .filter(|(i, _)| i % 7 != 0)
        .map(|(_, r)| r.clone())
        .collect();
    let mut asked = Vec::new();
    for (i, record) in wanted.iter().enumerate() {
        asked.push(record.id.clone());
        if i % 1000 == 0 {
            asked.push(format!("absent-{i}"));
        }
    }
    assert_bit_exact(&fetch_all(store.as_ref(), "many", &asked), &wanted);
}
