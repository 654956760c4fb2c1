//! The rows of `chroma.sqlite3`, read through the store: a small store written by chromadb 1.5
//! (`fixtures/chroma-store`: three collections, HNSW files, a metadata segment with arrays, a log
//! tail) has its rows changed as the input says, then every collection is listed, described,
//! counted, extracted, sampled, fetched, queried and measured. The store is opened read-only, so
//! not a byte of it may change.
//!
//! Input: a sequence of edits, each `[action, column, row, ...value]`: action 0 sets a cell (value
//! `[kind, len, bytes...]`: NULL, integer, real, text, blob, or a splice into the current text),
//! 1 deletes the row, 2 inserts a copy of it.
#![no_main]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use libfuzzer_sys::fuzz_target;
use ragged_fuzz::scratch;
use ragged_plugin_api::{Access, Backend, BatchStream, ExtractRequest, OpenRequest, Plugin};
use ragged_plugin_chroma::ChromaStore;
use rusqlite::Connection;
use rusqlite::types::Value;

/// The columns the reader looks at, by table.
const COLUMNS: &[(&str, &str)] = &[
    ("collections", "id"),
    ("collections", "name"),
    ("collections", "dimension"),
    ("collections", "database_id"),
    ("collections", "config_json_str"),
    ("collections", "schema_str"),
    ("collection_metadata", "key"),
    ("collection_metadata", "str_value"),
    ("collection_metadata", "int_value"),
    ("collection_metadata", "float_value"),
    ("collection_metadata", "bool_value"),
    ("segments", "id"),
    ("segments", "type"),
    ("segments", "scope"),
    ("segments", "collection"),
    ("databases", "id"),
    ("databases", "name"),
    ("databases", "tenant_id"),
    ("tenants", "id"),
    ("migrations", "dir"),
    ("migrations", "version"),
    ("max_seq_id", "segment_id"),
    ("max_seq_id", "seq_id"),
    ("embeddings", "id"),
    ("embeddings", "segment_id"),
    ("embeddings", "embedding_id"),
    ("embeddings", "seq_id"),
    ("embedding_metadata", "id"),
    ("embedding_metadata", "key"),
    ("embedding_metadata", "string_value"),
    ("embedding_metadata", "int_value"),
    ("embedding_metadata", "float_value"),
    ("embedding_metadata", "bool_value"),
    ("embedding_metadata_array", "id"),
    ("embedding_metadata_array", "key"),
    ("embedding_metadata_array", "string_value"),
    ("embedding_metadata_array", "int_value"),
    ("embedding_metadata_array", "float_value"),
    ("embedding_metadata_array", "bool_value"),
    ("embeddings_queue", "seq_id"),
    ("embeddings_queue", "created_at"),
    ("embeddings_queue", "operation"),
    ("embeddings_queue", "topic"),
    ("embeddings_queue", "id"),
    ("embeddings_queue", "vector"),
    ("embeddings_queue", "encoding"),
    ("embeddings_queue", "metadata"),
];

/// Queries are run only on collections of at most this many dimensions.
const MAX_QUERY_DIMENSION: u32 = 4096;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/chroma-store")
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("a scratch store");
    for entry in std::fs::read_dir(from).expect("the fixture").flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("a fixture file");
        }
    }
}

fn snapshot(dir: &Path, into: &mut BTreeMap<PathBuf, Vec<u8>>) {
    for entry in std::fs::read_dir(dir).expect("the store").flatten() {
        if entry.path().is_dir() {
            snapshot(&entry.path(), into);
        } else {
            into.insert(entry.path(), std::fs::read(entry.path()).expect("a store file"));
        }
    }
}

/// Consumes the next byte of an edit, or ends the edits.
fn next(input: &mut &[u8]) -> Option<u8> {
    let (first, rest) = input.split_first()?;
    *input = rest;
    Some(*first)
}

fn take<'a>(input: &mut &'a [u8], len: usize) -> &'a [u8] {
    let (taken, rest) = input.split_at(len.min(input.len()));
    *input = rest;
    taken
}

