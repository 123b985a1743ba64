//! The system prompt an activity sends: the agent's base prompt (Plugboard's default for a
//! coding agent, or the profile's `base_prompt`), the profile's additions, a short account of
//! the environment (workspace, platform, date), and the project's instructions.
//!
//! Project instructions are `AGENTS.md` files, as OpenCode, Codex and Claude Code read them:
//! the user's own (`<config dir>/plugboard/AGENTS.md`), then one per directory from the
//! repository root (the nearest directory above the workspace holding `.git`) down to the
//! workspace, outermost first, so the nearest has the last word. A directory without
//! `AGENTS.md` offers its `CLAUDE.md` instead. Without a repository, only the workspace's
//! own file is read. The files are the repository's text, so they are read as the tools
//! would be: only regular files (a symbolic link could name a file outside any grant, such
//! as a key), each at most [`MAX_FILE_BYTES`]. They are read at the start of each activity,
//! so an edit applies from the next prompt on. Hooks see and may change the result
//! (`chat.params`).

use std::path::{Path, PathBuf};

/// The default base prompt of every agent.
pub const DEFAULT_BASE_PROMPT: &str = "\
You are Plugboard, a coding agent working in the user's workspace. You help with software \
tasks: reading and changing code, running commands, and explaining what you find.

How to work:
- Use the tools to look before you answer: read files, list and search the workspace rather \
than guessing their contents. Paths are relative to the workspace.
- Change files with the `edit` and `write` tools, in small and precise steps, and keep the \
project's own style. Run the project's tests or build (`shell`) when you changed code and \
are allowed to.
- Calls that do not depend on each other can go out together in one turn.
- Every tool runs in a sandbox with only what the operator granted. A call outside the \
grants fails and says what was denied; do not try to work around a denial, tell the user \
what would need granting instead. Some calls ask the user first; a rejected call is the \
user's decision.
- Keep answers short and concrete: say what you did and what you found, with file paths.";

/// The largest instructions file read; the rest is left out, and the prompt says so.
pub const MAX_FILE_BYTES: u64 = 64 * 1024;

/// What the system prompt is built from.
pub struct PromptSources<'a> {
    /// The agent's base prompt and additions, as resolved from its profile.
    pub agent_prompt: &'a str,
    /// The session's workspace.
    pub workspace: &'a Path,
    /// The user's own instructions file, when the platform has a configuration directory.
    pub user_file: Option<PathBuf>,
    /// Today, as `YYYY-MM-DD`.
    pub date: String,
}

/// The user's instructions file: `<config dir>/plugboard/AGENTS.md`.
pub fn user_instructions_file() -> Option<PathBuf> {
    crate::trust::default_config_dir().map(|dir| dir.join("AGENTS.md"))
}

/// Today in UTC, as `YYYY-MM-DD`.
pub fn today() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()[..10].to_string()
}

/// The whole system prompt. Blocking file reads: call it off the async workers.
pub fn system_prompt(sources: &PromptSources) -> String {
    let mut prompt = sources.agent_prompt.to_string();
    let repository = repository_root(sources.workspace);
    prompt.push_str(&format!(
        "\n\n<environment>\nworkspace: {}\nrepository: {}\nplatform: {} ({})\ndate: {}\n</environment>",
        sources.workspace.display(),
        if repository.is_some() { "git" } else { "none" },
        std::env::consts::OS,
        std::env::consts::ARCH,
        sources.date
    ));
    let files = instruction_files(sources.workspace, repository.as_deref(), sources.user_file.as_deref());
    let read: Vec<(PathBuf, String)> = files.into_iter().filter_map(|path| read_instructions(&path).map(|text| (path, text))).collect();
    if !read.is_empty() {
        prompt.push_str(
            "\n\nInstructions from the user and the project follow; the later ones are nearer the workspace and take precedence.",
        );
        for (path, text) in read {
            prompt.push_str(&format!("\n\n<instructions source=\"{}\">\n{}\n</instructions>", path.display(), text.trim_end()));
        }
    }
    prompt
}

/// The nearest directory at or above `workspace` that holds `.git`.
fn repository_root(workspace: &Path) -> Option<PathBuf> {
    workspace.ancestors().find(|dir| dir.join(".git").exists()).map(Path::to_path_buf)
}

