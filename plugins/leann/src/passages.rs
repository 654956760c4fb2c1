//! The text side of an index: `NAME.leann.passages.jsonl` (one JSON object per passage),
//! `NAME.leann.passages.idx` (a Python pickle mapping passage id to the byte offset of its line)
//! and `NAME.ids.txt` (line `i` is the passage id of graph node `i`).
//!
//! A passage line is `{"id": …, "text": …, "metadata": {…}}`. LEANN has no null text or null
//! metadata, so a ragged record without a document (or without metadata) is written with `""`
//! (or `{}`) and the line gets an extra key, `"ragged_nulls": ["document", "metadata"]`, naming the
//! fields that were null. LEANN ignores keys it does not know.

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;

use ragged_plugin_api::PluginError;
use serde_json::Value;

/// The extra passage key that records which fields were null.
const NULLS_KEY: &str = "ragged_nulls";

/// One passage as ragged sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Passage {
    pub id: String,
    pub document: Option<String>,
    /// A JSON object, as text.
    pub metadata: Option<String>,
}

/// The line (with its `\n`) for a record; `metadata` must be a JSON object when present.
pub(crate) fn encode_line(id: &str, document: Option<&str>, metadata: Option<&str>) -> Result<Vec<u8>, PluginError> {
    let metadata_value = match metadata {
        Some(text) => {
            let value: Value = serde_json::from_str(text)
                .map_err(|e| PluginError::invalid_input(format!("record '{id}': metadata is not valid JSON: {e}")))?;
            if !value.is_object() {
                return Err(PluginError::invalid_input(format!(
                    "record '{id}': metadata must be a JSON object"
                )));
            }
            value
        }
        None => Value::Object(serde_json::Map::new()),
    };
    let string = |s: &str| Value::String(s.to_owned()).to_string();
    // Key order and separators as Python's json.dump writes them, so lines look like LEANN's own.
    let mut line = format!(
        "{{\"id\": {}, \"text\": {}, \"metadata\": {}",
        string(id),
        string(document.unwrap_or("")),
        metadata_value
    );
    let nulls: Vec<&str> = [
        (document.is_none(), "\"document\""),
        (metadata.is_none(), "\"metadata\""),
    ]
    .iter()
    .filter(|(null, _)| *null)
    .map(|(_, name)| *name)
    .collect();
    if !nulls.is_empty() {
        line.push_str(&format!(", \"{NULLS_KEY}\": [{}]", nulls.join(", ")));
    }
    line.push_str("}\n");
    Ok(line.into_bytes())
}

