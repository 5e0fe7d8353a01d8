//! The layering rule of ARCHITECTURE.md: `src/core` and `src/gui` never mention tch.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::Path;

fn scan(dir: &Path, offenders: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            scan(&path, offenders);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            for (i, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                if code.contains("tch::") || code.contains("use tch") || code.contains("torch_sys")
                {
                    offenders.push(format!("{}:{}: {}", path.display(), i + 1, line.trim()));
                }
            }
        }
    }
}

#[test]
fn core_and_gui_do_not_use_tch() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut offenders = Vec::new();
    scan(&root.join("core"), &mut offenders);
    scan(&root.join("gui"), &mut offenders);
    assert!(
        offenders.is_empty(),
        "tch used outside the engine:\n{}",
        offenders.join("\n")
    );
    // The scan must actually see the core sources.
    assert!(root.join("core/preset/mod.rs").is_file());
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `wgan_gp` -> `WganGp`.
fn camel(snake: &str) -> String {
    snake
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect::<String>())
                .unwrap_or_default()
        })
        .collect()
}

/// A family is one front door (ARCHITECTURE.md): its preset `src/core/preset/<family>.rs`,
/// its trainer `src/engine/families/<family>/`, and one variant in the enums of
/// `src/core/preset/mod.rs` and one arm in `src/engine/families/mod.rs`. No other source file
/// names it in code (`WganGp`, `wgan_gp::`), so a new family edits nothing else. Benchmarks
/// (`src/bench/`) measure named families' shipped presets and are the one exception.
#[test]
fn only_a_familys_front_door_names_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    assert!(files.len() > 40, "the scan sees the sources");
    let mut outside = Vec::new();
    for family in workbench::core::preset::Family::ALL {
        let name = family.name();
        let tokens = [camel(name), format!("{name}::")];
        let allowed = |rel: &str| {
            rel == "src/core/preset/mod.rs"
                || rel == format!("src/core/preset/{name}.rs")
                || rel == "src/engine/families/mod.rs"
                || rel.starts_with(&format!("src/engine/families/{name}/"))
                || rel.starts_with("src/bench/")
        };
        let mut naming = Vec::new();
        for path in &files {
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            let text = std::fs::read_to_string(path).unwrap();
            let hit = text.lines().any(|l| {
                let code = l.split("//").next().unwrap_or("");
                tokens.iter().any(|t| code.contains(t.as_str()))
            });
            if hit {
                naming.push(rel.clone());
                if !allowed(&rel) {
                    outside.push(format!("{name}: {rel}"));
                }
            }
        }
        // The front door itself is where the scan finds the family.
        assert!(
            naming.contains(&format!("src/core/preset/{name}.rs")),
            "{name}: {naming:?}"
        );
    }
    assert!(
        outside.is_empty(),
        "files outside a family's front door name it:\n{}",
        outside.join("\n")
    );
}
