//! Plain data that describes plugins, stores, collections and requests.
//!
//! These types cross the boundary as JSON (see `ffi`), so adding an optional field is a
//! minor-version change: every field added after 1.0 must have a serde default.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How distances between embeddings are measured. Smaller distances are closer in every metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DistanceMetric {
    /// Squared Euclidean distance.
    L2,
    /// `1 - cos(a, b)`.
    Cosine,
    /// Negative inner product, `-a·b`, so that smaller is closer like the others.
    Ip,
}

impl DistanceMetric {
    /// The distance between two vectors of equal length under this metric.
    pub fn distance(self, a: &[f32], b: &[f32]) -> f32 {
        match self {
            DistanceMetric::L2 => a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum(),
            DistanceMetric::Ip => -a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>(),
            DistanceMetric::Cosine => {
                let (mut dot, mut norm_a, mut norm_b) = (0.0f32, 0.0f32, 0.0f32);
                for (x, y) in a.iter().zip(b) {
                    dot += x * y;
                    norm_a += x * x;
                    norm_b += y * y;
                }
                let denominator = (norm_a * norm_b).sqrt();
                if denominator == 0.0 {
                    1.0
                } else {
                    1.0 - dot / denominator
                }
            }
        }
    }

    /// The name used on the command line and in files: `l2`, `cosine` or `ip`.
    pub fn as_str(self) -> &'static str {
        match self {
            DistanceMetric::L2 => "l2",
            DistanceMetric::Cosine => "cosine",
            DistanceMetric::Ip => "ip",
        }
    }
}

impl fmt::Display for DistanceMetric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DistanceMetric {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "l2" => Ok(DistanceMetric::L2),
            "cosine" => Ok(DistanceMetric::Cosine),
            "ip" => Ok(DistanceMetric::Ip),
            other => Err(format!("unknown distance metric '{other}' (expected l2, cosine or ip)")),
        }
    }
}

/// What a plugin can do, declared once so the host can ask before it calls (as GDAL drivers do).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Capabilities(u64);

impl Capabilities {
    /// Lists collections, describes, counts and extracts them.
    pub const READ: Capabilities = Capabilities(1);
    /// Creates collections and loads records into them.
    pub const WRITE: Capabilities = Capabilities(1 << 1);
    /// Loading a record whose id exists replaces it (replayed batches never duplicate).
    pub const UPSERT: Capabilities = Capabilities(1 << 2);
    /// Answers nearest-neighbour queries by vector.
    pub const QUERY: Capabilities = Capabilities(1 << 3);
    /// Keeps the embeddings themselves, so extraction returns them bit-exact.
    pub const STORES_VECTORS: Capabilities = Capabilities(1 << 4);
    /// Needs an embedding model to recompute vectors (for example LEANN's compact indexes).
    pub const NEEDS_EMBEDDER: Capabilities = Capabilities(1 << 5);
    /// Removes records by id (interface 1.1).
    pub const DELETE: Capabilities = Capabilities(1 << 6);

    const NAMED: [(Capabilities, &'static str); 7] = [
        (Capabilities::READ, "read"),
        (Capabilities::WRITE, "write"),
        (Capabilities::UPSERT, "upsert"),
        (Capabilities::QUERY, "query"),
        (Capabilities::STORES_VECTORS, "stores_vectors"),
        (Capabilities::NEEDS_EMBEDDER, "needs_embedder"),
        (Capabilities::DELETE, "delete"),
    ];

    /// No capability at all.
    pub const fn empty() -> Capabilities {
        Capabilities(0)
    }

    /// The union of two sets.
    pub const fn union(self, other: Capabilities) -> Capabilities {
        Capabilities(self.0 | other.0)
    }

    /// Whether every capability in `other` is in `self`.
    pub const fn contains(self, other: Capabilities) -> bool {
        self.0 & other.0 == other.0
    }

    /// The raw bits, as they cross the boundary.
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// The set for raw bits; unknown bits are kept so newer plugins round-trip.
    pub const fn from_bits(bits: u64) -> Capabilities {
        Capabilities(bits)
    }

    /// The names of the capabilities in the set, in a fixed order.
    pub fn names(self) -> Vec<&'static str> {
        Capabilities::NAMED
            .iter()
            .filter(|(c, _)| self.contains(*c))
            .map(|(_, n)| *n)
            .collect()
    }

    /// The capability with this name, as written in manifests.
    pub fn from_name(name: &str) -> Option<Capabilities> {
        Capabilities::NAMED.iter().find(|(_, n)| *n == name).map(|(c, _)| *c)
    }
}

