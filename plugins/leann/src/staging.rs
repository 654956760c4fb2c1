//! The durable staging area of a load: `<collection>/ragged-staging/`.
//!
//! Each incoming batch becomes one file, written under a temporary name, synced and renamed, so a
//! staged batch is either complete or absent. The graph is built from the staged batches (plus
//! the records already in the index) when the load ends; until then memory holds one batch. A
//! load that crashes leaves its staged batches behind, and the next load into the collection
//! includes them before its own (its records are id-keyed, so replaying what was staged does no
//! harm): that is how a crashed load resumes. A load that fails with an error removes the batches
//! it staged itself.
//!
//! A batch file is `RGSTAGE1`, the dimension (`u32`), then per record: the id, the document and
//! the metadata as length-prefixed UTF-8 (a `u8` presence flag before the optional ones) and the
//! embedding as `f32`s, all little-endian.

use std::fs;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use ragged_plugin_api::{DistanceMetric, PluginError, Record};
use serde::{Deserialize, Serialize};

use crate::layout::{create_dir_synced, exists, sync_dir, write_synced};

const MAGIC: &[u8; 8] = b"RGSTAGE1";
const INFO_FILE: &str = "staging.json";
const BATCH_SUFFIX: &str = ".batch";

/// What every staged batch of a collection agrees on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StagingInfo {
    pub dimension: u32,
    pub metric: DistanceMetric,
}

/// The staging directory of one collection.
pub(crate) struct Staging {
    pub dir: PathBuf,
    /// The number of the next batch file.
    next: std::cell::Cell<u64>,
}

impl Staging {
    /// Opens (creating) the staging area, checking it agrees with `info`.
    pub fn open(dir: PathBuf, info: StagingInfo) -> Result<Staging, PluginError> {
        create_dir_synced(&dir)?;
        let info_path = dir.join(INFO_FILE);
        if exists(&info_path)? {
            let text = fs::read(&info_path).map_err(|e| PluginError::io(&info_path, &e))?;
            let staged: StagingInfo = serde_json::from_slice(&text)
                .map_err(|e| PluginError::corrupt(format!("{}: {e}", info_path.display())))?;
            if staged != info {
                if Staging::batches_in(&dir)?.is_empty() {
                    // Nothing staged: the old description is meaningless.
                    write_synced(&info_path, &serde_json::to_vec(&info).expect("serialises"))?;
                } else {
                    return Err(PluginError::invalid_input(format!(
                        "{} holds batches of an interrupted load with dimension {} and metric {}, this load has dimension {} and metric {}",
                        dir.display(),
                        staged.dimension,
                        staged.metric,
                        info.dimension,
                        info.metric
                    ))
                    .with_help("finish the interrupted load with the same collection settings, or remove that directory"));
                }
            }
        } else {
            write_synced(&info_path, &serde_json::to_vec(&info).expect("serialises"))?;
            sync_dir(&dir)?;
        }
        let next = Staging::batches_in(&dir)?
            .last()
            .and_then(|p| p.file_stem()?.to_str()?.parse::<u64>().ok())
            .map_or(1, |n| n + 1);
        Ok(Staging {
            dir,
            next: std::cell::Cell::new(next),
        })
    }

    /// The staged batch files, in the order they were written.
    pub fn batches(&self) -> Result<Vec<PathBuf>, PluginError> {
        Staging::batches_in(&self.dir)
    }

    /// The staged batch files in `dir`, without opening the staging area.
    pub fn batches_in(dir: &Path) -> Result<Vec<PathBuf>, PluginError> {
        let mut batches = Vec::new();
        for entry in fs::read_dir(dir).map_err(|e| PluginError::io(dir, &e))? {
            let path = entry.map_err(|e| PluginError::io(dir, &e))?.path();
            if path.to_str().is_some_and(|p| p.ends_with(BATCH_SUFFIX)) {
                batches.push(path);
            } else if path.extension().is_some_and(|e| e == "tmp") {
                // A batch whose write was interrupted; it never counted.
                let _ = fs::remove_file(&path);
            }
        }
        batches.sort();
        Ok(batches)
    }

    /// Writes one batch durably and returns its path.
    pub fn append(&self, records: &[Record], dimension: u32) -> Result<PathBuf, PluginError> {
        let number = self.next.get();
        self.next.set(number + 1);
        let path = self.dir.join(format!("{number:010}{BATCH_SUFFIX}"));
        let temporary = path.with_extension("tmp");
        let file = fs::File::create(&temporary).map_err(|e| PluginError::io(&temporary, &e))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let io = |e: std::io::Error| PluginError::io(&temporary, &e);
        out.write_all(MAGIC).map_err(io)?;
        out.write_all(&dimension.to_le_bytes()).map_err(io)?;
        for record in records {
            write_text(&mut out, Some(&record.id)).map_err(io)?;
            write_text(&mut out, record.document.as_deref()).map_err(io)?;
            write_text(&mut out, record.metadata.as_deref()).map_err(io)?;
            for value in &record.embedding {
                out.write_all(&value.to_le_bytes()).map_err(io)?;
            }
        }
        let file = out.into_inner().map_err(|e| PluginError::io(&temporary, e.error()))?;
        file.sync_all().map_err(io)?;
        fs::rename(&temporary, &path).map_err(|e| PluginError::io(&path, &e))?;
        sync_dir(&self.dir)?;
        Ok(path)
    }

    /// Removes the whole staging area (after a commit).
    pub fn remove(self) -> Result<(), PluginError> {
        fs::remove_dir_all(&self.dir).map_err(|e| PluginError::io(&self.dir, &e))?;
        if let Some(parent) = self.dir.parent() {
            sync_dir(parent)?;
        }
        Ok(())
    }
}

