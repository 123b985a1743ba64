//! `plugboard plugin wit`: the WIT package, for authors whose toolchain is not the SDK
//! (`jco componentize`, `componentize-py`, `wit-bindgen` of any language). Every line of
//! releases the host serves is written as the folder it has in this repository's `wit/`;
//! the latest release of a line serves every earlier one of it (see `docs/wit.md`).

use std::path::{Path, PathBuf};

/// One line of compatible releases: its folder, the releases it serves, and its files,
/// embedded when the binary is built.
pub struct Line {
    /// The folder's name under `wit/`.
    pub folder: &'static str,
    /// The releases a component built against this folder's package may target.
    pub serves: &'static [&'static str],
    /// Each file's name and text.
    pub files: &'static [(&'static str, &'static str)],
}

/// Every line the host serves.
pub const LINES: &[Line] = &[Line {
    folder: "since_v0.1.0",
    serves: &["0.1.0", "0.1.1"],
    files: &[
        ("types.wit", include_str!("../../../wit/since_v0.1.0/types.wit")),
        ("tool.wit", include_str!("../../../wit/since_v0.1.0/tool.wit")),
        ("provider.wit", include_str!("../../../wit/since_v0.1.0/provider.wit")),
        ("hook.wit", include_str!("../../../wit/since_v0.1.0/hook.wit")),
    ],
}];

/// Writes every line under `dir` (`dir/<folder>/<file>`); the folders written.
pub fn write(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for line in LINES {
        let folder = dir.join(line.folder);
        std::fs::create_dir_all(&folder)?;
        for (name, text) in line.files {
            std::fs::write(folder.join(name), text)?;
        }
        written.push(folder);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_file_of_the_wit_folder_is_embedded() {
        let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit/since_v0.1.0");
        let mut on_disk: Vec<String> =
            std::fs::read_dir(folder).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        on_disk.sort();
        let mut embedded: Vec<String> = super::LINES[0].files.iter().map(|(name, _)| name.to_string()).collect();
        embedded.sort();
        assert_eq!(on_disk, embedded, "a WIT file added to the folder must be embedded too");
        assert!(
            super::LINES[0].files.iter().all(|(_, text)| text.starts_with(&format!("package {};", crate::runtime::bindings::WIT_PACKAGE)))
        );
    }
}
