//! Choosing a store: sizes of the user's own data in every installed store (measured where it
//! lives, estimated elsewhere by writing a sample through that store's plugin and scaling up),
//! query speed on a sample of that data, and a recommendation with its reasons.

use anyhow::{Result, bail};
use ragged_plugin_api::{Capabilities, CollectionInfo, ErrorCode, Record};
use serde::Serialize;

use crate::benchmark::{self, Workload, exact_neighbours};
use crate::context::Context;
use crate::output::human_bytes;
use crate::platform::Platform;
use crate::records::collect_records;
use crate::store::{InStore, Store};

/// Records written through a plugin per collection to estimate its size.
pub const SAMPLE_RECORDS: u64 = 1000;
/// Queries timed per store to compare speed.
pub const SAMPLE_QUERIES: usize = 20;

/// What matters most to the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Preference {
    /// The fastest queries.
    Speed,
    /// The least disk.
    Storage,
}

/// One store the data could live in.
#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    /// The plugin.
    pub backend: String,
    /// Bytes the user's collections take (or would take) there.
    pub bytes: u64,
    /// Measured where the data lives (true) or estimated from a sample (false).
    pub measured: bool,
    /// Median query latency on a sample of the user's data, when measured.
    pub query_p50_ms: Option<f64>,
}

/// Everything a recommendation is based on.
#[derive(Debug, Clone, Serialize)]
pub struct Situation {
    /// The store the data is in now.
    pub current: String,
    /// Its plugin.
    pub current_backend: String,
    /// Records in it.
    pub records: u64,
    /// Every usable store, the current one included.
    pub candidates: Vec<Candidate>,
    /// The storage limit, in bytes.
    pub max_storage: Option<u64>,
    /// The user's preference.
    pub prefer: Option<Preference>,
}

/// What to use, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Recommendation {
    /// The recommended plugin.
    pub backend: String,
    /// Whether that is the store the data is in now.
    pub keep_current: bool,
    /// Why, one reason per line.
    pub reasons: Vec<String>,
    /// Bytes in the recommended store.
    pub bytes: u64,
    /// Bytes a switch saves (negative: costs), when switching.
    pub saves_bytes: Option<i64>,
    /// The command that performs the switch.
    pub command: Option<String>,
}

/// Applies the rules: keep the current store unless a constraint or preference says otherwise;
/// under a storage limit the smallest store that fits; `--prefer storage` the smallest,
/// `--prefer speed` the fastest measured.
pub fn recommend(situation: &Situation) -> Result<Recommendation> {
    let Some(current) = situation
        .candidates
        .iter()
        .find(|c| c.backend == situation.current_backend)
    else {
        bail!("internal: the current store is not among the candidates");
    };
    let smallest = |among: &[&Candidate]| among.iter().min_by_key(|c| c.bytes).map(|c| (*c).clone());
    let fastest = |among: &[&Candidate]| {
        among
            .iter()
            .filter(|c| c.query_p50_ms.is_some())
            .min_by(|a, b| {
                a.query_p50_ms
                    .unwrap_or(f64::MAX)
                    .total_cmp(&b.query_p50_ms.unwrap_or(f64::MAX))
            })
            .map(|c| (*c).clone())
    };
    let all: Vec<&Candidate> = situation.candidates.iter().collect();
    let mut reasons = Vec::new();
    let chosen = match situation.max_storage {
        Some(limit) => {
            let fitting: Vec<&Candidate> = all.iter().copied().filter(|c| c.bytes <= limit).collect();
            if fitting.is_empty() {
                reasons.push(format!(
                    "no installed store fits the {} limit; the smallest is shown",
                    human_bytes(limit)
                ));
                smallest(&all)
            } else if current.bytes <= limit && situation.prefer.is_none() {
                reasons.push(format!(
                    "{} fits the {} limit ({})",
                    current.backend,
                    human_bytes(limit),
                    human_bytes(current.bytes)
                ));
                Some(current.clone())
            } else {
                if current.bytes > limit {
                    reasons.push(format!(
                        "{} needs {}, over the {} limit",
                        current.backend,
                        human_bytes(current.bytes),
                        human_bytes(limit)
                    ));
                }
                match situation.prefer {
                    Some(Preference::Speed) => fastest(&fitting).or_else(|| smallest(&fitting)),
                    _ => smallest(&fitting),
                }
            }
        }
        None => match situation.prefer {
            Some(Preference::Storage) => smallest(&all),
            Some(Preference::Speed) => fastest(&all),
            None => {
                reasons.push(format!(
                    "{} holds the data now and no constraint asks for a change",
                    current.backend
                ));
                Some(current.clone())
            }
        },
    };
    let Some(chosen) = chosen else {
        bail!("no store could be measured to recommend one");
    };
    match situation.prefer {
        Some(Preference::Storage) => reasons.push(format!("--prefer storage: {} is the smallest", chosen.backend)),
        Some(Preference::Speed) => reasons.push(format!(
            "--prefer speed: {} answered fastest on a sample of the data ({:.2} ms median)",
            chosen.backend,
            chosen.query_p50_ms.unwrap_or(f64::NAN)
        )),
        None => {}
    }
    let keep_current = chosen.backend == current.backend;
    if keep_current && let Some(alternative) = smallest(&all).filter(|s| s.backend != current.backend) {
        reasons.push(format!(
            "switching to {} would save {} ({:.0}%)",
            alternative.backend,
            human_bytes(current.bytes.saturating_sub(alternative.bytes)),
            100.0 * (1.0 - alternative.bytes as f64 / current.bytes.max(1) as f64)
        ));
    }
    if !chosen.measured {
        reasons.push(format!(
            "{}'s size is estimated from {SAMPLE_RECORDS} records per collection written through its plugin",
            chosen.backend
        ));
    }
    Ok(Recommendation {
        keep_current,
        saves_bytes: (!keep_current).then(|| current.bytes as i64 - chosen.bytes as i64),
        command: (!keep_current).then(|| {
            format!(
                "ragged backend migrate {} {}:./{}_store",
                situation.current, chosen.backend, chosen.backend
            )
        }),
        bytes: chosen.bytes,
        backend: chosen.backend,
        reasons,
    })
}