/// The instruction files to read, in order: the user's, then one per directory from the
/// repository root down to the workspace (`AGENTS.md`, else `CLAUDE.md`).
fn instruction_files(workspace: &Path, repository: Option<&Path>, user_file: Option<&Path>) -> Vec<PathBuf> {
    let mut dirs: Vec<&Path> = match repository {
        Some(root) => workspace.ancestors().take_while(|dir| dir.starts_with(root)).collect(),
        None => vec![workspace],
    };
    dirs.reverse();
    let project = dirs.into_iter().filter_map(|dir| {
        ["AGENTS.md", "CLAUDE.md"].iter().map(|name| dir.join(name)).find(|path| path.symlink_metadata().is_ok_and(|m| m.is_file()))
    });
    user_file.map(Path::to_path_buf).into_iter().chain(project).collect()
}

/// A file's text when it is a regular file (not a link), at most [`MAX_FILE_BYTES`] of it;
/// `None` when it is absent, empty or not a regular file.
fn read_instructions(path: &Path) -> Option<String> {
    use std::io::Read;
    // `O_NOFOLLOW` refuses a link, and the check after the open refuses anything but a file.
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NOFOLLOW | libc::O_NONBLOCK);
    let file = options.open(path).ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes).ok()?;
    let cut = bytes.len() as u64 > MAX_FILE_BYTES;
    bytes.truncate(MAX_FILE_BYTES as usize);
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    if text.trim().is_empty() {
        return None;
    }
    if cut {
        text.push_str(&format!("\n[the rest of this file is left out: it is longer than {} KiB]", MAX_FILE_BYTES / 1024));
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Dir {
            let dir = std::env::temp_dir().join(format!("plugboard-instructions-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Dir(dir)
        }

        fn write(&self, path: &str, text: &str) -> PathBuf {
            let path = self.0.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, text).unwrap();
            path
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn prompt(workspace: &Path, user_file: Option<PathBuf>) -> String {
        system_prompt(&PromptSources { agent_prompt: "BASE", workspace, user_file, date: "2026-12-04".into() })
    }

    #[test]
    fn instructions_come_from_the_user_then_the_repository_root_down_to_the_workspace() {
        let dir = Dir::new("order");
        std::fs::create_dir_all(dir.0.join("repo/.git")).unwrap();
        dir.write("AGENTS.md", "OUTSIDE THE REPOSITORY");
        dir.write("repo/AGENTS.md", "ROOT RULES");
        dir.write("repo/crates/CLAUDE.md", "CLAUDE FALLBACK");
        dir.write("repo/crates/app/AGENTS.md", "APP RULES");
        dir.write("repo/crates/app/CLAUDE.md", "NOT READ: AGENTS.md is there");
        let user = dir.write("user/AGENTS.md", "USER RULES");
        let text = prompt(&dir.0.join("repo/crates/app"), Some(user));
        let at = |needle: &str| text.find(needle).unwrap_or_else(|| panic!("no {needle:?} in {text}"));
        assert!(at("BASE") < at("USER RULES") && at("USER RULES") < at("ROOT RULES"));
        assert!(at("ROOT RULES") < at("CLAUDE FALLBACK") && at("CLAUDE FALLBACK") < at("APP RULES"));
        assert!(!text.contains("OUTSIDE THE REPOSITORY") && !text.contains("NOT READ"), "{text}");
        assert!(text.contains("repository: git") && text.contains("date: 2026-12-04"), "{text}");
    }

    #[test]
    fn without_a_repository_only_the_workspaces_own_file_is_read() {
        let dir = Dir::new("norepo");
        dir.write("AGENTS.md", "PARENT");
        dir.write("ws/AGENTS.md", "OWN");
        let text = prompt(&dir.0.join("ws"), None);
        assert!(text.contains("OWN") && !text.contains("PARENT"), "{text}");
        dir.write("empty/.keep", "");
        let bare = prompt(&dir.0.join("empty"), None);
        assert!(!bare.contains("<instructions") && !bare.contains("PARENT"), "no file, no instructions: {bare}");
    }

    #[test]
    fn a_linked_instructions_file_is_not_followed_and_a_long_one_is_cut() {
        let dir = Dir::new("link");
        let secret = dir.write("secret.key", "PRIVATE KEY");
        dir.write("ws/.keep", "");
        std::os::unix::fs::symlink(&secret, dir.0.join("ws/AGENTS.md")).unwrap();
        assert!(!prompt(&dir.0.join("ws"), None).contains("PRIVATE KEY"), "a link is not read");
        dir.write("long/AGENTS.md", &"x".repeat(MAX_FILE_BYTES as usize + 10));
        let text = prompt(&dir.0.join("long"), None);
        assert!(text.contains("the rest of this file is left out") && !text.contains(&"x".repeat(MAX_FILE_BYTES as usize + 1)));
    }
}
