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