/// A store's collections: their records and bytes, and a sample of each to write elsewhere.
pub struct StoreSample {
    /// Records in all the collections.
    pub records: u64,
    /// Bytes they occupy, as the plugin measures them.
    pub bytes: u64,
    /// Each collection's description and up to [`SAMPLE_RECORDS`] of its records.
    pub samples: Vec<(CollectionInfo, Vec<Record>)>,
}

/// Counts, measures and samples the collections `names` of `store`.
pub fn sample_store(store: &Store, names: &[String]) -> Result<StoreSample> {
    let mut sampled = StoreSample {
        records: 0,
        bytes: 0,
        samples: Vec::new(),
    };
    for name in names {
        let info = store
            .backend
            .describe(name)
            .in_store(store, &format!("describe '{name}'"))?;
        sampled.records += info.count;
        sampled.bytes += store
            .backend
            .storage(name)
            .in_store(store, &format!("measure '{name}'"))?
            .total_bytes;
        let sample = match store.backend.sample(name, SAMPLE_RECORDS, 1) {
            Ok(stream) => collect_records(stream)?,
            Err(error) if error.code == ErrorCode::Unsupported => {
                bail!(
                    "the {} plugin cannot sample records to measure other stores with",
                    store.spec.backend
                )
            }
            Err(error) => return Err(error).in_store(store, &format!("sample '{name}'")),
        };
        sampled.samples.push((info, sample));
    }
    Ok(sampled)
}

/// Measures the user's data: its size in `store`, and for every other usable plugin that can
/// write, the size a sample scales up to; query speed on a sample in each.
pub fn measure(ctx: &Context, store: &Store, platform: &Platform, spec: &str) -> Result<Situation> {
    let names = store.backend.list_collections().in_store(store, "list collections")?;
    if names.is_empty() {
        bail!("{} holds no collection to measure", store.spec);
    }
    let StoreSample {
        records,
        bytes: current_bytes,
        samples,
    } = sample_store(store, &names)?;
    // Speed is compared on the largest collection's sample, querying with its own vectors.
    let Some((largest_info, largest)) = samples
        .iter()
        .max_by_key(|(info, _)| info.count)
        .map(|(info, sample)| (info.clone(), sample.clone()))
    else {
        bail!("{} holds no collection to measure", store.spec);
    };
    let queries: Vec<Vec<f32>> = largest
        .iter()
        .take(SAMPLE_QUERIES)
        .map(|r| r.embedding.clone())
        .collect();
    let truth: Vec<Vec<String>> = queries
        .iter()
        .map(|q| exact_neighbours(&largest, q, largest_info.metric, benchmark::K as usize))
        .collect();
    let speed_workload = Workload {
        description: format!("{} sampled records of '{}'", largest.len(), largest_info.name),
        records: largest,
        queries,
        dimension: largest_info.dimension,
        metric: largest_info.metric,
    };
    let mut candidates = Vec::new();
    for plugin in platform.plugins.iter().filter(|p| p.usable) {
        let is_current = plugin.name == store.spec.backend;
        let capabilities = crate::plugin_manager::load(ctx, &plugin.name)?.1.info.capabilities;
        if !capabilities.contains(Capabilities::WRITE.union(Capabilities::QUERY)) {
            continue;
        }
        let speed = benchmark::run_backend(ctx, &plugin.name, &speed_workload, &truth);
        let bytes = if is_current {
            Some(current_bytes)
        } else {
            estimate_bytes(ctx, &plugin.name, &samples)
        };
        let (Some(bytes), Ok(speed)) = (bytes, speed) else {
            continue;
        };
        candidates.push(Candidate {
            backend: plugin.name.clone(),
            bytes,
            measured: is_current,
            query_p50_ms: speed.query.map(|q| q.p50_ms),
        });
    }
    Ok(Situation {
        current: spec.to_owned(),
        current_backend: store.spec.backend.clone(),
        records,
        candidates,
        max_storage: None,
        prefer: None,
    })
}

