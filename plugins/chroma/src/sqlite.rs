//! Opening `chroma.sqlite3`: read-only without side effects, version checks, and value decoding.

use std::path::{Path, PathBuf};

use ragged_plugin_api::{ErrorCode, PluginError};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};

use crate::value::MetaValue;

/// The database file inside a persistent directory.
pub const DB_FILE: &str = "chroma.sqlite3";

/// Highest migration per directory that this plugin understands (chromadb 1.5.9).
const KNOWN: [(&str, i64); 3] = [("sysdb", 10), ("metadb", 6), ("embeddings_queue", 2)];
/// Lowest migration per directory it needs: a store opened by chroma 1.0 or later (integer
/// `max_seq_id`, `collections.config_json_str`, the `embeddings_queue_config` table).
const REQUIRED: [(&str, i64); 3] = [("sysdb", 9), ("metadb", 5), ("embeddings_queue", 2)];

/// The database path of a persistent directory.
pub fn db_path(root: &Path) -> PathBuf {
    root.join(DB_FILE)
}

/// Turns a sqlite error into a plugin error naming the database file.
pub fn sql_error(path: &Path, error: rusqlite::Error) -> PluginError {
    PluginError::new(ErrorCode::Io, format!("{}: {error}", path.display()))
}

/// Refuses a database whose rollback journal is hot: a writer crashed mid-transaction, and
/// reading it read-only would either fail later or see half a transaction.
pub fn check_no_hot_journal(db: &Path) -> Result<(), PluginError> {
    let journal = PathBuf::from(format!("{}-journal", db.display()));
    let Ok(bytes) = std::fs::read(&journal) else {
        return Ok(());
    };
    // A journal whose header is all zeros (journal_mode=PERSIST) or that is empty is not hot.
    if bytes.iter().take(28).all(|b| *b == 0) {
        return Ok(());
    }
    Err(PluginError::new(
        ErrorCode::Corrupt,
        format!(
            "{}: hot rollback journal: a writer (chroma?) is running or crashed mid-transaction",
            journal.display()
        ),
    )
    .with_help("stop every chroma process; opening the store once with chromadb rolls the journal back"))
}

/// Refuses a database in WAL mode that still has a write-ahead log: chroma never uses WAL mode,
/// and a read-only connection cannot recover it.
fn check_no_wal(db: &Path) -> Result<(), PluginError> {
    let wal = PathBuf::from(format!("{}-wal", db.display()));
    match std::fs::metadata(&wal) {
        Ok(meta) if meta.len() > 0 => Err(PluginError::new(
            ErrorCode::Corrupt,
            format!(
                "{}: unexpected sqlite write-ahead log (chroma does not use wal mode)",
                wal.display()
            ),
        )),
        _ => Ok(()),
    }
}

/// Opens the database read-only. Nothing under the directory is created or changed.
pub fn open_read_only(root: &Path) -> Result<Connection, PluginError> {
    let db = db_path(root);
    if !db.is_file() {
        return Err(PluginError::not_found(format!(
            "{}: no chroma database (not a chromadb persistent directory)",
            db.display()
        )));
    }
    check_no_hot_journal(&db)?;
    check_no_wal(&db)?;
    let uri = format!("file:{}?mode=ro", percent_encode(&db));
    let conn = Connection::open_with_flags(
        &uri,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| sql_error(&db, e))?;
    check_header(&db)?;
    Ok(conn)
}

/// Opens the database for writing (it must exist).
pub fn open_read_write(root: &Path) -> Result<Connection, PluginError> {
    let db = db_path(root);
    check_no_hot_journal(&db)?;
    check_no_wal(&db)?;
    let conn = Connection::open_with_flags(&db, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|e| sql_error(&db, e))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(|e| sql_error(&db, e))?;
    // The bundled sqlite enforces foreign keys by default, and chroma's `segments` table refers
    // to a table `collection` that never existed: enforcing would refuse every segment row.
    conn.pragma_update(None, "foreign_keys", "OFF")
        .map_err(|e| sql_error(&db, e))?;
    Ok(conn)
}

