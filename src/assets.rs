//! Man pages and shell completions, generated from the CLI definition
//! (src/cli.rs) so they say what `--help` says. `appswitch generate-assets
//! --out DIR` writes them; scripts/package.sh puts them in the .deb.

use crate::cli::Cli;
use anyhow::Context;
use clap::CommandFactory;
use clap_complete::Shell;
use std::path::{Path, PathBuf};

/// The completion files written, by shell, under the names their shells
/// look for once installed (bash: appswitch, zsh: _appswitch, fish:
/// appswitch.fish; scripts/package.sh renames the bash one).
pub const COMPLETIONS: [(Shell, &str); 3] = [
    (Shell::Bash, "appswitch.bash"),
    (Shell::Zsh, "_appswitch"),
    (Shell::Fish, "appswitch.fish"),
];

/// Write `appswitch.1`, one `appswitch-SUB.1` per visible subcommand, and
/// the completions into `out` (created if missing). Returns the files written.
pub fn generate(out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut cmd = Cli::command().disable_help_subcommand(true);
    // Gives each subcommand its display name (appswitch-trace) and bin
    // name (appswitch trace) for the page's NAME and SYNOPSIS.
    cmd.build();
    let mut written = Vec::new();
    man_pages(&cmd, out, &mut written)?;
    let mut cmd = visible(&cmd);
    for (shell, name) in COMPLETIONS {
        let path = out.join(name);
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut cmd, "appswitch", &mut buf);
        write(&path, &buf)?;
        written.push(path);
    }
    Ok(written)
}

/// The page of `cmd`, then those of its visible subcommands.
fn man_pages(cmd: &clap::Command, out: &Path, written: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let man = clap_mangen::Man::new(cmd.clone());
    let path = out.join(man.get_filename());
    let mut buf = Vec::new();
    man.render(&mut buf)
        .with_context(|| format!("rendering {}", path.display()))?;
    write(&path, &buf)?;
    written.push(path);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        man_pages(sub, out, written)?;
    }
    Ok(())
}

/// `cmd` without its hidden subcommands: clap_complete would offer them.
fn visible(cmd: &clap::Command) -> clap::Command {
    let mut out = clap::Command::new("appswitch")
        .version(env!("CARGO_PKG_VERSION"))
        .propagate_version(true)
        .disable_help_subcommand(true);
    if let Some(about) = cmd.get_about() {
        out = out.about(about.clone());
    }
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        out = out.subcommand(sub.clone());
    }
    out
}

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_page_per_visible_command_and_three_completions() {
        let dir = tempfile::tempdir().unwrap();
        let files = generate(dir.path()).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        for want in [
            "appswitch.1",
            "appswitch-trace.1",
            "appswitch-daemon.1",
            "appswitch-backend.1",
            "appswitch-attach.1",
            "appswitch-detach.1",
            "appswitch.bash",
            "_appswitch",
            "appswitch.fish",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
        }
        // The hidden generator is neither documented nor completed.
        assert!(!names.iter().any(|n| n.contains("generate")), "{names:?}");
        for f in &files {
            let text = std::fs::read_to_string(f).unwrap();
            assert!(!text.contains("generate"), "{}", f.display());
        }
        let trace = std::fs::read_to_string(dir.path().join("appswitch-trace.1")).unwrap();
        assert!(trace.contains("appswitch\\-trace"), "{trace}");
        assert!(trace.contains("\\-\\-policy"), "{trace}");
        assert!(trace.contains("\\-\\-backend"), "{trace}");
    }
}
