//! What the host knows of its first-party plugins, in one place: each one's default grant
//! (used when the configuration has no table for it), and for the tools, what they do
//! (which the built-in agents' rules follow), which arguments the permission rules match
//! on, and whether their completed calls change the file named by their `path`.
//! Nothing here grants anything by itself: the configuration and the rules do.

use crate::capability::filesystem::Access;

/// What a first-party tool does, as the built-in agents see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Reads the workspace.
    Reads,
    /// Changes files in the workspace.
    Writes,
    /// Runs commands.
    Runs,
    /// Reaches the network.
    Fetches,
}

/// The grant a first-party plugin has when the configuration has no table for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultGrant {
    /// The workspace, with this access (and nothing else: no commands, no hosts).
    Workspace(Access),
    /// Nothing.
    Nothing,
    /// A provider: its API host, with the key from this environment variable.
    Provider {
        /// The API's origin, e.g. `https://api.openai.com`.
        host: &'static str,
        /// The variable that holds the key, e.g. `OPENAI_API_KEY`.
        api_key_env: &'static str,
    },
}

/// A first-party plugin.
#[derive(Debug, Clone, Copy)]
pub struct FirstParty {
    /// Its id, which is also the name of its tool for the tool plugins.
    pub id: &'static str,
    /// Its default grant; `None` for plugins that get nothing unless the operator grants
    /// it (the hook plugins).
    pub default_grant: Option<DefaultGrant>,
    /// What its tool does (tool plugins).
    pub effect: Option<Effect>,
    /// The arguments permission rules match on, the first present one winning.
    pub main_arguments: &'static [&'static str],
}

/// Where the rules look for the main argument of a tool that is not first-party.
pub const DEFAULT_MAIN_ARGUMENTS: &[&str] = &["path", "file_path", "url", "command"];

const fn tool(id: &'static str, grant: DefaultGrant, effect: Effect, main_arguments: &'static [&'static str]) -> FirstParty {
    FirstParty { id, default_grant: Some(grant), effect: Some(effect), main_arguments }
}

const READ_ONLY: DefaultGrant = DefaultGrant::Workspace(Access::ReadOnly);
const READ_WRITE: DefaultGrant = DefaultGrant::Workspace(Access::ReadWrite);

/// Every first-party plugin.
pub const PLUGINS: &[FirstParty] = &[
    tool("read", READ_ONLY, Effect::Reads, DEFAULT_MAIN_ARGUMENTS),
    tool("list", READ_ONLY, Effect::Reads, DEFAULT_MAIN_ARGUMENTS),
    tool("glob", READ_ONLY, Effect::Reads, &["path", "pattern"]),
    tool("grep", READ_ONLY, Effect::Reads, &["path", "pattern"]),
    tool("write", READ_WRITE, Effect::Writes, DEFAULT_MAIN_ARGUMENTS),
    tool("edit", READ_WRITE, Effect::Writes, DEFAULT_MAIN_ARGUMENTS),
    tool("shell", READ_WRITE, Effect::Runs, &["command"]),
    tool("fetch", DefaultGrant::Nothing, Effect::Fetches, &["url"]),
    FirstParty {
        id: "openai",
        default_grant: Some(DefaultGrant::Provider { host: "https://api.openai.com", api_key_env: "OPENAI_API_KEY" }),
        effect: None,
        main_arguments: &[],
    },
    FirstParty {
        id: "anthropic",
        default_grant: Some(DefaultGrant::Provider { host: "https://api.anthropic.com", api_key_env: "ANTHROPIC_API_KEY" }),
        effect: None,
        main_arguments: &[],
    },
    FirstParty { id: "audit-log", default_grant: None, effect: None, main_arguments: &[] },
    FirstParty { id: "redact-secrets", default_grant: None, effect: None, main_arguments: &[] },
];

/// The first-party plugin `id`.
pub fn plugin(id: &str) -> Option<&'static FirstParty> {
    PLUGINS.iter().find(|p| p.id == id)
}

/// The first-party tools with `effect`.
pub fn tools_that(effect: Effect) -> impl Iterator<Item = &'static str> {
    PLUGINS.iter().filter(move |p| p.effect == Some(effect)).map(|p| p.id)
}

/// The arguments rules match on for tool `name`.
pub fn main_arguments(name: &str) -> &'static [&'static str] {
    plugin(name).filter(|p| p.effect.is_some()).map_or(DEFAULT_MAIN_ARGUMENTS, |p| p.main_arguments)
}

/// Whether a completed call of tool `name` changed the file its `path` names.
pub fn writes_files(name: &str) -> bool {
    plugin(name).is_some_and(|p| p.effect == Some(Effect::Writes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bundled_plugin_is_described_once() {
        let mut ids: Vec<&str> = PLUGINS.iter().map(|p| p.id).collect();
        ids.sort();
        let before = ids.len();
        ids.dedup();
        assert_eq!(ids.len(), before, "an id is listed twice");
        let bundled: Vec<&str> = plugboard_bundled_plugins::PLUGINS.iter().map(|p| p.name).collect();
        for id in &bundled {
            assert!(plugin(id).is_some(), "the bundled plugin `{id}` is not described in first_party.rs");
        }
        for p in PLUGINS {
            assert!(bundled.contains(&p.id), "`{}` is described but not bundled", p.id);
        }
    }

    #[test]
    fn only_write_and_edit_change_files_and_rules_match_each_tools_own_argument() {
        let writers: Vec<&str> = tools_that(Effect::Writes).collect();
        assert_eq!(writers, ["write", "edit"]);
        assert!(writes_files("edit") && !writes_files("shell") && !writes_files("my-plugin-tool"));
        assert_eq!(main_arguments("shell"), ["command"]);
        assert_eq!(main_arguments("someone-elses"), DEFAULT_MAIN_ARGUMENTS);
        assert_eq!(main_arguments("openai"), DEFAULT_MAIN_ARGUMENTS, "a provider has no tool of its name");
    }
}