/// Checks the sqlite magic so a truncated or foreign file is named as such, not as an I/O error.
fn check_header(db: &Path) -> Result<(), PluginError> {
    use std::io::Read;
    let mut header = [0u8; 16];
    let mut file = std::fs::File::open(db).map_err(|e| PluginError::io(db, &e))?;
    let read = file.read(&mut header).map_err(|e| PluginError::io(db, &e))?;
    if read < 16 || &header != b"SQLite format 3\0" {
        return Err(PluginError::corrupt(format!(
            "{}: not a sqlite database (bad header)",
            db.display()
        )));
    }
    Ok(())
}

/// Escapes the characters that have a meaning in a sqlite URI (`%` first, so it is not doubled).
fn percent_encode(path: &Path) -> String {
    path.to_string_lossy()
        .replace('%', "%25")
        .replace('?', "%3F")
        .replace('#', "%23")
}

/// The schema versions (max migration per directory), refused when unknown or too old.
pub fn check_migrations(conn: &Connection, db: &Path) -> Result<Vec<(String, i64)>, PluginError> {
    let has_table: bool = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type='table' AND name='migrations'",
            [],
            |row| row.get::<_, i64>(0),
        )
        .map(|n| n > 0)
        .map_err(|e| classify(db, e))?;
    if !has_table {
        return Err(PluginError::new(
            ErrorCode::Incompatible,
            format!("{}: no migrations table (not a chroma >= 0.4 database)", db.display()),
        ));
    }
    let mut statement = conn
        .prepare("SELECT dir, max(version) FROM migrations GROUP BY dir ORDER BY dir")
        .map_err(|e| classify(db, e))?;
    let versions: Vec<(String, i64)> = statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .and_then(|rows| rows.collect())
        .map_err(|e| classify(db, e))?;
    for (dir, version) in &versions {
        let Some((_, known)) = KNOWN.iter().find(|(d, _)| d == dir) else {
            return Err(PluginError::new(
                ErrorCode::Incompatible,
                format!(
                    "{}: unknown migration directory '{dir}' (written by a newer chroma?)",
                    db.display()
                ),
            ));
        };
        if version > known {
            return Err(PluginError::new(
                ErrorCode::Incompatible,
                format!(
                    "{}: schema {dir} version {version} is newer than the supported {known} (chromadb 1.5)",
                    db.display()
                ),
            ));
        }
    }
    for (dir, required) in REQUIRED {
        let found = versions.iter().find(|(d, _)| d == dir).map_or(0, |(_, v)| *v);
        if found < required {
            return Err(PluginError::new(
                ErrorCode::Incompatible,
                format!(
                    "{}: schema {dir} version {found} is older than the required {required} (chromadb >= 1.0)",
                    db.display()
                ),
            )
            .with_help("open the directory once with chromadb 1.x to migrate it"));
        }
    }
    Ok(versions)
}

/// A sqlite error while reading, naming the file; damaged files become `Corrupt`.
pub fn classify(db: &Path, error: rusqlite::Error) -> PluginError {
    let code = match &error {
        rusqlite::Error::SqliteFailure(e, _)
            if matches!(
                e.code,
                rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase
            ) =>
        {
            ErrorCode::Corrupt
        }
        rusqlite::Error::SqliteFailure(e, _) if e.code == rusqlite::ErrorCode::ReadOnly => ErrorCode::Corrupt,
        rusqlite::Error::InvalidColumnType(..) | rusqlite::Error::FromSqlConversionFailure(..) => ErrorCode::Corrupt,
        _ => ErrorCode::Io,
    };
    PluginError::new(code, format!("{}: {error}", db.display()))
}

/// Whether a table exists (older schemas lack `embedding_metadata_array`).
pub fn table_exists(conn: &Connection, db: &Path, name: &str) -> Result<bool, PluginError> {
    conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type='table' AND name=?1",
        [name],
        |row| row.get::<_, i64>(0),
    )
    .map(|n| n > 0)
    .map_err(|e| classify(db, e))
}

/// A metadata value as the four typed columns hold it, a string borrowed from the row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Typed<'a> {
    Str(&'a str),
    Int(i64),
    Float(f64),
    Bool(bool),
}

