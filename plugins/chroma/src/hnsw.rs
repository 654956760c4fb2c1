//! Chroma's HNSW segment files (its hnswlib fork, persistence version 1): `header.bin`,
//! `data_level0.bin` (read with positioned reads, never loaded whole) and `length.bin`.
//!
//! Only what reading vectors needs is parsed; the graph links are skipped. Every size is checked
//! against the files before a byte is read, so truncated files are refused by name.

use std::fs::File;
use std::path::{Path, PathBuf};

use ragged_plugin_api::PluginError;

/// `header.bin` is exactly this long: 14 packed little-endian fields.
pub const HEADER_LEN: usize = 100;

/// The fields of `header.bin`.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub version: i32,
    pub offset_level0: u64,
    pub max_elements: u64,
    pub cur_element_count: u64,
    pub size_data_per_element: u64,
    pub label_offset: u64,
    pub offset_data: u64,
    pub max_level: i32,
    pub enter_point: u32,
    pub max_m: u64,
    pub max_m0: u64,
    pub m: u64,
    pub mult: f64,
    pub ef_construction: u64,
}

fn corrupt(path: &Path, problem: impl std::fmt::Display) -> PluginError {
    PluginError::corrupt(format!("{}: {problem}", path.display()))
}

impl Header {
    /// Parses and checks a header for vectors of `dimension` floats.
    pub fn parse(bytes: &[u8], dimension: usize, path: &Path) -> Result<Header, PluginError> {
        if bytes.len() != HEADER_LEN {
            return Err(corrupt(path, format!("{} bytes, expected {HEADER_LEN}", bytes.len())));
        }
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or([0; 8]));
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap_or([0; 4]));
        let header = Header {
            version: u32_at(0) as i32,
            offset_level0: u64_at(4),
            max_elements: u64_at(12),
            cur_element_count: u64_at(20),
            size_data_per_element: u64_at(28),
            label_offset: u64_at(36),
            offset_data: u64_at(44),
            max_level: u32_at(52) as i32,
            enter_point: u32_at(56),
            max_m: u64_at(60),
            max_m0: u64_at(68),
            m: u64_at(76),
            mult: f64::from_bits(u64_at(84)),
            ef_construction: u64_at(92),
        };
        if header.version != 1 {
            return Err(corrupt(
                path,
                format!("unknown hnsw persistence version {} (expected 1)", header.version),
            ));
        }
        // Checked: every field is the file's word, and a wrapped product could look consistent.
        let vector_bytes = (dimension as u64).checked_mul(4);
        let consistent = header.offset_level0 == 0
            && header.max_m0.checked_mul(4).and_then(|links| links.checked_add(4)) == Some(header.offset_data)
            && vector_bytes.is_some()
            && header.label_offset.checked_sub(header.offset_data) == vector_bytes
            && header.label_offset.checked_add(8) == Some(header.size_data_per_element)
            && header.cur_element_count <= header.max_elements;
        if !consistent {
            return Err(corrupt(
                path,
                format!(
                    "inconsistent header for dimension {dimension} (offset_data {}, label_offset {}, \
                     size_data_per_element {}, maxM0 {}, {} of {} elements)",
                    header.offset_data,
                    header.label_offset,
                    header.size_data_per_element,
                    header.max_m0,
                    header.cur_element_count,
                    header.max_elements
                ),
            ));
        }
        Ok(header)
    }
}

/// Elements read per system call when scanning the whole of `data_level0.bin`.
const SCAN_ELEMENTS: usize = 1024;

/// The persisted vectors of one segment. The file is read with positioned reads rather than
/// memory-mapped: every mapped page a read touches counts towards the process's resident memory,
/// which would then grow with the collection (168 MB for 100 000 vectors of 384 floats).
pub struct Level0 {
    path: PathBuf,
    header: Header,
    file: File,
    /// The norms from `length.bin`, only for cosine collections (elsewhere the file is garbage).
    lengths: Option<Vec<f32>>,
    dimension: usize,
}

