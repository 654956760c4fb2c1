//! Migration runs on disk: `<home>/runs/<id>/run.json` is the plan and the checkpoint of one
//! migration, rewritten atomically after every durable step, so `--resume` can continue after
//! Ctrl-C, `kill -9` or a power loss. Backups and the final report live in the same directory.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};
use tracing::debug;

use crate::context::Context;

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunState {
    /// Recorded, backups being taken; nothing was written to the target yet. A resume takes the
    /// backups again before it writes.
    BackingUp,
    /// Started; if no process is working on it, it was interrupted (crash, kill) and can resume.
    Running,
    /// Stopped at a batch boundary on request (Ctrl-C); can resume.
    Interrupted,
    /// Verification failed or an error stopped it and the target is being restored from its
    /// backup; a resume (or `backend rollback`) finishes the restore and never loads again.
    RollingBack,
    /// Verification failed or an error stopped it, and the target was rolled back.
    RolledBack,
    /// An error stopped it and the target was left as it was (rollback disabled or impossible).
    Failed,
    /// Everything loaded and verified.
    Completed,
}

impl RunState {
    /// Whether `--resume` can continue the run (and `backups clean` keeps it).
    pub fn is_unfinished(self) -> bool {
        !matches!(self, RunState::RolledBack | RunState::Completed)
    }
}

/// Progress of one collection within a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectionProgress {
    /// Records in the source when the run started.
    pub count: u64,
    /// Records of the source's extract order that are durable in the target.
    pub records_done: u64,
    /// Set before the first write: this run creates the collection, so rollback drops it.
    pub created_by_run: bool,
    /// All records are loaded.
    pub loaded: bool,
}

/// The plan and checkpoint of one migration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// The run's id, also its directory name.
    pub id: String,
    /// When it started (RFC 3339).
    pub started: String,
    /// Source store spec.
    pub source: String,
    /// Target store spec.
    pub target: String,
    /// Source store options.
    pub source_options: BTreeMap<String, String>,
    /// Target store options.
    pub target_options: BTreeMap<String, String>,
    /// Records per batch.
    pub batch_size: u32,
    /// Records between checkpoints.
    pub checkpoint_interval: u64,
    /// Collections in migration order, with their progress.
    pub collections: Vec<(String, CollectionProgress)>,
    /// Whether the target location was a directory before the run (None: not a local path).
    pub target_location_existed: Option<bool>,
    /// The backup taken before writing, if any.
    pub backup: Option<PathBuf>,
    /// Paths, sizes and modification times of the source collections' files when the run
    /// started (None: the source plugin cannot list its files), to notice writes to the source.
    #[serde(default)]
    pub source_fingerprint: Option<String>,
    /// Where the run stands.
    pub state: RunState,
    /// Why it failed, when it did.
    pub error: Option<String>,
}

impl Run {
    /// The directory of run `id`.
    pub fn dir(ctx: &Context, id: &str) -> PathBuf {
        ctx.home.join("runs").join(id)
    }

    /// A new run id: the UTC start time, sortable, plus the process id to keep ids unique.
    pub fn new_id() -> String {
        let now = jiff::Timestamp::now();
        format!("{}-{}", now.strftime("%Y%m%dT%H%M%SZ"), std::process::id())
    }

    /// Loads a run from its `run.json`.
    pub fn load(path: &Path) -> Result<Run> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{}: not a ragged run checkpoint", path.display()))
    }

    /// Writes `run.json` atomically and durably (temp file, fsync, rename, fsync the directory).
    pub fn save(&self, dir: &Path) -> Result<()> {
        let records_done: u64 = self.collections.iter().map(|(_, p)| p.records_done).sum();
        debug!(run = %self.id, state = ?self.state, records_done, "writing the checkpoint");
        write_atomic(&dir.join("run.json"), serde_json::to_string_pretty(self)?.as_bytes())
    }

    /// The progress of a collection.
    pub fn progress_mut(&mut self, name: &str) -> Result<&mut CollectionProgress> {
        match self.collections.iter_mut().find(|(n, _)| n == name) {
            Some((_, progress)) => Ok(progress),
            None => bail!("internal: collection '{name}' is not part of run {}", self.id),
        }
    }

    /// Every run, newest first.
    pub fn list(ctx: &Context) -> Result<Vec<Run>> {
        let dir = ctx.home.join("runs");
        let mut runs = Vec::new();
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if let Ok(run) = Run::load(&entry.path().join("run.json")) {
                runs.push(run);
            }
        }
        runs.sort_by(|a, b| b.id.cmp(&a.id));
        Ok(runs)
    }
}

/// Replaces `path` with `bytes` atomically and durably: temp file, fsync, rename, fsync the
/// directory. A crash leaves the old file or the new one, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().context("a file path has a parent directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut temp = path.as_os_str().to_owned();
    temp.push(".tmp");
    let temp = std::path::PathBuf::from(temp);
    let mut file = std::fs::File::create(&temp).with_context(|| format!("creating {}", temp.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", temp.display()))?;
    std::fs::rename(&temp, path).with_context(|| format!("replacing {}", path.display()))?;
    sync_dir(dir);
    Ok(())
}

/// Makes a rename durable on file systems that need the directory synced (best effort).
pub fn sync_dir(dir: &Path) {
    if let Ok(handle) = std::fs::File::open(dir) {
        let _ = handle.sync_all();
    }
}
