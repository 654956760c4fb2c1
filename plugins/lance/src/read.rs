//! Reading a table: extract (a streamed scan in fragment and row order, resumable by offset),
//! sample, fetch by id and nearest-neighbour queries, all converted to the canonical schema.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Float32Type;
use arrow_array::{Array, ArrayRef, FixedSizeListArray, RecordBatch, StringArray};
use arrow_schema::{DataType, SchemaRef};
use futures::TryStreamExt;
use lancedb::DistanceType;
use lancedb::Table;
use lancedb::query::{ExecutableQuery, QueryBase, QueryExecutionOptions, Select};
use ragged_plugin_api::arrow::{canonical_schema, ids_schema};
use ragged_plugin_api::sampling::choose_positions;
use ragged_plugin_api::{BatchStream, DistanceMetric, ErrorCode, ExtractRequest, Hit, PluginError};

use crate::metadata;
use crate::runtime::{BlockingReader, block_on, lance_error};
use crate::schema::{Layout, vector_item};

/// Ids per `IN (...)` filter, so that a filter stays a reasonable size however many are asked.
/// Each filter is one scan of the id column, so it takes a whole fetch of the host's (1000 ids)
/// at once: at 512, a 10% verification of 100k records scanned the column 20 times instead of 10.
const IDS_PER_FILTER: usize = 4096;

/// Turns the batches of a scan into the batches a stream sends.
type Converter = Box<dyn FnMut(RecordBatch) -> Result<RecordBatch, PluginError> + Send>;

/// An open table with its column layout.
pub(crate) struct Source {
    pub(crate) name: String,
    pub(crate) table: Table,
    pub(crate) layout: Layout,
    pub(crate) metric: DistanceMetric,
}

impl Source {
    pub(crate) fn context(&self) -> String {
        format!("table '{}'", self.name)
    }

    fn select(&self) -> Select {
        Select::columns(&self.layout.projection())
    }

    /// Converts one batch of table rows to the canonical schema.
    fn converter(&self) -> Converter {
        let layout = self.layout.clone();
        let name = self.name.clone();
        Box::new(move |batch| to_canonical(&name, &layout, &batch))
    }

    /// Converts one batch of the id column to the ids schema.
    fn id_converter(&self) -> Converter {
        let layout = self.layout.clone();
        let name = self.name.clone();
        Box::new(move |batch| {
            let ids = id_strings(&name, &layout, &batch)?;
            RecordBatch::try_new(ids_schema(), vec![Arc::new(ids)])
                .map_err(|e| PluginError::new(ErrorCode::Internal, format!("table '{name}': an id batch: {e}")))
        })
    }

    /// Every record from offset `start`, in batches of at most `batch_size`.
    pub(crate) fn extract(&self, request: &ExtractRequest) -> Result<BatchStream, PluginError> {
        let mut options = QueryExecutionOptions::default();
        options.max_batch_length = request.batch_size.max(1);
        // Only ids asked for: only the id column is read.
        let (select, schema, convert) = if request.ids_only {
            (
                Select::columns(&[self.layout.id.as_str()]),
                ids_schema(),
                self.id_converter(),
            )
        } else {
            (self.select(), canonical_schema(self.layout.dimension), self.converter())
        };
        let mut query = self.table.query().select(select);
        if request.start > 0 {
            query = query.offset(usize::try_from(request.start).unwrap_or(usize::MAX));
        }
        let stream = block_on(query.execute_with_options(options))?.map_err(|e| lance_error(&self.context(), e))?;
        Ok(BatchStream::from_reader(BlockingReader::new(schema, stream, convert)))
    }

