//! Digests of directory trees, to prove that a store was left byte-identical.

use std::path::Path;

use anyhow::{Context as _, Result};
use sha2::{Digest, Sha256};

/// A SHA-256 over every path, file type and file content under `root`, in sorted order.
/// Missing `root` digests as an empty tree.
pub fn tree_digest(root: &Path) -> Result<String> {
    let mut hasher = Sha256::new();
    if root.exists() {
        visit(root, root, &mut hasher)?;
    }
    Ok(hex::encode(hasher.finalize()))
}

fn visit(root: &Path, path: &Path, hasher: &mut Sha256) -> Result<()> {
    let metadata = std::fs::symlink_metadata(path).with_context(|| format!("reading {}", path.display()))?;
    let relative = path.strip_prefix(root).unwrap_or(path).to_string_lossy().into_owned();
    hasher.update(relative.as_bytes());
    hasher.update([0]);
    if metadata.is_dir() {
        hasher.update(b"d");
        let mut children: Vec<_> = std::fs::read_dir(path)
            .with_context(|| format!("listing {}", path.display()))?
            .map(|entry| entry.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        children.sort();
        for child in children {
            visit(root, &child, hasher)?;
        }
    } else if metadata.is_file() {
        hasher.update(b"f");
        let mut file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        std::io::copy(&mut file, hasher).with_context(|| format!("reading {}", path.display()))?;
    } else {
        hasher.update(b"l");
        hasher.update(
            std::fs::read_link(path)
                .map(|t| t.to_string_lossy().into_owned())
                .unwrap_or_default()
                .as_bytes(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_change_changes_the_digest() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("a"), b"1").expect("write");
        let before = tree_digest(dir.path()).expect("digest");
        assert_eq!(before, tree_digest(dir.path()).expect("digest"));
        std::fs::write(dir.path().join("a"), b"2").expect("write");
        let changed = tree_digest(dir.path()).expect("digest");
        assert_ne!(before, changed);
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        assert_ne!(changed, tree_digest(dir.path()).expect("digest"));
    }
}