/// The value of the four typed columns, read in chroma's precedence: string, int, float, bool
/// (the first non-NULL wins).
pub fn typed<'a>(
    string: ValueRef<'a>,
    int: ValueRef<'a>,
    float: ValueRef<'a>,
    boolean: ValueRef<'a>,
) -> Result<Option<Typed<'a>>, String> {
    fn number(v: ValueRef<'_>) -> Option<f64> {
        match v {
            ValueRef::Real(x) => Some(x),
            ValueRef::Integer(i) => Some(i as f64),
            _ => None,
        }
    }
    match string {
        ValueRef::Null => {}
        ValueRef::Text(t) => {
            return std::str::from_utf8(t)
                .map(|s| Some(Typed::Str(s)))
                .map_err(|_| "string value is not utf-8".to_owned());
        }
        other => return Err(format!("string value has sqlite type {:?}", other.data_type())),
    }
    match int {
        ValueRef::Null => {}
        ValueRef::Integer(i) => return Ok(Some(Typed::Int(i))),
        other => return Err(format!("int value has sqlite type {:?}", other.data_type())),
    }
    if let ValueRef::Null = float {
    } else {
        return number(float)
            .map(|x| Some(Typed::Float(x)))
            .ok_or_else(|| format!("float value has sqlite type {:?}", float.data_type()));
    }
    match boolean {
        ValueRef::Null => Ok(None),
        ValueRef::Integer(i) => Ok(Some(Typed::Bool(i != 0))),
        other => Err(format!("bool value has sqlite type {:?}", other.data_type())),
    }
}

/// [`typed`] as an owned value.
pub fn scalar(
    string: ValueRef<'_>,
    int: ValueRef<'_>,
    float: ValueRef<'_>,
    boolean: ValueRef<'_>,
) -> Result<Option<MetaValue>, String> {
    Ok(typed(string, int, float, boolean)?.map(|value| match value {
        Typed::Str(s) => MetaValue::Str(s.to_owned()),
        Typed::Int(i) => MetaValue::Int(i),
        Typed::Float(x) => MetaValue::Float(x),
        Typed::Bool(b) => MetaValue::Bool(b),
    }))
}

/// A sequence number: an INTEGER since chroma 1.0, an 8-byte big-endian BLOB before.
pub fn seq_id(value: ValueRef<'_>) -> Result<i64, String> {
    match value {
        ValueRef::Null => Ok(0),
        ValueRef::Integer(i) => Ok(i),
        ValueRef::Blob(b) if b.len() == 8 => {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(b);
            i64::try_from(u64::from_be_bytes(bytes)).map_err(|_| "sequence id out of range".to_owned())
        }
        other => Err(format!("sequence id has sqlite type {:?}", other.data_type())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalar_precedence_is_string_int_float_bool() {
        let v = scalar(
            ValueRef::Null,
            ValueRef::Integer(3),
            ValueRef::Real(1.5),
            ValueRef::Null,
        );
        assert_eq!(v, Ok(Some(MetaValue::Int(3))));
        let v = scalar(ValueRef::Null, ValueRef::Null, ValueRef::Integer(2), ValueRef::Null);
        assert_eq!(v, Ok(Some(MetaValue::Float(2.0))));
        let v = scalar(ValueRef::Null, ValueRef::Null, ValueRef::Null, ValueRef::Integer(1));
        assert_eq!(v, Ok(Some(MetaValue::Bool(true))));
        let v = scalar(ValueRef::Null, ValueRef::Null, ValueRef::Null, ValueRef::Null);
        assert_eq!(v, Ok(None));
    }

    #[test]
    fn legacy_blob_sequence_ids_are_big_endian() {
        assert_eq!(seq_id(ValueRef::Blob(&[0, 0, 0, 0, 0, 0, 1, 2])), Ok(258));
        assert_eq!(seq_id(ValueRef::Integer(7)), Ok(7));
    }

    #[test]
    fn a_hot_journal_is_refused_with_its_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join(DB_FILE);
        std::fs::write(&db, b"SQLite format 3\0").expect("write");
        check_no_hot_journal(&db).expect("no journal yet");
        std::fs::write(dir.path().join("chroma.sqlite3-journal"), [0xd9u8; 64]).expect("write");
        let error = check_no_hot_journal(&db).expect_err("hot");
        assert!(
            error.message.contains("chroma.sqlite3-journal: hot rollback journal"),
            "{error}"
        );
    }

    #[test]
    fn a_foreign_file_is_corrupt() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(DB_FILE), b"hello, not sqlite at all").expect("write");
        let error = open_read_only(dir.path()).expect_err("not sqlite");
        assert_eq!(error.code, ErrorCode::Corrupt);
        assert!(error.message.contains("not a sqlite database"), "{error}");
    }
}