impl std::ops::BitOr for Capabilities {
    type Output = Capabilities;

    fn bitor(self, rhs: Capabilities) -> Capabilities {
        self.union(rhs)
    }
}

/// Whether a store may be changed. A migration opens its source `ReadOnly`, and a plugin must then
/// neither write nor create any file under the location.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    /// Reads only; every writing operation fails with [`crate::ErrorCode::ReadOnly`].
    ReadOnly,
    /// Reads and writes; the location is created if it does not exist.
    ReadWrite,
}

/// Where and how to open a store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenRequest {
    /// The store's location, usually a directory path, exactly as the user gave it.
    pub location: String,
    /// Store options (`--source-option KEY=VALUE`); plugins refuse keys they do not know.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// Whether the store may be changed.
    pub access: Access,
}

/// A collection as a store describes it: enough to recreate it faithfully in another store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectionInfo {
    /// The collection's name.
    pub name: String,
    /// Length of every embedding.
    pub dimension: u32,
    /// How the store compares embeddings.
    pub metric: DistanceMetric,
    /// Number of records (ignored by `load`).
    #[serde(default)]
    pub count: u64,
    /// The model that produced the embeddings, when the store records it.
    #[serde(default)]
    pub embedding_model: Option<String>,
    /// Index parameters as the store resolved them (for example HNSW `M`), when it has any.
    #[serde(default)]
    pub index_params: Option<serde_json::Value>,
    /// The user's own collection-level metadata, with its JSON types.
    #[serde(default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// Store-specific facts that have no portable meaning (tenant, database, format version…).
    #[serde(default)]
    pub extras: serde_json::Map<String, serde_json::Value>,
}

/// Which records to extract and how to cut them into batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtractRequest {
    /// Largest number of records per batch (a plugin may return smaller batches).
    pub batch_size: u32,
    /// Skip this many records of the deterministic order: the cursor a resumed extraction passes.
    pub start: u64,
    /// Only the ids are wanted (verification compares id sets this way): the plugin may send
    /// batches of the `id` column alone (`arrow::ids_schema`). A plugin that ignores the flag
    /// sends whole records, which is slower but as correct.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ids_only: bool,
}

impl ExtractRequest {
    /// Whole records, `batch_size` at a time, from `start` on.
    pub fn records(batch_size: u32, start: u64) -> ExtractRequest {
        ExtractRequest {
            batch_size,
            start,
            ids_only: false,
        }
    }

    /// Only ids, `batch_size` at a time.
    pub fn ids(batch_size: u32) -> ExtractRequest {
        ExtractRequest {
            batch_size,
            start: 0,
            ids_only: true,
        }
    }
}

/// How `load` treats a collection that exists (or not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LoadMode {
    /// The collection must not exist yet.
    Create,
    /// The collection must exist.
    Append,
    /// The collection is created when missing.
    Upsert,
}

/// A request to write records into a collection.
///
/// In every mode writes are keyed on the record id: a record whose id already exists replaces it,
/// so replaying a batch after a crash never duplicates records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadRequest {
    /// The collection to write, as the target should describe it afterwards.
    pub collection: CollectionInfo,
    /// What to do when the collection exists or not.
    pub mode: LoadMode,
}

/// What a finished `load` wrote. When `load` returns, these records are durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LoadSummary {
    /// Records received and written (replacements included).
    pub records_written: u64,
}

/// One nearest-neighbour result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    /// The record's id.
    pub id: String,
    /// The distance under the collection's metric (see [`DistanceMetric::distance`]).
    pub distance: f32,
}

/// Bytes a collection occupies, measured from its files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StorageReport {
    /// Bytes holding embeddings.
    pub vectors_bytes: u64,
    /// Bytes holding ids, documents and metadata.
    pub documents_bytes: u64,
    /// Bytes holding search indexes (graphs, partitions…).
    pub index_bytes: u64,
    /// Everything the collection occupies, including what fits none of the above.
    pub total_bytes: u64,
    /// The number of records measured.
    pub records: u64,
}

/// What a plugin says about itself, read by the host when it loads the library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    /// The text of the plugin crate's `plugin.toml` (name, description, platforms).
    pub manifest_toml: String,
    /// The plugin's own version (its crate version).
    pub plugin_version: String,
    /// The interface version the plugin was built against.
    pub interface_version: String,
    /// The target triple the plugin was compiled for.
    pub build_target: String,
    /// What the plugin can do.
    pub capabilities: Capabilities,
}
