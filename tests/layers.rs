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

/// Where a file sits, relative to the package, with `/` separators.
fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap()
        .to_string_lossy()
        .replace('\\', "/")
}

/// The lines of `text` that are code: comments dropped, and the unit tests at the end of a
/// file (from its `#[cfg(test)]`), whose data may name families as any test's may.
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .take_while(|(_, l)| l.trim() != "#[cfg(test)]")
        .map(|(i, l)| (i + 1, l.split("//").next().unwrap_or("")))
}

/// A family is its line in the registry (`for_each_family!` in `src/core/preset/mod.rs`),
/// its preset `src/core/preset/<family>.rs` and its trainer `src/engine/families/<family>/`.
/// No other source file names it in code (`WganGp`, `wgan_gp::`, or `"wgan_gp"` in a string
/// literal, the way a dispatch by name would), so a new family edits no shared line but its
/// registry line. Benchmarks (`src/bench/`) measure named families' shipped presets and are
/// the one exception. Tests may name families (they test them), but none may dispatch on
/// them: a match with an arm for every family is what a new family would have to extend.
#[test]
fn only_a_familys_front_door_names_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    assert!(files.len() > 40, "the scan sees the sources");
    let mut tests = Vec::new();
    rust_files(&root.join("tests"), &mut tests);
    assert!(tests.len() > 15, "the scan sees the tests");
    let families = workbench::core::preset::Family::ALL;
    let tokens = |name: &str| [camel(name), format!("{name}::"), format!("\"{name}\"")];
    let registry = "src/core/preset/mod.rs";
    let mut outside = Vec::new();
    for family in families {
        let name = family.name();
        let allowed = |rel: &str| {
            rel == format!("src/core/preset/{name}.rs")
                || rel.starts_with(&format!("src/engine/families/{name}/"))
                || rel.starts_with("src/bench/")
        };
        let mut naming = Vec::new();
        for path in &files {
            let rel = relative(root, path);
            let text = std::fs::read_to_string(path).unwrap();
            for (line, code) in code_lines(&text) {
                if !tokens(name).iter().any(|t| code.contains(t.as_str())) {
                    continue;
                }
                naming.push(rel.clone());
                // The registry names each family on its one line of the list.
                let registry_line = rel == registry
                    && code.trim() == format!("{} {name} {}Preset,", camel(name), camel(name));
                if !allowed(&rel) && !registry_line {
                    outside.push(format!("{name}: {rel}:{line}: {}", code.trim()));
                }
            }
        }
        // The front door itself is where the scan finds the family.
        assert!(
            naming.contains(&format!("src/core/preset/{name}.rs")),
            "{name}: {naming:?}"
        );
        assert!(
            naming.contains(&registry.to_string()),
            "{name}: no registry line"
        );
    }
    for path in &tests {
        let rel = relative(root, path);
        let text = std::fs::read_to_string(path).unwrap();
        let arm = |variant: &str| {
            text.lines().any(|l| {
                l.split_once("=>")
                    .is_some_and(|(pattern, _)| pattern.contains(&format!("::{variant}")))
            })
        };
        if families.iter().all(|f| arm(&camel(f.name()))) {
            outside.push(format!("{rel}: a match with an arm for every family"));
        }
    }
    assert!(
        outside.is_empty(),
        "files outside a family's front door name it:\n{}",
        outside.join("\n")
    );
}

/// The GUI reaches the engine through the worker (runs) and the explorer (a checkpoint
/// steered by hand) alone.
#[test]
fn the_gui_reaches_the_engine_only_through_the_worker_and_the_explorer() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src/gui"), &mut files);
    assert!(files.len() > 20, "the scan sees the GUI");
    let mut offenders = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        for (line, code) in code_lines(&text) {
            let mut rest = code;
            while let Some(at) = rest.find("engine::") {
                let after = &rest[at + "engine::".len()..];
                if !(after.starts_with("worker") || after.starts_with("explore")) {
                    offenders.push(format!("{}:{line}: {}", relative(root, path), code.trim()));
                }
                rest = after;
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "the GUI reaches into the engine:\n{}",
        offenders.join("\n")
    );
}
