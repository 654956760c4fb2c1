//! The store options (`--source-option KEY=VALUE` / `--target-option KEY=VALUE`) the lance plugin
//! accepts. Unknown keys are refused by name.

use std::collections::BTreeMap;

use ragged_plugin_api::{DistanceMetric, PluginError};

/// Every option this plugin knows.
pub(crate) const KNOWN_OPTIONS: &[&str] = &[
    "vector_column",
    "id_column",
    "text_column",
    "metric",
    "vector_index",
    "index_min_rows",
];

/// Which columns of a foreign table hold the record (ragged's own tables need none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ColumnOptions {
    /// The vector column, when the table has several or it is not called `vector`.
    pub(crate) vector: Option<String>,
    /// The id column, when it is not called `id`.
    pub(crate) id: Option<String>,
    /// The document column; empty means "none".
    pub(crate) text: Option<String>,
}

/// When `load` builds a vector index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VectorIndex {
    /// When the table has at least `index_min_rows` rows.
    Auto,
    /// Never; LanceDB searches by brute force.
    Never,
}

/// All options of an open store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoreOptions {
    pub(crate) columns: ColumnOptions,
    /// The metric of tables that do not record one (tables written by others).
    pub(crate) metric: Option<DistanceMetric>,
    pub(crate) vector_index: VectorIndex,
    /// The row count from which `vector_index=auto` builds an index.
    pub(crate) index_min_rows: u64,
}

/// Below this, brute-force search is fast and exact, so no index is built by default.
pub(crate) const DEFAULT_INDEX_MIN_ROWS: u64 = 100_000;

/// IVF_PQ / IVF_HNSW_SQ training needs at least this many rows.
pub(crate) const TRAINING_MIN_ROWS: u64 = 256;

impl StoreOptions {
    /// Parses the options of an open request.
    pub(crate) fn parse(options: &BTreeMap<String, String>) -> Result<StoreOptions, PluginError> {
        let mut out = StoreOptions {
            columns: ColumnOptions::default(),
            metric: None,
            vector_index: VectorIndex::Auto,
            index_min_rows: DEFAULT_INDEX_MIN_ROWS,
        };
        for (key, value) in options {
            match key.as_str() {
                "vector_column" => out.columns.vector = Some(value.clone()),
                "id_column" => out.columns.id = Some(value.clone()),
                "text_column" => out.columns.text = Some(value.clone()),
                "metric" => {
                    out.metric = Some(
                        value
                            .parse()
                            .map_err(|e: String| PluginError::invalid_input(format!("option 'metric': {e}")))?,
                    );
                }
                "vector_index" => {
                    out.vector_index = match value.as_str() {
                        "auto" => VectorIndex::Auto,
                        "none" => VectorIndex::Never,
                        other => {
                            return Err(PluginError::invalid_input(format!(
                                "unknown value '{other}' for option 'vector_index' (expected auto or none)"
                            )));
                        }
                    };
                }
                "index_min_rows" => {
                    out.index_min_rows = value.parse().map_err(|_| {
                        PluginError::invalid_input(format!(
                            "option 'index_min_rows' must be a whole number, not '{value}'"
                        ))
                    })?;
                    out.index_min_rows = out.index_min_rows.max(TRAINING_MIN_ROWS);
                }
                other => {
                    return Err(PluginError::invalid_input(format!(
                        "unknown option '{other}' for the lance store (known options: {})",
                        KNOWN_OPTIONS.join(", ")
                    )));
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(pairs: &[(&str, &str)], expected: Result<StoreOptions, &str>) {
        let map = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        match (StoreOptions::parse(&map), expected) {
            (Ok(got), Ok(want)) => assert_eq!(got, want),
            (Err(error), Err(fragment)) => assert!(error.message.contains(fragment), "{error}"),
            (got, want) => panic!("got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn known_options_parse() {
        check(
            &[("vector_column", "emb"), ("metric", "cosine"), ("index_min_rows", "10")],
            Ok(StoreOptions {
                columns: ColumnOptions {
                    vector: Some("emb".into()),
                    id: None,
                    text: None,
                },
                metric: Some(DistanceMetric::Cosine),
                vector_index: VectorIndex::Auto,
                index_min_rows: TRAINING_MIN_ROWS,
            }),
        );
    }

    #[test]
    fn unknown_options_and_values_are_refused_by_name() {
        check(&[("colour", "red")], Err("unknown option 'colour' for the lance store"));
        check(&[("metric", "hamming")], Err("unknown distance metric 'hamming'"));
        check(&[("vector_index", "always")], Err("unknown value 'always'"));
    }
}
