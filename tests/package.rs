//! The Debian package (scripts/package.sh, docs/PACKAGING.md), built once
//! and unpacked with `dpkg -x`: the files are where Debian looks for them,
//! the config is a conffile, the man pages render, the unit passes
//! `systemd-analyze verify`, the completions parse and know the subcommands,
//! and lintian (Debian's package checker) has nothing to say.
//!
//! The package is made from the debug binary `cargo test` built
//! (APPSWITCH_DEB_PROFILE=debug, APPSWITCH_DEB_BIN) unless
//! APPSWITCH_DEB_PROFILE=release says otherwise; APPSWITCH_DEB=path/to.deb
//! checks that package without building.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The .deb and the tree it unpacks to, made once for all the tests here.
struct Unpacked {
    deb: PathBuf,
    root: PathBuf,
}

fn unpacked() -> &'static Unpacked {
    static U: OnceLock<Unpacked> = OnceLock::new();
    U.get_or_init(|| {
        let deb = match std::env::var_os("APPSWITCH_DEB").map(PathBuf::from) {
            Some(p) if p.is_file() => p,
            _ => build(),
        };
        let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("package-root");
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("create the unpack directory");
        ok(run(Command::new(require("dpkg"))
            .arg("-x")
            .arg(&deb)
            .arg(&root)));
        Unpacked { deb, root }
    })
}

/// scripts/package.sh; its last line of output is the .deb.
fn build() -> PathBuf {
    let profile = std::env::var("APPSWITCH_DEB_PROFILE").unwrap_or_else(|_| "debug".into());
    let mut cmd = Command::new(repo().join("scripts/package.sh"));
    cmd.env("APPSWITCH_DEB_PROFILE", &profile);
    // Its own directory: target/debian may hold the release package.
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("package-deb");
    cmd.env("APPSWITCH_DEB_OUT", &out);
    if profile == "debug" {
        // The binary under test: no cargo run inside the test run.
        cmd.env("APPSWITCH_DEB_BIN", appswitch());
    }
    // Not `run`: a release build may take longer than its time limit.
    let out = cmd.output().expect("run scripts/package.sh");
    let out = ok(out);
    let last = stdout(&out).lines().last().unwrap_or_default().to_string();
    let deb = repo().join(last);
    assert!(deb.is_file(), "package.sh made no .deb: {}", deb.display());
    deb
}

/// The output of a command that succeeded (panics with its stderr otherwise).
fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "{:?}\nstdout: {}\nstderr: {}",
        out.status,
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

const MAN_PAGES: [&str; 4] = [
    "appswitch",
    "appswitch-trace",
    "appswitch-daemon",
    "appswitch-backend",
];
const BASH: &str = "usr/share/bash-completion/completions/appswitch";
const ZSH: &str = "usr/share/zsh/vendor-completions/_appswitch";
const FISH: &str = "usr/share/fish/vendor_completions.d/appswitch.fish";
const UNIT: &str = "lib/systemd/system/appswitch.service";

