//! Entry points for the fuzz targets in `tests/fuzz` (not API), for parsers that are not public:
//! each runs the real code on a foreign file and changes nothing outside a scratch directory.

use std::path::Path;

use anyhow::Result;

use crate::backup::{self, BackupManifest};

/// A backup archive checked as `rollback` checks it before restoring, unpacked next to it; the
/// trees its manifest names are not touched.
pub fn backup(archive: &Path) -> Result<BackupManifest> {
    backup::unpack_checked(archive).map(|(_staging, manifest)| manifest)
}