    /// `n` records chosen with `seed`, in id order.
    pub(crate) fn sample(&self, n: u64, seed: u64) -> Result<BatchStream, PluginError> {
        let count = self.count()?;
        let n = n.min(count);
        let offsets = choose_positions(count, n, seed);
        let batches = if offsets.is_empty() {
            Vec::new()
        } else {
            let query = self.table.take_offsets(offsets).select(self.select());
            block_on(async { query.execute().await?.try_collect::<Vec<_>>().await })?
                .map_err(|e| lance_error(&self.context(), e))?
        };
        let mut converted = Vec::with_capacity(batches.len());
        for batch in batches {
            converted.push(to_canonical(&self.name, &self.layout, &batch)?);
        }
        let schema = canonical_schema(self.layout.dimension);
        let all = arrow_select::concat::concat_batches(&schema, &converted)
            .map_err(|e| PluginError::new(ErrorCode::Internal, e.to_string()))?;
        // take_offsets promises no order; sorting by id makes the sample reproducible.
        let ids = all.column(0).as_string::<i32>();
        let mut order: Vec<u32> = (0..all.num_rows() as u32).collect();
        order.sort_by(|a, b| ids.value(*a as usize).cmp(ids.value(*b as usize)));
        let sorted = take_rows(&all, &order)?;
        Ok(BatchStream::from_batches(schema, vec![sorted]))
    }

    /// The records with `ids`, in the order asked, absent ids left out.
    pub(crate) fn fetch(&self, ids: &[String]) -> Result<BatchStream, PluginError> {
        let schema = canonical_schema(self.layout.dimension);
        let mut found: Vec<RecordBatch> = Vec::new();
        for filter in id_filters(ids, &self.layout) {
            let query = self.table.query().only_if(filter).select(self.select());
            let batches = block_on(async { query.execute().await?.try_collect::<Vec<_>>().await })?
                .map_err(|e| lance_error(&self.context(), e))?;
            for batch in batches {
                found.push(to_canonical(&self.name, &self.layout, &batch)?);
            }
        }
        let all = arrow_select::concat::concat_batches(&schema, &found)
            .map_err(|e| PluginError::new(ErrorCode::Internal, e.to_string()))?;
        let got = all.column(0).as_string::<i32>();
        let mut position: HashMap<&str, u32> = HashMap::new();
        for row in 0..all.num_rows() {
            position.entry(got.value(row)).or_insert(row as u32);
        }
        let mut order = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for id in ids {
            if let Some(row) = position.get(id.as_str())
                && seen.insert(*row)
            {
                order.push(*row);
            }
        }
        Ok(BatchStream::from_batches(schema, vec![take_rows(&all, &order)?]))
    }

    /// The `k` nearest records to `vector` under the collection's metric.
    pub(crate) fn query(&self, vector: &[f32], k: u32) -> Result<Vec<Hit>, PluginError> {
        if vector.len() != self.layout.dimension as usize {
            return Err(PluginError::invalid_input(format!(
                "the query vector has {} dimensions, table '{}' has {}",
                vector.len(),
                self.name,
                self.layout.dimension
            )));
        }
        if k == 0 {
            return Ok(Vec::new());
        }
        let query = self
            .table
            .query()
            .nearest_to(vector)
            .map_err(|e| lance_error(&self.context(), e))?
            .column(&self.layout.vector)
            .distance_type(distance_type(self.metric))
            .limit(k as usize)
            .select(Select::columns(&[self.layout.id.as_str()]));
        let batches = block_on(async { query.execute().await?.try_collect::<Vec<_>>().await })?
            .map_err(|e| lance_error(&self.context(), e))?;
        let mut hits = Vec::new();
        for batch in batches {
            let ids = id_strings(&self.name, &self.layout, &batch)?;
            let distances = batch
                .column_by_name("_distance")
                .and_then(|c| c.as_primitive_opt::<Float32Type>())
                .ok_or_else(|| PluginError::new(ErrorCode::Internal, "lancedb returned no _distance column"))?;
            for row in 0..batch.num_rows() {
                hits.push(Hit {
                    id: ids.value(row).to_owned(),
                    distance: from_lance_distance(self.metric, distances.value(row)),
                });
            }
        }
        hits.sort_by(|a, b| a.distance.total_cmp(&b.distance));
        Ok(hits)
    }

