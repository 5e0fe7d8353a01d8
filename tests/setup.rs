//! The project's own commands: the README's two commands are what CI runs, and the test build
//! and the app's build resolve the same features, so one build serves both commands.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_readme_commands_are_what_ci_runs() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let block = readme
        .split("## The first five minutes")
        .nth(1)
        .and_then(|s| s.split("```bash").nth(1))
        .and_then(|s| s.split("```").next())
        .expect("a bash block under `## The first five minutes`");
    let commands: Vec<&str> = block
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(commands, ["scripts/run.sh", "scripts/test.sh"], "{block}");
    let ci = std::fs::read_to_string(root().join(".ci/run")).unwrap();
    let runs: Vec<&str> = ci
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && l.contains("scripts/"))
        .collect();
    assert_eq!(runs, ["exec bash scripts/test.sh"], "{ci}");
}

/// `(package version, features)` of each node of the dependency graph, with or without
/// dev-dependencies (a package built for the host and for the target may appear twice).
fn features(with_dev: bool) -> BTreeSet<(String, String)> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let edges = if with_dev {
        "normal,build,dev"
    } else {
        "normal,build"
    };
    let out = Command::new(cargo)
        .current_dir(root())
        .args([
            "tree",
            "--offline",
            "--locked",
            "--prefix",
            "none",
            "-e",
            edges,
        ])
        .args(["-f", "{p}|{f}", "--target", "x86_64-unknown-linux-gnu"])
        .output()
        .expect("cargo tree");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (p, f) = l.trim_end_matches(" (*)").split_once('|')?;
            Some((p.to_string(), f.to_string()))
        })
        .collect()
}

/// Every package the app's build uses has the same features in the test build. When a
/// dev-dependency enables more of a shared package, the two builds compile it twice, and the
/// second README command rebuilds the GUI stack after the first (about five minutes here).
#[test]
fn the_test_build_and_the_app_build_resolve_the_same_features() {
    let app = features(false);
    let tests = features(true);
    let differ: Vec<String> = app
        .difference(&tests)
        .map(|(p, f)| {
            let t: Vec<&str> = tests
                .iter()
                .filter(|(q, _)| q == p)
                .map(|(_, g)| g.as_str())
                .collect();
            format!("{p}: app [{f}], tests {t:?}")
        })
        .collect();
    assert!(
        differ.is_empty(),
        "enable these features in [dependencies] too:\n{}",
        differ.join("\n")
    );
}

/// The launcher entry passes `desktop-file-validate` (where it is installed), and the icon
/// exists at the sizes a desktop asks for, each of its own size.
#[test]
fn the_launcher_entry_is_valid_and_the_icon_has_every_size() {
    let entry = root().join("assets/workbench.desktop");
    let text = std::fs::read_to_string(&entry).unwrap();
    assert!(text.contains("Icon=workbench") && text.contains("Exec=workbench"));
    if let Ok(out) = Command::new("desktop-file-validate").arg(&entry).output() {
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for size in [16u32, 24, 32, 48, 64, 128, 256, 512] {
        let png = root().join(format!("assets/icons/workbench-{size}.png"));
        let bytes = std::fs::read(&png).unwrap();
        // PNG header, then IHDR's width and height.
        assert_eq!(&bytes[1..4], b"PNG", "{}", png.display());
        let w = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
        let h = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
        assert_eq!((w, h), (size, size), "{}", png.display());
    }
    assert!(
        root().join("assets/icon.svg").is_file(),
        "the icon's source"
    );
}