/// Parses one passage line (LEANN's or ragged's).
pub(crate) fn decode_line(line: &str, path: &Path) -> Result<Passage, PluginError> {
    let corrupt = |what: String| PluginError::corrupt(format!("{}: {what}", path.display()));
    let value: Value = serde_json::from_str(line).map_err(|e| corrupt(format!("a passage line is not JSON: {e}")))?;
    let Value::Object(object) = value else {
        return Err(corrupt("a passage line is not a JSON object".into()));
    };
    let id = match object.get("id") {
        Some(Value::String(id)) => id.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err(corrupt("a passage has no string \"id\"".into())),
    };
    let nulls: Vec<&str> = match object.get(NULLS_KEY) {
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let document = match object.get("text") {
        _ if nulls.contains(&"document") => None,
        Some(Value::String(text)) => Some(text.clone()),
        None | Some(Value::Null) => None,
        Some(_) => return Err(corrupt(format!("passage '{id}' has a \"text\" that is not a string"))),
    };
    let metadata = match object.get("metadata") {
        _ if nulls.contains(&"metadata") => None,
        Some(value @ Value::Object(_)) => Some(value.to_string()),
        None | Some(Value::Null) => None,
        Some(_) => {
            return Err(corrupt(format!(
                "passage '{id}' has \"metadata\" that is not an object"
            )));
        }
    };
    Ok(Passage { id, document, metadata })
}

/// Reads passage lines at given byte offsets, cheaply when the offsets increase.
pub(crate) struct LineReader {
    reader: BufReader<fs::File>,
    position: u64,
    path: std::path::PathBuf,
    line: String,
}

impl LineReader {
    pub fn open(path: &Path) -> Result<LineReader, PluginError> {
        let file = fs::File::open(path).map_err(|e| PluginError::io(path, &e))?;
        Ok(LineReader {
            reader: BufReader::with_capacity(1 << 16, file),
            position: 0,
            path: path.to_owned(),
            line: String::new(),
        })
    }

    /// The raw line at `offset`, without its newline.
    pub fn raw_at(&mut self, offset: u64) -> Result<&str, PluginError> {
        use std::io::Seek;
        if offset != self.position {
            let delta = offset as i64 - self.position as i64;
            self.reader
                .seek_relative(delta)
                .map_err(|e| PluginError::io(&self.path, &e))?;
        }
        self.line.clear();
        let read = self
            .reader
            .read_line(&mut self.line)
            .map_err(|e| PluginError::io(&self.path, &e))?;
        self.position = offset + read as u64;
        if read == 0 {
            // Keep the reader's idea of the position right for the next call.
            self.position = self
                .reader
                .stream_position()
                .map_err(|e| PluginError::io(&self.path, &e))?;
            return Err(PluginError::corrupt(format!(
                "{}: no passage at byte {offset} (the file ends first)",
                self.path.display()
            )));
        }
        Ok(self.line.trim_end_matches(['\n', '\r']))
    }

    pub fn passage_at(&mut self, offset: u64) -> Result<Passage, PluginError> {
        let path = self.path.clone();
        let line = self.raw_at(offset)?;
        decode_line(line, &path)
    }
}

/// Protocol-2 pickle of `{id: offset}` in the given order, as `pickle.load` reads it.
pub(crate) fn encode_offsets(entries: &[(String, u64)]) -> Vec<u8> {
    let mut out = vec![0x80, 0x02, b'}'];
    // Batches of SETITEMS keep the pickle small and fast to load.
    for chunk in entries.chunks(1000) {
        out.push(b'(');
        for (id, offset) in chunk {
            out.push(b'X');
            out.extend_from_slice(&(id.len() as u32).to_le_bytes());
            out.extend_from_slice(id.as_bytes());
            match *offset {
                v if v < 256 => out.extend_from_slice(&[b'K', v as u8]),
                v if v < 65536 => {
                    out.push(b'M');
                    out.extend_from_slice(&(v as u16).to_le_bytes());
                }
                v if v < 1 << 31 => {
                    out.push(b'J');
                    out.extend_from_slice(&(v as i32).to_le_bytes());
                }
                v => {
                    // LONG1: little-endian two's complement; 9 bytes hold any u64 with a zero sign byte.
                    out.extend_from_slice(&[0x8a, 9]);
                    out.extend_from_slice(&v.to_le_bytes());
                    out.push(0);
                }
            }
        }
        out.push(b'u');
    }
    out.push(b'.');
    out
}

/// Reads a passages offset pickle.
pub(crate) fn read_offsets(path: &Path) -> Result<HashMap<String, u64>, PluginError> {
    let bytes = fs::read(path).map_err(|e| PluginError::io(path, &e))?;
    serde_pickle::from_slice(&bytes, serde_pickle::DeOptions::new()).map_err(|e| {
        PluginError::corrupt(format!(
            "{}: not a pickled dict of passage id to offset: {e}",
            path.display()
        ))
    })
}

/// Scans a passages file for each id's offset (the last line of an id wins), for indexes whose
/// pickle is missing.
pub(crate) fn scan_offsets(path: &Path) -> Result<HashMap<String, u64>, PluginError> {
    let mut reader = BufReader::new(fs::File::open(path).map_err(|e| PluginError::io(path, &e))?);
    let mut offsets = HashMap::new();
    let mut position = 0u64;
    let mut line = String::new();
    loop {
        line.clear();
        let read = reader.read_line(&mut line).map_err(|e| PluginError::io(path, &e))?;
        if read == 0 {
            return Ok(offsets);
        }
        if !line.trim().is_empty() {
            offsets.insert(decode_line(&line, path)?.id, position);
        }
        position += read as u64;
    }
}

/// Reads `ids.txt`: line `i` is the passage id of node `i`.
pub(crate) fn read_ids(path: &Path) -> Result<Vec<String>, PluginError> {
    let text = fs::read_to_string(path).map_err(|e| PluginError::io(path, &e))?;
    Ok(text.lines().map(str::to_owned).collect())
}

/// Why an id cannot be written: `ids.txt` is read line by line with Python's universal newlines.
pub(crate) fn id_problem(id: &str) -> Option<&'static str> {
    if id.contains('\n') || id.contains('\r') {
        Some("contains a line break, which LEANN's ids.txt cannot hold")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(id: &str, document: Option<&str>, metadata: Option<&str>, expected_line: &str) {
        let line = encode_line(id, document, metadata).expect("encodes");
        let text = String::from_utf8(line).expect("utf-8");
        assert_eq!(text, format!("{expected_line}\n"));
        let back = decode_line(&text, Path::new("p.jsonl")).expect("decodes");
        let canonical = metadata.map(ragged_plugin_api::canonical_metadata);
        assert_eq!(
            back,
            Passage {
                id: id.to_owned(),
                document: document.map(str::to_owned),
                metadata: canonical,
            }
        );
    }

    #[test]
    fn lines_keep_documents_metadata_and_their_absence() {
        check(
            "a",
            Some("héllo\nworld"),
            // Keys already sorted: the line keeps them as given, and serde_json sorts them only in
            // builds without its preserve_order feature.
            Some(r#"{"big": 9007199254740993, "f": 2.0, "n": 2}"#),
            r#"{"id": "a", "text": "héllo\nworld", "metadata": {"big":9007199254740993,"f":2.0,"n":2}}"#,
        );
        check("b", Some(""), Some("{}"), r#"{"id": "b", "text": "", "metadata": {}}"#);
        check(
            "c",
            None,
            None,
            r#"{"id": "c", "text": "", "metadata": {}, "ragged_nulls": ["document", "metadata"]}"#,
        );
        check(
            "d\u{2028}",
            None,
            Some(r#"{"x": [1, 2]}"#),
            "{\"id\": \"d\u{2028}\", \"text\": \"\", \"metadata\": {\"x\":[1,2]}, \"ragged_nulls\": [\"document\"]}",
        );
    }

    #[test]
    fn leann_lines_read_as_they_are() {
        let passage = decode_line(
            r#"{"id": "7", "text": "t", "metadata": {"id": "7", "nested": {"a": null}}}"#,
            Path::new("p.jsonl"),
        )
        .expect("decodes");
        assert_eq!(passage.metadata.as_deref(), Some(r#"{"id":"7","nested":{"a":null}}"#));
        let error = decode_line("[1]", Path::new("/x/p.jsonl")).expect_err("not an object");
        assert_eq!(error.message, "/x/p.jsonl: a passage line is not a JSON object");
    }

    #[test]
    fn offsets_pickle_round_trips_through_serde_pickle() {
        let entries: Vec<(String, u64)> = (0..2500u64)
            .map(|i| (format!("id-{i}-é"), i * 977 + if i == 7 { 1 << 40 } else { 0 }))
            .chain([("max".to_owned(), u64::MAX >> 1)])
            .collect();
        let bytes = encode_offsets(&entries);
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("x.idx");
        fs::write(&path, bytes).expect("write");
        let back = read_offsets(&path).expect("reads");
        assert_eq!(back.len(), entries.len());
        for (id, offset) in &entries {
            assert_eq!(back.get(id), Some(offset), "{id}");
        }
    }

    fn scalar() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        prop_oneof![
            any::<i64>().prop_map(serde_json::Value::from),
            any::<u64>().prop_map(serde_json::Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(serde_json::Value::from),
            any::<bool>().prop_map(serde_json::Value::from),
            ".*".prop_map(serde_json::Value::from),
        ]
    }

    proptest::proptest! {
        /// Metadata types survive a passage line: ints stay ints, floats stay floats (bit for
        /// bit), whatever the text, id and document hold.
        #[test]
        fn passage_lines_keep_metadata_types(
            id in "[^\r\n]*",
            document in proptest::option::of(".*"),
            entries in proptest::collection::btree_map("[a-z]{1,4}", scalar(), 0..6),
            floats in proptest::collection::vec(proptest::num::f64::NORMAL, 0..4),
        ) {
            let mut object: serde_json::Map<String, Value> = entries.into_iter().collect();
            object.insert("floats".into(), Value::from(floats));
            let metadata = Value::Object(object).to_string();
            let line = encode_line(&id, document.as_deref(), Some(&metadata)).expect("encodes");
            let text = String::from_utf8(line).expect("utf-8");
            proptest::prop_assert_eq!(text.matches('\n').count(), 1);
            proptest::prop_assert!(!text.contains('\r'));
            let back = decode_line(&text, Path::new("p.jsonl")).expect("decodes");
            proptest::prop_assert_eq!(back.id, id);
            proptest::prop_assert_eq!(back.document, document);
            let want: Value = serde_json::from_str(&metadata).expect("json");
            let have: Value = serde_json::from_str(back.metadata.as_deref().expect("metadata")).expect("json");
            proptest::prop_assert_eq!(have, want);
        }
    }

    #[test]
    fn ids_with_line_breaks_are_refused() {
        assert!(id_problem("a\nb").is_some());
        assert!(id_problem("a\rb").is_some());
        assert!(id_problem("a\u{2028}b").is_none());
    }
}