impl Level0 {
    /// Opens the files of the segment directory `dir`.
    pub fn open(dir: &Path, dimension: usize, cosine: bool) -> Result<Level0, PluginError> {
        let header_path = dir.join("header.bin");
        let bytes = std::fs::read(&header_path).map_err(|e| PluginError::io(&header_path, &e))?;
        let header = Header::parse(&bytes, dimension, &header_path)?;
        let path = dir.join("data_level0.bin");
        let file = File::open(&path).map_err(|e| PluginError::io(&path, &e))?;
        let needed = header
            .cur_element_count
            .checked_mul(header.size_data_per_element)
            .ok_or_else(|| corrupt(&header_path, "element count overflows"))?;
        let actual = file.metadata().map_err(|e| PluginError::io(&path, &e))?.len();
        if actual < needed {
            return Err(corrupt(
                &path,
                format!(
                    "truncated: {actual} bytes, header.bin needs {needed} ({} elements of {} bytes)",
                    header.cur_element_count, header.size_data_per_element
                ),
            ));
        }
        let lengths = if cosine {
            let length_path = dir.join("length.bin");
            let raw = std::fs::read(&length_path).map_err(|e| PluginError::io(&length_path, &e))?;
            let count = header.cur_element_count as usize;
            if raw.len() < 4 * count {
                return Err(corrupt(
                    &length_path,
                    format!("truncated: {} bytes, {count} norms needed", raw.len()),
                ));
            }
            Some(
                raw[..4 * count]
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            )
        } else {
            None
        };
        Ok(Level0 {
            path,
            header,
            file,
            lengths,
            dimension,
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The number of elements ever inserted (deleted ones included).
    pub fn len(&self) -> usize {
        self.header.cur_element_count as usize
    }

    /// Whether no element was ever inserted.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `f(internal, label)` (the label is chroma's numeric id for the record) for every
    /// element without hnswlib's delete mark, in order, reading the file in large chunks.
    pub fn for_each_live(&self, mut f: impl FnMut(usize, u64)) -> Result<(), PluginError> {
        let size = self.header.size_data_per_element as usize;
        let label_at = self.header.label_offset as usize;
        let mut chunk = vec![0u8; size * SCAN_ELEMENTS.min(self.len())];
        for first in (0..self.len()).step_by(SCAN_ELEMENTS) {
            let count = SCAN_ELEMENTS.min(self.len() - first);
            let chunk = &mut chunk[..count * size];
            self.read_at(chunk, (first * size) as u64)?;
            for (k, element) in chunk.chunks_exact(size).enumerate() {
                if element[2] & 1 == 0 {
                    let label = element[label_at..label_at + 8].try_into().map_or(0, u64::from_le_bytes);
                    f(first + k, label);
                }
            }
        }
        Ok(())
    }

    /// Fills `buffer` from the file at `offset`, which [`Level0::open`] checked the file holds.
    fn read_at(&self, buffer: &mut [u8], offset: u64) -> Result<(), PluginError> {
        #[cfg(unix)]
        let read = std::os::unix::fs::FileExt::read_exact_at(&self.file, buffer, offset);
        #[cfg(windows)]
        let read = read_exact_at(&self.file, buffer, offset);
        read.map_err(|e| PluginError::io(&self.path, &e))
    }

    /// The vector chroma returns for an element: the stored one, scaled back by its norm for
    /// cosine (hnswlib stores unit vectors). Fails when a cosine vector is not unit length, which
    /// means the space was resolved wrongly or the file is damaged.
    pub fn vector(&self, internal: usize) -> Result<Vec<f32>, PluginError> {
        let mut vector = Vec::with_capacity(self.dimension);
        self.append_vectors(&[internal], &mut vector)?;
        Ok(vector)
    }

    /// The [`vector`](Self::vector)s of these elements, appended to `out` in the order given.
    /// They are read in element order, one system call per dense window of up to
    /// [`SCAN_ELEMENTS`]: hnswlib inserts a batch on several threads, so the elements of
    /// neighbouring chroma rows are close together but shuffled. Scattered ones are read alone.
    pub fn append_vectors(&self, internals: &[usize], out: &mut Vec<f32>) -> Result<(), PluginError> {
        if let Some(&bad) = internals.iter().find(|&&i| i >= self.len()) {
            return Err(corrupt(&self.path, format!("element {bad} is out of range")));
        }
        let size = self.header.size_data_per_element as usize;
        let vector_bytes = 4 * self.dimension;
        let offset = self.header.offset_data as usize;
        let start = out.len();
        out.resize(start + internals.len() * self.dimension, 0.0);
        let slots = &mut out[start..];
        let mut by_element: Vec<usize> = (0..internals.len()).collect();
        by_element.sort_unstable_by_key(|&k| internals[k]);
        let mut span = Vec::new();
        let mut rest = by_element.as_slice();
        while let Some(&k) = rest.first() {
            let first = internals[k];
            let window = rest
                .iter()
                .take_while(|&&k| internals[k] - first < SCAN_ELEMENTS)
                .count();
            let (run, after) = rest.split_at(window);
            let elements = internals[run[window - 1]] - first + 1;
            if elements > 2 * run.len() {
                span.resize(vector_bytes, 0);
                self.read_at(&mut span, (first * size + offset) as u64)?;
                self.decode_vector(first, &span, &mut slots[k * self.dimension..(k + 1) * self.dimension])?;
                rest = &rest[1..];
                continue;
            }
            span.resize(elements * size, 0);
            self.read_at(&mut span, (first * size) as u64)?;
            for &k in run {
                let internal = internals[k];
                let at = (internal - first) * size + offset;
                let slot = &mut slots[k * self.dimension..(k + 1) * self.dimension];
                self.decode_vector(internal, &span[at..at + vector_bytes], slot)?;
            }
            rest = after;
        }
        Ok(())
    }

    /// Decodes one stored vector (`bytes`, little-endian floats) into `slot`, scaled back for
    /// cosine.
    fn decode_vector(&self, internal: usize, bytes: &[u8], slot: &mut [f32]) -> Result<(), PluginError> {
        for (x, c) in slot.iter_mut().zip(bytes.chunks_exact(4)) {
            *x = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        }
        if let Some(lengths) = &self.lengths {
            let norm = norm(slot);
            if norm != 0.0 && (norm - 1.0).abs() > 1e-3 {
                return Err(corrupt(
                    &self.path,
                    format!("element {internal} of a cosine index is not a unit vector (norm {norm})"),
                ));
            }
            let length = lengths.get(internal).copied().unwrap_or(0.0);
            for x in slot.iter_mut() {
                *x *= length;
            }
        }
        Ok(())
    }
}

/// The Euclidean norm of `vector`, summed in eight lanes so that the compiler can vectorise it
/// (a single running sum is one dependent addition per element; this is only a sanity check, so
/// the order of the additions does not matter).
fn norm(vector: &[f32]) -> f64 {
    let square = |x: &f32| f64::from(*x) * f64::from(*x);
    let mut lanes = [0f64; 8];
    let chunks = vector.chunks_exact(lanes.len());
    let tail: f64 = chunks.remainder().iter().map(square).sum();
    for chunk in chunks {
        for (lane, x) in lanes.iter_mut().zip(chunk) {
            *lane += square(x);
        }
    }
    (lanes.iter().sum::<f64>() + tail).sqrt()
}

/// `FileExt::read_exact_at` of Unix, which Windows lacks.
#[cfg(windows)]
fn read_exact_at(file: &File, mut buffer: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buffer.is_empty() {
        match file.seek_read(buffer, offset)? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            read => {
                buffer = &mut buffer[read..];
                offset += read as u64;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds the files of a segment the way hnswlib lays them out (no graph links).
    pub(crate) fn write_segment(dir: &Path, dimension: usize, elements: &[(u64, bool, Vec<f32>)], norms: &[f32]) {
        let max_m0 = 4u64;
        let offset_data = 4 + 4 * max_m0;
        let label_offset = offset_data + 4 * dimension as u64;
        let size = label_offset + 8;
        let mut header = Vec::new();
        header.extend_from_slice(&1i32.to_le_bytes());
        let max_elements = (elements.len() as u64).max(16);
        for v in [
            0u64,
            max_elements,
            elements.len() as u64,
            size,
            label_offset,
            offset_data,
        ] {
            header.extend_from_slice(&v.to_le_bytes());
        }
        header.extend_from_slice(&0i32.to_le_bytes());
        header.extend_from_slice(&0u32.to_le_bytes());
        for v in [2u64, max_m0, 2] {
            header.extend_from_slice(&v.to_le_bytes());
        }
        header.extend_from_slice(&(1.0f64 / 2f64.ln()).to_le_bytes());
        header.extend_from_slice(&100u64.to_le_bytes());
        assert_eq!(header.len(), HEADER_LEN);
        std::fs::write(dir.join("header.bin"), header).expect("header");
        let mut data = Vec::new();
        for (label, deleted, vector) in elements {
            let mut element = vec![0u8; size as usize];
            element[2] = u8::from(*deleted);
            for (k, x) in vector.iter().enumerate() {
                let at = offset_data as usize + 4 * k;
                element[at..at + 4].copy_from_slice(&x.to_le_bytes());
            }
            element[label_offset as usize..].copy_from_slice(&label.to_le_bytes());
            data.extend_from_slice(&element);
        }
        // A pre-allocated slot past the count holds garbage and must be ignored.
        data.extend_from_slice(&vec![0xAB; size as usize]);
        std::fs::write(dir.join("data_level0.bin"), data).expect("data");
        let lengths: Vec<u8> = norms.iter().flat_map(|x| x.to_le_bytes()).collect();
        std::fs::write(dir.join("length.bin"), lengths).expect("lengths");
        std::fs::write(dir.join("link_lists.bin"), []).expect("links");
    }

    #[test]
    fn header_sizes_that_overflow_are_corrupt_not_a_panic() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_segment(dir.path(), 2, &[(1, false, vec![1.0, 2.0])], &[1.0]);
        let good = std::fs::read(dir.path().join("header.bin")).expect("header");
        let path = dir.path().join("header.bin");
        Header::parse(&good, 2, &path).expect("the written header");
        // maxM0 (at 68) and label_offset (at 36) whose products and sums pass u64::MAX.
        for at in [68, 36] {
            let mut bytes = good.clone();
            bytes[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
            let error = Header::parse(&bytes, 2, &path).expect_err("overflowing header");
            assert!(error.message.contains("inconsistent header"), "{error}");
        }
    }

    #[test]
    fn reads_labels_delete_marks_and_vectors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let elements = vec![
            (1, false, vec![1.0, 2.0]),
            (2, true, vec![3.0, 4.0]),
            (3, false, vec![-0.0, 5.5]),
        ];
        write_segment(dir.path(), 2, &elements, &[]);
        let level0 = Level0::open(dir.path(), 2, false).expect("opens");
        assert_eq!(level0.len(), 3);
        let mut live = Vec::new();
        level0
            .for_each_live(|internal, label| live.push((internal, label)))
            .expect("scans");
        assert_eq!(live, [(0, 1), (2, 3)], "element 1 is deleted");
        let v = level0.vector(2).expect("vector");
        assert_eq!(v[0].to_bits(), (-0.0f32).to_bits());
        assert_eq!(v[1], 5.5);
    }

    #[test]
    fn vectors_read_in_runs_equal_vectors_read_one_by_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let n = 3 * SCAN_ELEMENTS + 7;
        let elements: Vec<(u64, bool, Vec<f32>)> = (0..n)
            .map(|i| (i as u64 + 1, false, vec![i as f32, -(i as f32) / 3.0]))
            .collect();
        write_segment(dir.path(), 2, &elements, &[]);
        let level0 = Level0::open(dir.path(), 2, false).expect("opens");
        // In order (one read per window), reversed, shuffled, scattered, repeated, at both ends.
        let shuffled: Vec<usize> = (0..n).map(|i| (i * 7919) % n).collect();
        let orders: [Vec<usize>; 5] = [
            (0..n).collect(),
            (0..n).rev().collect(),
            shuffled,
            vec![5, n - 1, 0, 2 * SCAN_ELEMENTS, 6, 5],
            (0..n).step_by(3).collect(),
        ];
        for internals in orders {
            let mut batched = Vec::new();
            level0.append_vectors(&internals, &mut batched).expect("reads");
            let one_by_one: Vec<f32> = internals
                .iter()
                .flat_map(|&i| level0.vector(i).expect("vector"))
                .collect();
            let expected: Vec<f32> = internals.iter().flat_map(|&i| elements[i].2.clone()).collect();
            assert_eq!(batched, expected);
            assert_eq!(one_by_one, expected);
        }
        let error = level0
            .append_vectors(&[0, n], &mut Vec::new())
            .expect_err("past the end");
        assert!(
            error.message.contains(&format!("element {n} is out of range")),
            "{error}"
        );
    }

    #[test]
    fn the_norm_in_lanes_is_the_norm_at_every_length() {
        for n in 0..40 {
            let vector: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
            let sequential = vector.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
            assert!(
                (norm(&vector) - sequential).abs() <= 1e-12 * sequential.max(1.0),
                "length {n}"
            );
        }
    }

    #[test]
    fn cosine_vectors_are_scaled_by_length_bin() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_segment(dir.path(), 2, &[(1, false, vec![0.6, 0.8])], &[10.0]);
        let level0 = Level0::open(dir.path(), 2, true).expect("opens");
        assert_eq!(level0.vector(0).expect("vector"), vec![0.6f32 * 10.0, 0.8f32 * 10.0]);
        write_segment(dir.path(), 2, &[(1, false, vec![3.0, 4.0])], &[1.0]);
        let level0 = Level0::open(dir.path(), 2, true).expect("opens");
        let error = level0.vector(0).expect_err("not unit");
        assert!(error.message.contains("not a unit vector"), "{error}");
    }

    #[test]
    fn truncated_and_inconsistent_files_are_corrupt_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_segment(
            dir.path(),
            2,
            &[(1, false, vec![1.0, 2.0]), (2, false, vec![3.0, 4.0])],
            &[],
        );
        let error = Level0::open(dir.path(), 3, false).err().expect("wrong dimension");
        assert!(
            error
                .message
                .contains("header.bin: inconsistent header for dimension 3"),
            "{error}"
        );
        let data = dir.path().join("data_level0.bin");
        let bytes = std::fs::read(&data).expect("read");
        std::fs::write(&data, &bytes[..30]).expect("truncate");
        let error = Level0::open(dir.path(), 2, false).err().expect("truncated");
        assert!(error.message.contains("data_level0.bin: truncated"), "{error}");
        std::fs::write(dir.path().join("header.bin"), [1u8; 40]).expect("short header");
        let error = Level0::open(dir.path(), 2, false).err().expect("short");
        assert!(error.message.contains("header.bin: 40 bytes, expected 100"), "{error}");
    }
}