#[test]
fn files_are_where_debian_looks_for_them() {
    let u = unpacked();
    let mut files = vec![
        "usr/bin/appswitch".to_string(),
        "etc/appswitch/appswitch.toml".into(),
        UNIT.into(),
        BASH.into(),
        ZSH.into(),
        FISH.into(),
        "usr/share/doc/appswitch/copyright".into(),
    ];
    files.extend(MAN_PAGES.map(|m| format!("usr/share/man/man1/{m}.1.gz")));
    let missing: Vec<&String> = files.iter().filter(|f| !u.root.join(f).is_file()).collect();
    assert!(missing.is_empty(), "missing from the package: {missing:?}");
    // The packaged config is the documented one, and the binary runs.
    assert_eq!(
        std::fs::read_to_string(u.root.join("etc/appswitch/appswitch.toml")).unwrap(),
        std::fs::read_to_string(repo().join("configs/appswitch.toml")).unwrap()
    );
    let v = ok(run(
        Command::new(u.root.join("usr/bin/appswitch")).arg("--version")
    ));
    assert_eq!(
        stdout(&v).trim(),
        format!("appswitch {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn control_names_the_conffile_dependencies_and_architecture() {
    let u = unpacked();
    let info = stdout(&ok(run(Command::new(require("dpkg-deb"))
        .arg("-I")
        .arg(&u.deb))));
    assert!(info.contains(" conffiles "), "{info}");
    let conffiles = stdout(&ok(run(Command::new(require("dpkg-deb"))
        .arg("-I")
        .arg(&u.deb)
        .arg("conffiles"))));
    assert_eq!(conffiles.trim(), "/etc/appswitch/appswitch.toml");
    let field = |name: &str| {
        stdout(&ok(run(Command::new(require("dpkg-deb"))
            .arg("-f")
            .arg(&u.deb)
            .arg(name))))
        .trim()
        .to_string()
    };
    let arch = stdout(&ok(run(
        Command::new(require("dpkg")).arg("--print-architecture")
    )));
    assert_eq!(field("Architecture"), arch.trim());
    assert_eq!(field("Version"), env!("CARGO_PKG_VERSION"));
    let depends = field("Depends");
    for dep in ["libc6", "libseccomp2", "fuse3"] {
        assert!(depends.contains(dep), "Depends: {depends}");
    }
    // Maintainer scripts are shell that parses.
    for script in ["postinst", "prerm", "postrm"] {
        let text = stdout(&ok(run(Command::new(require("dpkg-deb"))
            .arg("-I")
            .arg(&u.deb)
            .arg(script))));
        ok(run(Command::new("sh").arg("-n").arg("-c").arg(&text)));
        assert!(text.contains("/run/systemd/system"), "{script}: {text}");
    }
}

#[test]
fn lintian_finds_no_errors_or_warnings() {
    let u = unpacked();
    let out = run(Command::new(require("lintian"))
        .args(["--fail-on", "error,warning", "--tag-display-limit", "0"])
        .arg(&u.deb));
    assert!(
        out.status.success(),
        "lintian:\n{}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn man_pages_render() {
    let u = unpacked();
    for page in MAN_PAGES {
        let path = u.root.join(format!("usr/share/man/man1/{page}.1.gz"));
        let out = ok(run(Command::new(require("man"))
            .arg("-l")
            .arg(&path)
            .env("MANWIDTH", "80")));
        let text = stdout(&out);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.trim().is_empty(), "{page}: {err}");
        assert!(
            text.contains("NAME") && text.contains("SYNOPSIS"),
            "{page}: {text}"
        );
        // The NAME line names the command (man may hyphenate it).
        let first = text.lines().nth(3).unwrap_or_default();
        assert!(first.trim_start().starts_with(page), "{page}: {text}");
    }
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    let u = unpacked();
    // The unit as installed, with ExecStart naming the unpacked binary
    // (verify checks it is executable) and man finding the unpacked pages
    // (verify checks Documentation=man:...).
    let unit = std::fs::read_to_string(u.root.join(UNIT)).unwrap();
    assert!(
        unit.contains("ExecStart=/usr/bin/appswitch daemon"),
        "{unit}"
    );
    // Each of these gives the service a mount namespace of its own, and
    // /appswitch would then be mounted only there (docs/PACKAGING.md).
    for hidden in [
        "ProtectSystem=",
        "ProtectHome=",
        "PrivateTmp=",
        "PrivateDevices=",
        "PrivateMounts=",
        "ProtectKernelTunables=",
        "ProtectKernelModules=",
        "ProtectKernelLogs=",
        "ProtectControlGroups=",
        "ProtectHostname=",
        "ProtectProc=",
        "ReadWritePaths=",
        "ReadOnlyPaths=",
        "TemporaryFileSystem=",
        "InaccessiblePaths=",
        "MountFlags=",
    ] {
        let set = unit.lines().any(|l| l.trim_start().starts_with(hidden));
        assert!(
            !set,
            "{hidden} would hide the control filesystem from the host"
        );
    }
    let bin = u.root.join("usr/bin/appswitch");
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("appswitch.service");
    let local = unit.replace("/usr/bin/appswitch", &bin.to_string_lossy());
    std::fs::write(&copy, local).unwrap();
    let out = ok(run(Command::new(require("systemd-analyze"))
        .arg("verify")
        .arg(&copy)
        .env("MANPATH", u.root.join("usr/share/man"))));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.trim().is_empty(), "systemd-analyze verify: {err}");
}

#[test]
fn completions_parse_and_know_the_subcommands() {
    let u = unpacked();
    ok(run(Command::new(require("bash"))
        .arg("-n")
        .arg(u.root.join(BASH))));
    for f in [BASH, ZSH, FISH] {
        let text = std::fs::read_to_string(u.root.join(f)).unwrap();
        for word in ["trace", "daemon", "backend", "policy", "cluster"] {
            assert!(text.contains(word), "{f} lacks {word}");
        }
        assert!(
            !text.contains("generate-assets"),
            "{f} offers the hidden command"
        );
    }
}