/// Applies the edits; statements the schema refuses (constraints, types) are skipped.
fn edit(db: &Path, mut input: &[u8]) {
    let conn = Connection::open(db).expect("the scratch database");
    while let (Some(action), Some(column), Some(row)) = (next(&mut input), next(&mut input), next(&mut input)) {
        let (table, column) = COLUMNS[usize::from(column) % COLUMNS.len()];
        let rows: i64 = conn
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap_or(0);
        if rows == 0 {
            continue;
        }
        let Ok(rowid): Result<i64, _> = conn.query_row(
            &format!("SELECT rowid FROM {table} LIMIT 1 OFFSET ?1"),
            [i64::from(row) % rows],
            |r| r.get(0),
        ) else {
            continue;
        };
        let _ = match action % 3 {
            0 => {
                let kind = next(&mut input).unwrap_or(0);
                let len = usize::from(next(&mut input).unwrap_or(0));
                let bytes = take(&mut input, len);
                let number = |bytes: &[u8]| {
                    let mut word = [0u8; 8];
                    word[..bytes.len().min(8)].copy_from_slice(&bytes[..bytes.len().min(8)]);
                    word
                };
                let (expression, value) = match kind % 6 {
                    0 => ("?1".to_owned(), Value::Null),
                    1 => ("?1".to_owned(), Value::Integer(i64::from_le_bytes(number(bytes)))),
                    2 => ("?1".to_owned(), Value::Real(f64::from_le_bytes(number(bytes)))),
                    3 => ("CAST(?1 AS TEXT)".to_owned(), Value::Blob(bytes.to_vec())),
                    4 => ("?1".to_owned(), Value::Blob(bytes.to_vec())),
                    _ => {
                        // Replace `len` bytes at `at` of the current text: small damage to JSON.
                        let at = i64::from(bytes.first().copied().unwrap_or(0));
                        let cut = i64::from(bytes.get(1).copied().unwrap_or(0) % 8);
                        let splice = bytes.get(2..).unwrap_or(&[]).to_vec();
                        (
                            format!(
                                "substr({column}, 1, {at}) || CAST(?1 AS TEXT) || substr({column}, {at} + {cut} + 1)"
                            ),
                            Value::Blob(splice),
                        )
                    }
                };
                conn.execute(
                    &format!("UPDATE {table} SET {column} = {expression} WHERE rowid = ?2"),
                    rusqlite::params![value, rowid],
                )
            }
            1 => conn.execute(&format!("DELETE FROM {table} WHERE rowid = ?1"), [rowid]),
            _ => conn.execute(
                &format!("INSERT INTO {table} SELECT * FROM {table} WHERE rowid = ?1"),
                [rowid],
            ),
        };
    }
}

fn drain(stream: Result<BatchStream, ragged_plugin_api::PluginError>) -> Vec<String> {
    let mut ids = Vec::new();
    let Ok(reader) = stream.and_then(|s| {
        s.into_reader()
            .map_err(|e| ragged_plugin_api::PluginError::corrupt(e.to_string()))
    }) else {
        return ids;
    };
    for batch in reader {
        let Ok(batch) = batch else { break };
        if let Some(column) = batch.column_by_name("id").and_then(|c| {
            c.as_any()
                .downcast_ref::<ragged_plugin_api::arrow::arrow_array::StringArray>()
        }) {
            ids.extend(column.iter().flatten().map(str::to_owned));
        }
    }
    ids
}

fn read_everything(store: &ChromaStore) {
    let Ok(names) = store.list_collections() else { return };
    for name in names {
        let Ok(info) = store.describe(&name) else { continue };
        let _ = store.count(&name);
        let mut ids = drain(store.extract(
            &name,
            &ExtractRequest::records(3, 0),
        ));
        drain(store.extract(
            &name,
            &ExtractRequest::records(2, 1),
        ));
        drain(store.sample(&name, 2, 7));
        ids.push("r1".to_owned());
        drain(store.fetch(&name, &ids));
        if info.dimension <= MAX_QUERY_DIMENSION {
            let query: Vec<f32> = (0..info.dimension).map(|i| (i as f32).cos()).collect();
            let _ = store.query(&name, &query, 3);
        }
        let _ = (store.storage(&name), store.files(&name));
    }
}

fuzz_target!(|data: &[u8]| {
    let dir = scratch();
    let root = dir.path().join("store");
    copy_tree(&fixture(), &root);
    edit(&root.join("chroma.sqlite3"), data);
    let mut before = BTreeMap::new();
    snapshot(&root, &mut before);
    let request = OpenRequest {
        location: root.display().to_string(),
        options: BTreeMap::new(),
        access: Access::ReadOnly,
    };
    if let Ok(store) = ChromaStore::open(&request) {
        read_everything(&store);
    }
    let mut after = BTreeMap::new();
    snapshot(&root, &mut after);
    assert!(before == after, "reading a store opened read-only changed its files");
});