fn write_text(out: &mut impl Write, text: Option<&str>) -> std::io::Result<()> {
    match text {
        None => out.write_all(&[0]),
        Some(text) => {
            out.write_all(&[1])?;
            out.write_all(&(text.len() as u64).to_le_bytes())?;
            out.write_all(text.as_bytes())
        }
    }
}

/// Reads a staged batch file record by record.
pub(crate) struct BatchReader {
    reader: BufReader<fs::File>,
    path: PathBuf,
    dimension: u32,
    position: u64,
    len: u64,
}

/// A staged record and where it starts in its file.
pub(crate) struct Staged {
    pub offset: u64,
    pub record: Record,
}

impl BatchReader {
    pub fn open(path: &Path, dimension: u32) -> Result<BatchReader, PluginError> {
        let file = fs::File::open(path).map_err(|e| PluginError::io(path, &e))?;
        let len = file.metadata().map_err(|e| PluginError::io(path, &e))?.len();
        let mut reader = BatchReader {
            reader: BufReader::with_capacity(1 << 16, file),
            path: path.to_owned(),
            dimension,
            position: 0,
            len,
        };
        let magic: [u8; 8] = reader.bytes()?;
        let staged_dimension = u32::from_le_bytes(reader.bytes()?);
        if &magic != MAGIC || staged_dimension != dimension {
            return Err(reader.corrupt("not a staged batch of this collection"));
        }
        Ok(reader)
    }

    fn corrupt(&self, what: &str) -> PluginError {
        PluginError::corrupt(format!("{}: {what} (at byte {})", self.path.display(), self.position))
    }

    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], PluginError> {
        let mut buffer = [0u8; N];
        self.reader
            .read_exact(&mut buffer)
            .map_err(|_| self.corrupt("the staged batch ends early"))?;
        self.position += N as u64;
        Ok(buffer)
    }

    fn text(&mut self) -> Result<Option<String>, PluginError> {
        let [present] = self.bytes::<1>()?;
        if present == 0 {
            return Ok(None);
        }
        let len = u64::from_le_bytes(self.bytes()?);
        if self.position + len > self.len {
            return Err(self.corrupt("a staged text runs past the end"));
        }
        let mut buffer = vec![0u8; len as usize];
        self.reader
            .read_exact(&mut buffer)
            .map_err(|_| self.corrupt("the staged batch ends early"))?;
        self.position += len;
        String::from_utf8(buffer)
            .map(Some)
            .map_err(|_| self.corrupt("staged text is not UTF-8"))
    }

    /// The record starting at `offset`.
    pub fn record_at(&mut self, offset: u64) -> Result<Record, PluginError> {
        if offset != self.position {
            self.reader
                .seek(SeekFrom::Start(offset))
                .map_err(|e| PluginError::io(&self.path, &e))?;
            self.position = offset;
        }
        self.next_record()?
            .map(|staged| staged.record)
            .ok_or_else(|| self.corrupt("no staged record here"))
    }

    /// The next record, or `None` at the end.
    pub fn next_record(&mut self) -> Result<Option<Staged>, PluginError> {
        if self.position >= self.len {
            return Ok(None);
        }
        let offset = self.position;
        let id = self.text()?.ok_or_else(|| self.corrupt("a staged record has no id"))?;
        let document = self.text()?;
        let metadata = self.text()?;
        let mut embedding = Vec::with_capacity(self.dimension as usize);
        for _ in 0..self.dimension {
            embedding.push(f32::from_le_bytes(self.bytes()?));
        }
        Ok(Some(Staged {
            offset,
            record: Record {
                id,
                document,
                metadata,
                embedding,
            },
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staged_batches_read_back_exactly_and_in_order() {
        let dir = tempfile::tempdir().expect("temp dir");
        let info = StagingInfo {
            dimension: 2,
            metric: DistanceMetric::Cosine,
        };
        let staging = Staging::open(dir.path().join("s"), info).expect("opens");
        let records = vec![
            Record {
                id: "a".into(),
                document: None,
                metadata: Some("{}".into()),
                embedding: vec![-0.0, f32::MIN_POSITIVE],
            },
            Record {
                id: "é".into(),
                document: Some(String::new()),
                metadata: None,
                embedding: vec![1.5, 3e38],
            },
        ];
        let first = staging.append(&records, 2).expect("stages");
        let second = staging.append(&records[1..], 2).expect("stages");
        assert_eq!(staging.batches().expect("lists"), vec![first.clone(), second]);
        let mut reader = BatchReader::open(&first, 2).expect("opens");
        let mut offsets = Vec::new();
        while let Some(staged) = reader.next_record().expect("reads") {
            offsets.push(staged.offset);
            let want = &records[offsets.len() - 1];
            assert_eq!(staged.record.id, want.id);
            assert_eq!(staged.record.document, want.document);
            assert_eq!(staged.record.metadata, want.metadata);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&staged.record.embedding), bits(&want.embedding));
        }
        assert_eq!(reader.record_at(offsets[0]).expect("seeks").id, "a");
        // Another dimension while batches wait is refused, naming the directory.
        let error = Staging::open(
            dir.path().join("s"),
            StagingInfo {
                dimension: 3,
                metric: DistanceMetric::Cosine,
            },
        )
        .err()
        .expect("refused");
        assert!(
            error
                .message
                .contains("holds batches of an interrupted load with dimension 2"),
            "{}",
            error.message
        );
    }
}