    /// The number of rows.
    pub(crate) fn count(&self) -> Result<u64, PluginError> {
        block_on(self.table.count_rows(None))?
            .map(|n| n as u64)
            .map_err(|e| lance_error(&self.context(), e))
    }
}

/// The metric of the vector index on `column`, if the table has one: how a table written by
/// others is meant to be searched when it records no metric of its own.
pub(crate) fn index_metric(table: &Table, column: &str, context: &str) -> Result<Option<DistanceMetric>, PluginError> {
    block_on(async {
        for index in table.list_indices().await? {
            if index.columns.iter().any(|c| c == column)
                && let Some(stats) = table.index_stats(&index.name).await?
                && let Some(distance) = stats.distance_type
            {
                return Ok(match distance {
                    DistanceType::L2 => Some(DistanceMetric::L2),
                    DistanceType::Cosine => Some(DistanceMetric::Cosine),
                    DistanceType::Dot => Some(DistanceMetric::Ip),
                    _ => None,
                });
            }
        }
        Ok(None)
    })?
    .map_err(|e: lancedb::Error| lance_error(context, e))
}

/// LanceDB's distance type for a metric. Its `dot` is `1 - a·b`, which ranks like ragged's `ip`.
pub(crate) fn distance_type(metric: DistanceMetric) -> DistanceType {
    match metric {
        DistanceMetric::L2 => DistanceType::L2,
        DistanceMetric::Cosine => DistanceType::Cosine,
        DistanceMetric::Ip => DistanceType::Dot,
    }
}

/// A distance LanceDB reported, under ragged's definition of the metric.
fn from_lance_distance(metric: DistanceMetric, distance: f32) -> f32 {
    match metric {
        // Both are squared L2 and 1 - cos.
        DistanceMetric::L2 | DistanceMetric::Cosine => distance,
        // 1 - a·b  →  -a·b
        DistanceMetric::Ip => distance - 1.0,
    }
}

/// SQL filters matching the rows with `ids`, one per [`IDS_PER_FILTER`] ids.
pub(crate) fn id_filters<'a>(ids: &'a [String], layout: &'a Layout) -> impl Iterator<Item = String> + 'a {
    ids.chunks(IDS_PER_FILTER).map(|chunk| {
        let list = chunk
            .iter()
            .map(|id| sql_literal(id, layout))
            .collect::<Vec<_>>()
            .join(", ");
        format!("{} IN ({list})", sql_identifier(&layout.id))
    })
}

