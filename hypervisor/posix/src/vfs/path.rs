//! Path syntax: splitting a path into components, with Linux's limits.
//!
//! Owns: the lexical side of paths. Must not touch: the tree — `.` and `..`
//! are kept here and resolved against the tree by the caller, so that a path
//! through a file is ENOTDIR as on Linux.

use alloc::vec::Vec;

use crate::Errno;

/// Longest path, including the terminating NUL (Linux `PATH_MAX`).
pub const PATH_MAX: usize = 4096;
/// Longest file name (Linux `NAME_MAX`).
pub const NAME_MAX: usize = 255;

/// A path split into components.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path<'a> {
    /// Starts at the root (`/...`), else at a directory (cwd or a dirfd).
    pub absolute: bool,
    /// Non-empty components, `.` and `..` included.
    pub components: Vec<&'a str>,
    /// Ends with `/`: the last component must be a directory.
    pub trailing_slash: bool,
}

impl<'a> Path<'a> {
    /// Splits `path`. ENOENT for the empty path, ENAMETOOLONG for a path or
    /// component beyond Linux's limits, EINVAL for a NUL byte inside.
    pub fn parse(path: &'a str) -> Result<Path<'a>, Errno> {
        if path.is_empty() {
            return Err(Errno::ENOENT);
        }
        if path.len() >= PATH_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        if path.as_bytes().contains(&0) {
            return Err(Errno::EINVAL);
        }
        let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        if components.iter().any(|c| c.len() > NAME_MAX) {
            return Err(Errno::ENAMETOOLONG);
        }
        Ok(Path {
            absolute: path.starts_with('/'),
            trailing_slash: path.len() > 1 && path.ends_with('/'),
            components,
        })
    }

    /// The last component, if it names an entry (not `.` or `..`).
    pub fn last_name(&self) -> Option<&'a str> {
        self.components
            .last()
            .copied()
            .filter(|c| *c != "." && *c != "..")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;
    use alloc::vec;

    #[test]
    fn splits_components() {
        let p = Path::parse("/a//b/./c/").unwrap();
        assert!(p.absolute);
        assert!(p.trailing_slash);
        assert_eq!(p.components, vec!["a", "b", ".", "c"]);
        assert_eq!(p.last_name(), Some("c"));
        let p = Path::parse("x/..").unwrap();
        assert!(!p.absolute);
        assert_eq!(p.last_name(), None);
        let root = Path::parse("/").unwrap();
        assert!(root.components.is_empty());
        assert!(!root.trailing_slash);
    }

    #[test]
    fn limits() {
        assert_eq!(Path::parse(""), Err(Errno::ENOENT));
        let long_name: String = "n".repeat(NAME_MAX + 1);
        assert_eq!(Path::parse(&long_name), Err(Errno::ENAMETOOLONG));
        assert!(Path::parse(&"n".repeat(NAME_MAX)).is_ok());
        let long_path: String = "/ab".repeat(PATH_MAX / 3 + 1);
        assert_eq!(Path::parse(&long_path), Err(Errno::ENAMETOOLONG));
        assert_eq!(Path::parse("a\0b"), Err(Errno::EINVAL));
    }
}
