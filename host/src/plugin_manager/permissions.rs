//! On Unix, plugin files that someone else could change are refused: a plugin is native code that
//! runs as the user, so whoever can write its directory, its library or its `plugin.toml` could
//! run code as the user through ragged.

use std::path::Path;

/// Refuses a plugin whose directory, manifest or library is writable by group or others, or owned
/// by someone other than the current user or root. Missing files are reported elsewhere.
#[cfg(unix)]
pub(super) fn check(paths: &[&Path]) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;

    for path in paths {
        if let Ok(metadata) = std::fs::metadata(path)
            && let Some(problem) = problem(path, metadata.mode(), metadata.uid(), current_uid())
        {
            return Err(problem);
        }
    }
    Ok(())
}

#[cfg(not(unix))]
pub(super) fn check(_: &[&Path]) -> Result<(), String> {
    Ok(())
}

/// What is wrong with a plugin file of this mode and owner, for a process running as `me`.
#[cfg(unix)]
fn problem(path: &Path, mode: u32, owner: u32, me: Option<u32>) -> Option<String> {
    let writers = match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (true, true) => Some("group and others"),
        (true, false) => Some("its group"),
        (false, true) => Some("others"),
        (false, false) => None,
    };
    if let Some(writers) = writers {
        return Some(format!(
            "{} is writable by {writers} (mode {:04o}), who could make ragged run their code as you; \
             fix it with `chmod go-w {}`",
            path.display(),
            mode & 0o7777,
            path.display()
        ));
    }
    match me {
        Some(me) if owner != me && owner != 0 => Some(format!(
            "{} is owned by user {owner}, not by you (user {me}) or root, so its owner could make ragged \
             run their code as you; reinstall the plugin yourself with `ragged plugin install`",
            path.display()
        )),
        _ => None,
    }
}

/// The user this process runs as: the owner of a file it creates, which is exactly the user whose
/// files the process trusts (std offers no getuid). Unknown when no temporary file can be made.
#[cfg(unix)]
fn current_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    use std::sync::OnceLock;

    static UID: OnceLock<Option<u32>> = OnceLock::new();
    *UID.get_or_init(|| {
        tempfile::tempfile()
            .and_then(|file| file.metadata())
            .ok()
            .map(|metadata| metadata.uid())
    })
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn writable_by_group_or_others_is_refused_with_the_fix() {
        let path = Path::new("/plugins/x/libx.so");
        assert_eq!(problem(path, 0o100755, 1000, Some(1000)), None);
        assert_eq!(problem(path, 0o040700, 0, Some(1000)), None, "root's files are trusted");
        let refusal = problem(path, 0o100775, 1000, Some(1000)).expect("group-writable");
        assert!(
            refusal.contains("/plugins/x/libx.so is writable by its group (mode 0775)"),
            "{refusal}"
        );
        assert!(refusal.contains("`chmod go-w /plugins/x/libx.so`"), "{refusal}");
        let refusal = problem(path, 0o040757, 1000, Some(1000)).expect("world-writable");
        assert!(refusal.contains("writable by others (mode 0757)"), "{refusal}");
        let refusal = problem(path, 0o041777, 0, Some(1000)).expect("sticky but world-writable");
        assert!(refusal.contains("group and others (mode 1777)"), "{refusal}");
    }

    #[test]
    fn files_of_another_user_are_refused() {
        let path = Path::new("/plugins/x/plugin.toml");
        let refusal = problem(path, 0o100644, 1001, Some(1000)).expect("another user's file");
        assert!(
            refusal.contains("/plugins/x/plugin.toml is owned by user 1001, not by you (user 1000) or root"),
            "{refusal}"
        );
        assert_eq!(problem(path, 0o100644, 1001, None), None, "nobody to compare with");
    }

    #[test]
    fn the_current_user_owns_what_it_creates() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert!(check(&[dir.path()]).is_ok(), "a private directory of the current user");
    }
}