/// The bytes `samples` scale up to in a `backend` store: each collection's sample is written
/// through the plugin and its measured bytes per record multiplied by the collection's count.
pub fn estimate_bytes(ctx: &Context, backend: &str, samples: &[(CollectionInfo, Vec<Record>)]) -> Option<u64> {
    let mut total = 0.0;
    for (info, sample) in samples {
        if sample.is_empty() {
            continue;
        }
        let workload = Workload {
            description: format!("a sample of '{}'", info.name),
            records: sample.clone(),
            queries: Vec::new(),
            dimension: info.dimension,
            metric: info.metric,
        };
        let result = benchmark::run_backend(ctx, backend, &workload, &[]).ok()?;
        total += result.bytes_per_record? * info.count as f64;
    }
    Some(total.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1 << 20;

    fn candidate(backend: &str, mb: u64, p50: f64, measured: bool) -> Candidate {
        Candidate {
            backend: backend.to_owned(),
            bytes: mb * MB,
            measured,
            query_p50_ms: Some(p50),
        }
    }

    fn situation(max_storage_mb: Option<u64>, prefer: Option<Preference>) -> Situation {
        Situation {
            current: "chroma:./chroma_db".to_owned(),
            current_backend: "chroma".to_owned(),
            records: 8500,
            candidates: vec![
                candidate("chroma", 1700, 4.0, true),
                candidate("leann", 150, 9.0, false),
                candidate("lance", 900, 2.0, false),
            ],
            max_storage: max_storage_mb.map(|mb| mb * MB),
            prefer,
        }
    }

    #[test]
    fn without_a_constraint_the_current_store_stays_and_the_saving_is_named() {
        let r = recommend(&situation(None, None)).expect("recommends");
        assert_eq!(
            (r.backend.as_str(), r.keep_current, r.command.as_deref()),
            ("chroma", true, None)
        );
        assert!(
            r.reasons
                .iter()
                .any(|l| l.contains("switching to leann would save 1.5 GiB (91%)")),
            "{r:#?}"
        );
    }

    #[test]
    fn a_storage_limit_picks_the_smallest_store_that_fits() {
        let r = recommend(&situation(Some(500), None)).expect("recommends");
        assert_eq!(r.backend, "leann");
        assert_eq!(r.saves_bytes, Some((1700 - 150) * MB as i64));
        assert_eq!(
            r.command.as_deref(),
            Some("ragged backend migrate chroma:./chroma_db leann:./leann_store")
        );
        assert!(
            r.reasons.iter().any(|l| l.contains("over the 500.0 MiB limit")),
            "{r:#?}"
        );
        assert!(r.reasons.iter().any(|l| l.contains("estimated from")), "{r:#?}");
        // A limit the current store meets changes nothing.
        assert_eq!(
            recommend(&situation(Some(2000), None)).expect("recommends").backend,
            "chroma"
        );
        // Under a limit, speed picks the fastest of the stores that fit.
        assert_eq!(
            recommend(&situation(Some(1000), Some(Preference::Speed)))
                .expect("recommends")
                .backend,
            "lance"
        );
        // Nothing fits: the smallest, saying so.
        let r = recommend(&situation(Some(100), None)).expect("recommends");
        assert_eq!(r.backend, "leann");
        assert!(r.reasons[0].contains("no installed store fits"), "{r:#?}");
    }

    #[test]
    fn preferences_pick_the_smallest_or_the_fastest() {
        assert_eq!(
            recommend(&situation(None, Some(Preference::Storage)))
                .expect("recommends")
                .backend,
            "leann"
        );
        assert_eq!(
            recommend(&situation(None, Some(Preference::Speed)))
                .expect("recommends")
                .backend,
            "lance"
        );
    }
}
