//! The files HTTP requests may name on the server's machine: load inputs inside the
//! configured import directories, export outputs inside the export directories.
//!
//! Invariants:
//! - a path is judged after `canonicalize` (symlinks and `..` resolved), so a symlink
//!   inside an allowed directory that points outside it is refused;
//! - every refusal of an input reads the same, whether the path exists or not, so an
//!   answer never tells what exists outside the allowed directories;
//! - an export's output must not exist yet or be a directory inside an export
//!   directory; its missing components are created by the export, below the nearest
//!   existing (canonical) ancestor.
//!
//! A check and the later open are two steps: someone who can write inside an allowed
//! directory could swap a component for a symlink between them. The directories are
//! the operator's, and only writers of them can do this (README, "Security model").
//!
//! Stateless; safe from any thread.

use std::path::{Component, Path, PathBuf};

/// Why a path was refused; the message never says whether it exists.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathRefused {
    /// No directory of this kind is configured.
    #[error("no {kind} directory is configured (--{flag}): {what} over HTTP is off")]
    NoneConfigured {
        /// `import` or `export`.
        kind: &'static str,
        /// The server flag.
        flag: &'static str,
        /// What is off.
        what: &'static str,
    },
    /// The path is not an allowed file (outside the directories, missing, not a
    /// regular file, or unreadable: which is not said).
    #[error("`{path}` is not a readable file inside the import directories")]
    NotImportable {
        /// The path as given.
        path: String,
    },
    /// The output path is not inside an export directory, or exists and is not a
    /// directory.
    #[error("`{path}` is not a new or existing directory inside the export directories")]
    NotExportable {
        /// The path as given.
        path: String,
    },
}

fn canonical_dirs(dirs: &[PathBuf]) -> Vec<PathBuf> {
    dirs.iter()
        .filter_map(|d| match std::fs::canonicalize(d) {
            Ok(dir) => Some(dir),
            Err(e) => {
                tracing::warn!(dir = %d.display(), error = %e, "configured directory unusable");
                None
            }
        })
        .collect()
}

/// The canonical path of input `path`, when it is a regular file inside one of
/// `import_dirs`.
pub fn import_path(import_dirs: &[PathBuf], path: &Path) -> Result<PathBuf, PathRefused> {
    if import_dirs.is_empty() {
        return Err(PathRefused::NoneConfigured {
            kind: "import",
            flag: "import-dir",
            what: "loading a server-side file",
        });
    }
    let refused = || PathRefused::NotImportable {
        path: path.display().to_string(),
    };
    let canonical = std::fs::canonicalize(path).map_err(|_| refused())?;
    let inside = canonical_dirs(import_dirs)
        .iter()
        .any(|dir| canonical.starts_with(dir));
    if !inside {
        return Err(refused());
    }
    match std::fs::metadata(&canonical) {
        Ok(meta) if meta.is_file() => Ok(canonical),
        _ => Err(refused()),
    }
}

/// The path an export may write `path` to: inside one of `export_dirs`, either an
/// existing directory or a path whose existing ancestor is inside.
pub fn export_path(export_dirs: &[PathBuf], path: &Path) -> Result<PathBuf, PathRefused> {
    if export_dirs.is_empty() {
        return Err(PathRefused::NoneConfigured {
            kind: "export",
            flag: "export-dir",
            what: "exporting to a server-side directory",
        });
    }
    let refused = || PathRefused::NotExportable {
        path: path.display().to_string(),
    };
    if !path.is_absolute() {
        return Err(refused());
    }
    // The nearest existing ancestor, canonical; the rest must be plain names.
    let mut existing = path.to_path_buf();
    let mut rest: Vec<std::ffi::OsString> = Vec::new();
    let base = loop {
        match std::fs::symlink_metadata(&existing) {
            Ok(_) => break std::fs::canonicalize(&existing).map_err(|_| refused())?,
            Err(_) => {
                let Some(name) = existing.file_name() else {
                    return Err(refused());
                };
                rest.push(name.to_owned());
                if !existing.pop() {
                    return Err(refused());
                }
            }
        }
    };
    if path
        .components()
        .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
    {
        return Err(refused());
    }
    if !base.is_dir() {
        return Err(refused());
    }
    let mut out = base;
    for name in rest.iter().rev() {
        out.push(name);
    }
    let inside = canonical_dirs(export_dirs)
        .iter()
        .any(|dir| out.starts_with(dir));
    if inside { Ok(out) } else { Err(refused()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_must_be_files_inside_the_import_dirs() {
        let root = tempfile::tempdir().expect("dir");
        let imports = root.path().join("imports");
        let outside = root.path().join("secret.txt");
        std::fs::create_dir(&imports).expect("mkdir");
        std::fs::write(imports.join("ok.csv"), "x").expect("write");
        std::fs::write(&outside, "password").expect("write");
        let dirs = vec![imports.clone()];
        assert!(import_path(&dirs, &imports.join("ok.csv")).is_ok());
        #[cfg(unix)]
        std::os::unix::fs::symlink(&outside, imports.join("link.csv")).expect("symlink");
        let exists_outside = import_path(&dirs, &outside).expect_err("outside");
        let missing_outside =
            import_path(&dirs, &root.path().join("nothing.txt")).expect_err("missing");
        // Same words either way, the path as given aside.
        assert_eq!(
            exists_outside
                .to_string()
                .replace(&outside.display().to_string(), "P"),
            missing_outside
                .to_string()
                .replace(&root.path().join("nothing.txt").display().to_string(), "P")
        );
        #[cfg(unix)]
        assert!(
            import_path(&dirs, &imports.join("link.csv")).is_err(),
            "symlink escape"
        );
        assert!(import_path(&dirs, &imports.join("../secret.txt")).is_err());
        assert!(import_path(&dirs, &imports).is_err(), "a directory");
        assert!(matches!(
            import_path(&[], &imports.join("ok.csv")),
            Err(PathRefused::NoneConfigured { .. })
        ));
    }

    #[test]
    fn exports_must_land_inside_the_export_dirs() {
        let root = tempfile::tempdir().expect("dir");
        let exports = root.path().join("exports");
        std::fs::create_dir(&exports).expect("mkdir");
        let dirs = vec![exports.clone()];
        let canonical = std::fs::canonicalize(&exports).expect("canonical");
        assert_eq!(
            export_path(&dirs, &exports.join("a/b")).expect("new"),
            canonical.join("a/b")
        );
        assert_eq!(export_path(&dirs, &exports).expect("itself"), canonical);
        assert!(export_path(&dirs, &root.path().join("elsewhere")).is_err());
        assert!(export_path(&dirs, &exports.join("../elsewhere")).is_err());
        assert!(export_path(&dirs, Path::new("relative")).is_err());
        std::fs::write(exports.join("file"), "x").expect("write");
        assert!(export_path(&dirs, &exports.join("file")).is_err(), "a file");
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(root.path(), exports.join("up")).expect("symlink");
            assert!(
                export_path(&dirs, &exports.join("up/x")).is_err(),
                "symlink escape"
            );
        }
    }
}
