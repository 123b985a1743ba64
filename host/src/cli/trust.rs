//! `plugboard trust`: shows what a workspace's own files would grant, and records the
//! operator's trust in them (see [`crate::trust`]).

use std::process::ExitCode;

use crate::config::{CONFIG_FILE_NAME, Config, ConfigOrigin};
use crate::trust::{TrustRecord, WorkspaceTrust};

/// What `plugboard trust` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrustAction {
    /// Show what would be trusted and what changed since, without recording (exit 1 when
    /// something is not trusted).
    Check,
    /// Trust the files as they are now.
    Trust,
    /// Forget the workspace.
    Revoke,
}

/// Runs `plugboard trust`.
pub fn run(trust: &WorkspaceTrust, action: TrustAction, json: bool) -> anyhow::Result<ExitCode> {
    let workspace = trust.workspace().display().to_string();
    if action == TrustAction::Revoke {
        let removed = trust.revoke()?;
        if json {
            println!("{}", serde_json::json!({ "workspace": workspace, "revoked": removed }));
        } else if removed {
            println!("{workspace} is no longer trusted: its {CONFIG_FILE_NAME} and .plugboard/plugins/ are not applied.");
        } else {
            println!("{workspace} was not trusted.");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let current = trust.current()?;
    let trusted = trust.record();
    let changes = differences(&trusted, &current);
    // A file that would be refused anyway is not worth trusting: say why now.
    let config_text = std::fs::read_to_string(trust.workspace().join(CONFIG_FILE_NAME)).ok();
    // What is shown is what gets trusted: the text reviewed must be the one hashed.
    if config_text.as_deref().map(|t| crate::trust::sha256(t.as_bytes())) != current.config {
        anyhow::bail!("{workspace}/{CONFIG_FILE_NAME} changed while it was being read; run `plugboard trust` again");
    }
    let config = match &config_text {
        Some(text) => {
            Some(Config::parse_from(text, ConfigOrigin::Workspace).map_err(|e| anyhow::anyhow!("{workspace}/{CONFIG_FILE_NAME}: {e}"))?)
        }
        None => None,
    };
    let up_to_date = changes.is_empty();
    if json {
        println!(
            "{}",
            serde_json::json!({
                "workspace": workspace,
                "trusted": up_to_date || action == TrustAction::Trust,
                "changes": changes,
                "files": current,
                "trust_file": trust.file(),
            })
        );
    } else {
        print_review(&workspace, config.as_ref(), &current, &changes);
    }
    match action {
        TrustAction::Check if up_to_date => Ok(ExitCode::SUCCESS),
        TrustAction::Check => {
            if !json {
                println!("Not trusted. To apply these files, run: {}", trust.review_command());
            }
            Ok(ExitCode::FAILURE)
        }
        TrustAction::Trust => {
            trust.trust(&current)?;
            if !json {
                println!("Trusted. A running `plugboard serve` applies them now; a later change needs `plugboard trust` again.");
            }
            Ok(ExitCode::SUCCESS)
        }
        TrustAction::Revoke => unreachable!("handled above"),
    }
}

/// What differs between the trusted record and the files now, one line each.
fn differences(trusted: &TrustRecord, current: &TrustRecord) -> Vec<String> {
    let mut out = Vec::new();
    match (&trusted.config, &current.config) {
        (Some(a), Some(b)) if a != b => out.push(format!("{CONFIG_FILE_NAME} changed")),
        (None, Some(_)) => out.push(format!("{CONFIG_FILE_NAME} is new")),
        (Some(_), None) => out.push(format!("{CONFIG_FILE_NAME} was removed")),
        _ => {}
    }
    for (name, hash) in &current.plugins {
        match trusted.plugins.get(name) {
            None => out.push(format!("plugin {name} is new")),
            Some(h) if h != hash => out.push(format!("plugin {name} changed")),
            Some(_) => {}
        }
    }
    out.extend(trusted.plugins.keys().filter(|n| !current.plugins.contains_key(*n)).map(|n| format!("plugin {n} was removed")));
    out
}

fn print_review(workspace: &str, config: Option<&Config>, current: &TrustRecord, changes: &[String]) {
    println!("Workspace {workspace}");
    if changes.is_empty() {
        println!("  nothing changed since it was last trusted");
    }
    for change in changes {
        println!("  {change}");
    }
    if let Some(config) = config {
        println!("{CONFIG_FILE_NAME} grants:");
        if config.plugins.is_empty() {
            println!("  (no [plugins.*] tables: first-party defaults only)");
        }
        for (id, grants) in &config.plugins {
            let mut parts = Vec::new();
            if !grants.filesystem.is_empty() {
                let dirs: Vec<String> = grants.filesystem.iter().map(|d| format!("{} ({})", d.path(), d.access())).collect();
                parts.push(format!("filesystem {}", dirs.join(", ")));
            }
            let process: Vec<String> = grants.process.iter().map(ToString::to_string).collect();
            for (label, list) in [("network", &grants.network), ("process", &process), ("env", &grants.env)] {
                if !list.is_empty() {
                    parts.push(format!("{label} {}", list.join(", ")));
                }
            }
            println!("  [plugins.{id}] {}", if parts.is_empty() { "nothing beyond limits and settings".into() } else { parts.join("; ") });
        }
        if config.sandbox.unconfined_commands == crate::capability::confinement::UnconfinedCommands::Allow {
            println!("  [sandbox] unconfined_commands = \"allow\": commands run without kernel confinement where it is missing");
        }
        if !config.agents.is_empty() {
            println!("  [agents] {}", config.agents.keys().cloned().collect::<Vec<_>>().join(", "));
        }
    }
    for (name, hash) in &current.plugins {
        println!("plugin .plugboard/plugins/{name} sha256 {hash}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_name_each_changed_new_and_removed_file() {
        let record = |config: Option<&str>, plugins: &[(&str, &str)]| TrustRecord {
            config: config.map(String::from),
            plugins: plugins.iter().map(|(n, h)| (n.to_string(), h.to_string())).collect(),
        };
        let trusted = record(Some("a"), &[("x.wasm", "1"), ("gone.wasm", "2")]);
        let now = record(Some("b"), &[("x.wasm", "1"), ("new.wasm", "3")]);
        assert_eq!(differences(&trusted, &now), ["plugboard.toml changed", "plugin new.wasm is new", "plugin gone.wasm was removed"]);
        assert!(differences(&now, &now).is_empty());
    }
}
