//! The checks `ragged plugin test` runs against any plugin, through the real plugin boundary:
//! records round-trip exactly through load, extract, fetch and query; errors come back as errors
//! with the right codes; nothing panics; a read-only store is left byte-identical.

use std::path::Path;

use anyhow::{Result, anyhow, bail, ensure};
use ragged_plugin_api::arrow::{canonical_schema, records_to_batch};
use ragged_plugin_api::host::LoadedPlugin;
use ragged_plugin_api::{
    Access, Backend, BatchStream, Capabilities, CollectionInfo, DistanceMetric, ErrorCode, ExtractRequest, LoadMode,
    LoadRequest, OpenRequest, PluginError, Record,
};
use serde::Serialize;

use crate::corpus::Corpus;
use crate::guard::{self, Limits};
use crate::records::{collect_records, read_id_stream, record_digest};
use crate::tree::tree_digest;

const COLLECTION: &str = "conformance";
const DIMENSION: u32 = 16;

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The plugin behaved as the interface requires.
    Pass,
    /// It did not; see the detail.
    Fail,
    /// The plugin does not declare the capability the check needs.
    Skip,
}

/// One named check.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// How it went.
    pub outcome: Outcome,
    /// Why it failed or was skipped.
    pub detail: String,
}

/// All checks of one run.
#[derive(Debug, Clone, Serialize)]
pub struct ConformanceReport {
    /// The plugin's name.
    pub plugin: String,
    /// Every check, in order.
    pub checks: Vec<Check>,
    /// Checks passed.
    pub passed: usize,
    /// Checks failed.
    pub failed: usize,
    /// Checks skipped.
    pub skipped: usize,
}

/// Runs every check against `plugin`, in a scratch directory under `scratch`.
/// Every call is guarded with `limits`, as in any other command.
pub fn run(plugin: &LoadedPlugin, plugin_name: &str, scratch: &Path, limits: &Limits) -> ConformanceReport {
    let suite = Suite {
        plugin,
        name: plugin_name,
        limits,
        capabilities: plugin.info.capabilities,
        location: scratch.join("store"),
    };
    let mut checks = Vec::new();
    let mut record = |name: &str, needs: Capabilities, check: &dyn Fn() -> Result<()>| {
        let (outcome, detail) = if !suite.capabilities.contains(needs) {
            (
                Outcome::Skip,
                format!("plugin does not declare {}", needs.names().join(", ")),
            )
        } else {
            match check() {
                Ok(()) => (Outcome::Pass, String::new()),
                Err(error) => (Outcome::Fail, format!("{error:#}")),
            }
        };
        checks.push(Check {
            name: name.to_owned(),
            outcome,
            detail,
        });
    };
    let write = Capabilities::READ | Capabilities::WRITE;
    record("declares read", Capabilities::empty(), &|| {
        ensure!(
            suite.capabilities.contains(Capabilities::READ),
            "every store plugin must be able to read"
        );
        Ok(())
    });
    record("loads a new collection", write, &|| suite.load_new());
    record("describes it with dimension, metric and count", write, &|| {
        suite.describe()
    });
    record("lists it", write, &|| suite.lists());
    record("extracts every record exactly", write, &|| suite.extract_exact());
    record("extracts in the same order every time", write, &|| {
        suite.extract_deterministic()
    });
    record("resumes extraction from a cursor", write, &|| suite.extract_resume());
    record("lists the ids alone in the same order", write, &|| suite.extract_ids());
    record("refuses to create an existing collection", write, &|| {
        suite.create_existing()
    });
    record("refuses records of the wrong dimension", write, &|| {
        suite.wrong_dimension()
    });
    record(
        "replayed batches upsert, never duplicate",
        write | Capabilities::UPSERT,
        &|| suite.replay(),
    );
    record("fetches records by id in the order asked", write, &|| suite.fetch());
    record("samples the same records for the same seed", write, &|| suite.sample());
    record(
        "finds a record as its own nearest neighbour",
        write | Capabilities::QUERY,
        &|| suite.query(),
    );
    record(
        "deletes records by id, durably, and only in a writable store",
        write | Capabilities::DELETE,
        &|| suite.delete(),
    );
    record("reports storage measured from files", write, &|| suite.storage());
    record("names the files of a collection", write, &|| suite.files());
    record("reports a missing collection as not-found", Capabilities::READ, &|| {
        suite.missing_collection()
    });
    record("leaves a read-only store byte-identical", write, &|| suite.read_only());
    record("drops a collection", write, &|| suite.drop_collection());
    let count = |o: Outcome| checks.iter().filter(|c| c.outcome == o).count();
    let (passed, failed, skipped) = (count(Outcome::Pass), count(Outcome::Fail), count(Outcome::Skip));
    ConformanceReport {
        plugin: plugin_name.to_owned(),
        checks,
        passed,
        failed,
        skipped,
    }
}

