//! The directories this plugin was granted, and lexical path normalization.

use std::path::{Component, Path, PathBuf};

use wasip2::filesystem::types::DescriptorFlags;

/// One directory the host granted to this plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Absolute path of the directory (the same path as on the host).
    pub path: PathBuf,
    /// Whether files below it may be created, changed or removed.
    pub writable: bool,
}

/// The directories granted to this plugin, as the sandbox exposes them.
pub fn grants() -> Vec<Grant> {
    wasip2::filesystem::preopens::get_directories()
        .into_iter()
        .map(|(descriptor, path)| {
            let writable = descriptor.get_flags().map(|f| f.contains(DescriptorFlags::MUTATE_DIRECTORY)).unwrap_or(false);
            Grant { path: normalize(Path::new(&path)), writable }
        })
        .collect()
}

/// Normalizes a path lexically: removes `.` and resolves `..` against the preceding
/// component, without touching the filesystem. `..` above the root stays at the root.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Prefix(p) => out.push(p.as_os_str()),
            Component::RootDir => out.push("/"),
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(c) => out.push(c),
        }
    }
    if out.as_os_str().is_empty() { PathBuf::from(".") } else { out }
}

/// True when the first 8 KiB of `bytes` look like binary data (a NUL byte, or mostly
/// non-text bytes), as `read` and `grep` use it.
pub fn looks_binary(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(8192)];
    if head.contains(&0) {
        return true;
    }
    if head.is_empty() {
        return false;
    }
    let odd = head.iter().filter(|&&b| b < 0x09 || (b > 0x0d && b < 0x20)).count();
    odd * 10 > head.len() * 3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_resolves_parent_and_current() {
        assert_eq!(normalize(Path::new("/w/a/../b/./c")), PathBuf::from("/w/b/c"));
        assert_eq!(normalize(Path::new("/w/../../..")), PathBuf::from("/"));
        assert_eq!(normalize(Path::new("/w/main/../outside")), PathBuf::from("/w/outside"));
    }

    #[test]
    fn binary_detection() {
        assert!(looks_binary(b"abc\0def"));
        assert!(!looks_binary("héllo\nworld\t!".as_bytes()));
        assert!(looks_binary(&[1, 2, 3, 4, 5, 6, 7, 8]));
    }
}