/// A column name quoted for LanceDB's SQL filters.
fn sql_identifier(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// An id as a SQL literal for the id column's type.
fn sql_literal(id: &str, layout: &Layout) -> String {
    if layout.id_is_integer {
        // An id that is not a number cannot match an integer column.
        id.parse::<i64>().map_or_else(|_| "NULL".to_owned(), |n| n.to_string())
    } else {
        format!("'{}'", id.replace('\'', "''"))
    }
}

fn take_rows(batch: &RecordBatch, rows: &[u32]) -> Result<RecordBatch, PluginError> {
    let indices = arrow_array::UInt32Array::from(rows.to_vec());
    arrow_select::take::take_record_batch(batch, &indices)
        .map_err(|e| PluginError::new(ErrorCode::Internal, e.to_string()))
}

/// The ids of a batch as strings (integer ids are written in decimal).
fn id_strings(table: &str, layout: &Layout, batch: &RecordBatch) -> Result<StringArray, PluginError> {
    let column = batch.column_by_name(&layout.id).ok_or_else(|| {
        PluginError::new(
            ErrorCode::Internal,
            format!("table '{table}': no column '{}' in the scan", layout.id),
        )
    })?;
    let strings = arrow_cast::cast(column, &DataType::Utf8)
        .map_err(|e| PluginError::corrupt(format!("table '{table}': ids of column '{}': {e}", layout.id)))?;
    let strings = strings.as_string::<i32>().clone();
    if strings.null_count() > 0 {
        return Err(PluginError::corrupt(format!(
            "table '{table}': column '{}' holds a null id",
            layout.id
        )));
    }
    Ok(strings)
}

/// One batch of table rows in the canonical schema.
pub(crate) fn to_canonical(table: &str, layout: &Layout, batch: &RecordBatch) -> Result<RecordBatch, PluginError> {
    let ids = id_strings(table, layout, batch)?;
    let text_column = |name: &str| -> Result<ArrayRef, PluginError> {
        let column = batch.column_by_name(name).ok_or_else(|| {
            PluginError::new(
                ErrorCode::Internal,
                format!("table '{table}': no column '{name}' in the scan"),
            )
        })?;
        arrow_cast::cast(column, &DataType::Utf8)
            .map_err(|e| PluginError::corrupt(format!("table '{table}': column '{name}': {e}")))
    };
    let documents: ArrayRef = match &layout.text {
        Some(name) => text_column(name)?,
        None => Arc::new(StringArray::new_null(batch.num_rows())),
    };
    let metadata: ArrayRef = match &layout.metadata_json {
        Some(name) => text_column(name)?,
        None if layout.extra.is_empty() => Arc::new(StringArray::new_null(batch.num_rows())),
        None => Arc::new(StringArray::from(metadata::from_columns(batch, &layout.extra)?)),
    };
    let vectors = batch.column_by_name(&layout.vector).ok_or_else(|| {
        PluginError::new(
            ErrorCode::Internal,
            format!("table '{table}': no column '{}' in the scan", layout.vector),
        )
    })?;
    let dimension = layout.dimension as i32;
    let vectors = if layout.float32 {
        vectors.clone()
    } else {
        // Half or double precision vectors: converted, so not bit-exact (documented).
        arrow_cast::cast(vectors, &DataType::FixedSizeList(vector_item(), dimension))
            .map_err(|e| PluginError::corrupt(format!("table '{table}': column '{}': {e}", layout.vector)))?
    };
    let vectors = vectors.as_fixed_size_list();
    if vectors.null_count() > 0 {
        let row = (0..vectors.len()).find(|r| vectors.is_null(*r)).unwrap_or(0);
        return Err(PluginError::invalid_input(format!(
            "table '{table}': record '{}' has no vector (null in column '{}')",
            ids.value(row),
            layout.vector
        )));
    }
    let values = vectors.values().as_primitive::<Float32Type>();
    // Rebuild with the canonical element field and no nulls: a table's own field may be named
    // differently or be nullable.
    let start = vectors.value_offset(0).max(0) as usize;
    let values = values.slice(start, vectors.len() * dimension as usize);
    let values = arrow_array::Float32Array::new(values.values().clone(), None);
    let embeddings = FixedSizeListArray::try_new(vector_item(), dimension, Arc::new(values), None)
        .map_err(|e| PluginError::corrupt(format!("table '{table}': column '{}': {e}", layout.vector)))?;
    let schema: SchemaRef = canonical_schema(layout.dimension);
    RecordBatch::try_new(schema, vec![Arc::new(ids), documents, metadata, Arc::new(embeddings)])
        .map_err(|e| PluginError::new(ErrorCode::Internal, format!("table '{table}': {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_distances_follow_ragged() {
        // lance dot = 1 - a·b; ragged ip = -a·b
        assert_eq!(from_lance_distance(DistanceMetric::Ip, 1.0 - 3.5), -3.5);
        assert_eq!(from_lance_distance(DistanceMetric::L2, 2.0), 2.0);
    }

    #[test]
    fn sql_literals_are_quoted() {
        assert_eq!(sql_identifier("my`col"), "`my``col`");
    }
}