struct Suite<'a> {
    plugin: &'a LoadedPlugin,
    name: &'a str,
    limits: &'a Limits,
    capabilities: Capabilities,
    location: std::path::PathBuf,
}

/// Records that exercise every corner of the canonical schema.
fn test_records() -> Vec<Record> {
    let mut records = Corpus {
        records: 240,
        dimension: DIMENSION,
        clusters: 6,
        seed: 11,
        metric: DistanceMetric::L2,
    }
    .all_records();
    let mut odd = |id: &str, document: Option<&str>, metadata: Option<&str>, first: f32| {
        let mut embedding = vec![0.25f32; DIMENSION as usize];
        embedding[0] = first;
        embedding[1] = -0.0;
        records.push(Record {
            id: id.to_owned(),
            document: document.map(str::to_owned),
            metadata: metadata.map(str::to_owned),
            embedding,
        });
    };
    odd(
        "unicode é 字 🦀",
        Some("ünïcödé 文書 🦀"),
        Some(r#"{"int":-7,"float":2.0,"bool":false,"text":"ü"}"#),
        1e-40,
    );
    odd(
        "empty-document",
        Some(""),
        Some(r#"{"ints":[1,2,3],"floats":[0.5,2.0],"strings":["a","b"],"bools":[true]}"#),
        3.0e38,
    );
    odd("no-document", None, Some(r#"{"big":9007199254740993}"#), -1.5);
    odd("no-metadata", Some("plain"), None, 0.125);
    records
}

fn info(dimension: u32) -> CollectionInfo {
    CollectionInfo {
        name: COLLECTION.to_owned(),
        dimension,
        metric: DistanceMetric::L2,
        count: 0,
        embedding_model: None,
        index_params: None,
        metadata: serde_json::Map::new(),
        extras: serde_json::Map::new(),
    }
}

fn stream(records: &[Record], dimension: u32) -> Result<BatchStream> {
    let batches = records
        .chunks(64)
        .map(|chunk| records_to_batch(chunk, dimension))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(BatchStream::from_batches(canonical_schema(dimension), batches))
}

/// Fails on a panic or an unexpected code; passes errors of the expected code.
fn expect_code<T>(result: Result<T, PluginError>, expected: &[ErrorCode], what: &str) -> Result<()> {
    match result {
        Ok(_) => bail!("{what} succeeded, it should have failed"),
        Err(error) if error.code == ErrorCode::Panic => bail!("{what} panicked: {error}"),
        Err(error) if expected.is_empty() || expected.contains(&error.code) => Ok(()),
        Err(error) => bail!(
            "{what} failed with code {}, expected {:?}: {error}",
            error.code.as_str(),
            expected
        ),
    }
}

impl Suite<'_> {
    fn open(&self, access: Access) -> Result<Box<dyn Backend>> {
        let request = OpenRequest {
            location: self.location.display().to_string(),
            options: Default::default(),
            access,
        };
        let store = format!("{}:{}", self.name, request.location);
        Ok(guard::open(self.plugin, self.name, &store, &request, self.limits)?)
    }

    fn exact(&self) -> bool {
        self.capabilities.contains(Capabilities::STORES_VECTORS)
    }

    fn load_new(&self) -> Result<()> {
        let store = self.open(Access::ReadWrite)?;
        let records = test_records();
        let summary = store.load(
            &LoadRequest {
                collection: info(DIMENSION),
                mode: LoadMode::Create,
            },
            stream(&records, DIMENSION)?,
        )?;
        ensure!(
            summary.records_written == records.len() as u64,
            "load reported {} records written, sent {}",
            summary.records_written,
            records.len()
        );
        let count = store.count(COLLECTION)?;
        ensure!(
            count == records.len() as u64,
            "count is {count} after loading {}",
            records.len()
        );
        Ok(())
    }

    fn describe(&self) -> Result<()> {
        let described = self.open(Access::ReadOnly)?.describe(COLLECTION)?;
        ensure!(described.name == COLLECTION, "name is '{}'", described.name);
        ensure!(
            described.dimension == DIMENSION,
            "dimension is {}, loaded {DIMENSION}",
            described.dimension
        );
        ensure!(
            described.metric == DistanceMetric::L2,
            "metric is {}, loaded l2",
            described.metric
        );
        ensure!(
            described.count == test_records().len() as u64,
            "count is {}",
            described.count
        );
        Ok(())
    }

    fn lists(&self) -> Result<()> {
        let names = self.open(Access::ReadOnly)?.list_collections()?;
        ensure!(
            names.iter().any(|n| n == COLLECTION),
            "list_collections returned {names:?}"
        );
        Ok(())
    }

    fn extract_all(&self, start: u64, batch_size: u32) -> Result<Vec<Record>> {
        let store = self.open(Access::ReadOnly)?;
        collect_records(store.extract(COLLECTION, &ExtractRequest::records(batch_size, start))?)
    }

    fn extract_exact(&self) -> Result<()> {
        let mut expected = test_records();
        let mut got = self.extract_all(0, 100)?;
        ensure!(
            got.len() == expected.len(),
            "extracted {} records, loaded {}",
            got.len(),
            expected.len()
        );
        expected.sort_by(|a, b| a.id.cmp(&b.id));
        got.sort_by(|a, b| a.id.cmp(&b.id));
        for (want, have) in expected.iter().zip(&got) {
            ensure!(
                want.id == have.id,
                "ids differ: loaded '{}', extracted '{}'",
                want.id,
                have.id
            );
            if self.exact() {
                ensure!(
                    record_digest(want) == record_digest(have),
                    "record '{}' differs: loaded {want:?}, extracted {have:?}",
                    want.id
                );
            } else {
                ensure!(want.document == have.document, "record '{}': document differs", want.id);
            }
        }
        Ok(())
    }

    fn extract_deterministic(&self) -> Result<()> {
        let ids = |records: Vec<Record>| records.into_iter().map(|r| r.id).collect::<Vec<_>>();
        ensure!(
            ids(self.extract_all(0, 64)?) == ids(self.extract_all(0, 100)?),
            "two extractions gave different orders"
        );
        Ok(())
    }

    fn extract_resume(&self) -> Result<()> {
        let whole = self.extract_all(0, 100)?;
        for start in [0u64, 1, 99, 123, whole.len() as u64 - 1, whole.len() as u64] {
            let tail = self.extract_all(start, 50)?;
            let want: Vec<&str> = whole[start as usize..].iter().map(|r| r.id.as_str()).collect();
            let have: Vec<&str> = tail.iter().map(|r| r.id.as_str()).collect();
            ensure!(
                want == have,
                "extract from {start} is not the tail of the whole extraction"
            );
        }
        Ok(())
    }

    fn extract_ids(&self) -> Result<()> {
        let whole: Vec<String> = self.extract_all(0, 100)?.into_iter().map(|r| r.id).collect();
        let store = self.open(Access::ReadOnly)?;
        let mut listed = Vec::new();
        for ids in read_id_stream(store.extract(COLLECTION, &ExtractRequest::ids(64))?)? {
            listed.extend(ids?.iter().flatten().map(str::to_owned));
        }
        ensure!(
            listed == whole,
            "an ids-only extraction listed {} ids, not the {} ids of the whole extraction in its order",
            listed.len(),
            whole.len()
        );
        Ok(())
    }

    fn create_existing(&self) -> Result<()> {
        let store = self.open(Access::ReadWrite)?;
        let records = &test_records()[..3];
        let result = store.load(
            &LoadRequest {
                collection: info(DIMENSION),
                mode: LoadMode::Create,
            },
            stream(records, DIMENSION)?,
        );
        expect_code(
            result,
            &[ErrorCode::AlreadyExists],
            "load(Create) of an existing collection",
        )
    }

    fn wrong_dimension(&self) -> Result<()> {
        let store = self.open(Access::ReadWrite)?;
        let before = store.count(COLLECTION)?;
        let mut record = test_records().remove(0);
        record.id = "wrong-dimension".into();
        record.embedding.push(1.0);
        let result = store.load(
            &LoadRequest {
                collection: info(DIMENSION),
                mode: LoadMode::Append,
            },
            stream(&[record], DIMENSION + 1)?,
        );
        expect_code(result, &[], "loading a record of the wrong dimension")?;
        let after = store.count(COLLECTION)?;
        ensure!(
            before == after,
            "a refused load changed the count from {before} to {after}"
        );
        Ok(())
    }

    fn replay(&self) -> Result<()> {
        let store = self.open(Access::ReadWrite)?;
        let before = store.count(COLLECTION)?;
        let mut replayed: Vec<Record> = test_records()[..50].to_vec();
        replayed[0].document = Some("replaced by the replay".into());
        for mode in [LoadMode::Append, LoadMode::Upsert] {
            store.load(
                &LoadRequest {
                    collection: info(DIMENSION),
                    mode,
                },
                stream(&replayed, DIMENSION)?,
            )?;
            let after = store.count(COLLECTION)?;
            ensure!(
                before == after,
                "replaying 50 records with {mode:?} changed the count from {before} to {after}"
            );
        }
        let all = self.extract_all(0, 100)?;
        let first = all
            .iter()
            .find(|r| r.id == replayed[0].id)
            .ok_or_else(|| anyhow!("replayed record vanished"))?;
        ensure!(
            first.document == replayed[0].document,
            "the replayed record kept its old document"
        );
        Ok(())
    }

    fn fetch(&self) -> Result<()> {
        let store = self.open(Access::ReadOnly)?;
        let ids: Vec<String> = ["doc-00000010", "unicode é 字 🦀", "no-such-id", "doc-00000003"]
            .map(String::from)
            .to_vec();
        let got: Vec<String> = collect_records(store.fetch(COLLECTION, &ids)?)?
            .into_iter()
            .map(|r| r.id)
            .collect();
        ensure!(
            got == ["doc-00000010", "unicode é 字 🦀", "doc-00000003"],
            "fetch returned {got:?}"
        );
        Ok(())
    }

    fn sample(&self) -> Result<()> {
        let store = self.open(Access::ReadOnly)?;
        let ids = |seed| -> Result<Vec<String>> {
            Ok(collect_records(store.sample(COLLECTION, 20, seed)?)?
                .into_iter()
                .map(|r| r.id)
                .collect())
        };
        let first = ids(42)?;
        ensure!(first.len() == 20, "sample(20) returned {} records", first.len());
        ensure!(first == ids(42)?, "the same seed gave different samples");
        ensure!(first != ids(43)?, "different seeds gave the same sample");
        Ok(())
    }

    fn query(&self) -> Result<()> {
        let store = self.open(Access::ReadOnly)?;
        for record in test_records().iter().step_by(37) {
            let hits = store.query(COLLECTION, &record.embedding, 5)?;
            let first = hits
                .first()
                .ok_or_else(|| anyhow!("query for '{}' returned nothing", record.id))?;
            ensure!(
                first.id == record.id,
                "query with the vector of '{}' ranked '{}' first",
                record.id,
                first.id
            );
            ensure!(
                hits.windows(2).all(|w| w[0].distance <= w[1].distance),
                "hits are not sorted by distance: {hits:?}"
            );
        }
        Ok(())
    }

    fn delete(&self) -> Result<()> {
        let doomed: Vec<Record> = test_records()[1..3].to_vec();
        let mut ids: Vec<String> = doomed.iter().map(|r| r.id.clone()).collect();
        ids.push("no-such-id".to_owned());
        expect_code(
            self.open(Access::ReadOnly)?.delete(COLLECTION, &ids),
            &[ErrorCode::ReadOnly],
            "delete in a read-only store",
        )?;
        let before = self.open(Access::ReadOnly)?.count(COLLECTION)?;
        let deleted = self.open(Access::ReadWrite)?.delete(COLLECTION, &ids)?;
        ensure!(
            deleted == 2,
            "deleting 2 existing ids and 1 unknown one reported {deleted}"
        );
        // A fresh open proves the removal reached the files.
        let store = self.open(Access::ReadWrite)?;
        let after = store.count(COLLECTION)?;
        ensure!(
            after == before - 2,
            "count went from {before} to {after} after deleting 2"
        );
        let left = collect_records(store.fetch(COLLECTION, &ids)?)?;
        ensure!(left.is_empty(), "deleted records are still fetched: {left:?}");
        ensure!(
            store.delete(COLLECTION, &ids)? == 0,
            "deleting the same ids again reported removals"
        );
        store.load(
            &LoadRequest {
                collection: info(DIMENSION),
                mode: LoadMode::Upsert,
            },
            stream(&doomed, DIMENSION)?,
        )?;
        let restored = store.count(COLLECTION)?;
        ensure!(
            restored == before,
            "re-loading the deleted records gave {restored} records, not {before}"
        );
        Ok(())
    }

    fn storage(&self) -> Result<()> {
        let report = self.open(Access::ReadOnly)?.storage(COLLECTION)?;
        ensure!(report.total_bytes > 0, "total_bytes is 0");
        ensure!(
            report.records == test_records().len() as u64,
            "storage report counts {} records",
            report.records
        );
        ensure!(
            report.vectors_bytes + report.documents_bytes + report.index_bytes <= report.total_bytes,
            "the parts of the storage report exceed its total: {report:?}"
        );
        Ok(())
    }

    fn files(&self) -> Result<()> {
        let files = self.open(Access::ReadOnly)?.files(COLLECTION)?;
        ensure!(!files.is_empty(), "files() returned nothing");
        for file in &files {
            ensure!(Path::new(file).exists(), "files() names '{file}', which does not exist");
        }
        Ok(())
    }

    fn missing_collection(&self) -> Result<()> {
        std::fs::create_dir_all(&self.location)?;
        let store = self.open(Access::ReadOnly)?;
        expect_code(
            store.describe("no-such-collection"),
            &[ErrorCode::NotFound],
            "describe of a missing collection",
        )?;
        expect_code(
            store.extract("no-such-collection", &ExtractRequest::records(10, 0)),
            &[ErrorCode::NotFound],
            "extract of a missing collection",
        )
    }

    fn read_only(&self) -> Result<()> {
        let before = tree_digest(&self.location)?;
        let store = self.open(Access::ReadOnly)?;
        collect_records(store.extract(COLLECTION, &ExtractRequest::records(100, 0))?)?;
        let records = &test_records()[..2];
        let load = store.load(
            &LoadRequest {
                collection: info(DIMENSION),
                mode: LoadMode::Upsert,
            },
            stream(records, DIMENSION)?,
        );
        expect_code(load, &[ErrorCode::ReadOnly], "load into a read-only store")?;
        expect_code(
            store.drop_collection(COLLECTION),
            &[ErrorCode::ReadOnly],
            "drop in a read-only store",
        )?;
        drop(store);
        ensure!(
            before == tree_digest(&self.location)?,
            "the read-only store changed on disk"
        );
        Ok(())
    }

    fn drop_collection(&self) -> Result<()> {
        let store = self.open(Access::ReadWrite)?;
        store.drop_collection(COLLECTION)?;
        let names = store.list_collections()?;
        ensure!(
            !names.iter().any(|n| n == COLLECTION),
            "the dropped collection is still listed: {names:?}"
        );
        Ok(())
    }
}
