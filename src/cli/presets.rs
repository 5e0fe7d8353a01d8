//! `workbench presets validate|show`.

use workbench::core::preset::{self, schema, Family};

use super::{bad_input, Failure, PresetsCmd};

pub(super) fn run(cmd: PresetsCmd) -> Result<(), Failure> {
    match cmd {
        PresetsCmd::Validate { files } => {
            let mut failed = 0;
            for f in &files {
                match preset::load_file(f) {
                    Ok((p, notes)) => {
                        out!(
                            "ok: {} ({}, {} phase(s))",
                            f.display(),
                            p.preset().family().name(),
                            p.preset().phases().len()
                        );
                        for n in notes {
                            out!("  migrated: {n}");
                        }
                    }
                    Err(e) => {
                        failed += 1;
                        eprintln!("{e}");
                    }
                }
            }
            if failed > 0 {
                return Err(bad_input(anyhow::anyhow!(
                    "{failed} of {} preset(s) invalid",
                    files.len()
                )));
            }
            Ok(())
        }
        PresetsCmd::Show { family } => {
            let family = Family::parse(&family).map_err(|e| bad_input(anyhow::anyhow!(e)))?;
            let tree = family.default_preset().to_tree();
            out!(
                "{:<34} {:<18} {:<44} {:<10} doc",
                "field",
                "default",
                "allowed",
                "changes at"
            );
            for spec in family.specs() {
                let default = schema::get_path(&tree, spec.path)
                    .map(schema::show_value)
                    .unwrap_or_default();
                let mut flags = Vec::new();
                if spec.phase {
                    flags.push("phase");
                }
                if spec.live {
                    flags.push("live");
                }
                let unit = if spec.unit.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", spec.unit)
                };
                let flags = if flags.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", flags.join(", "))
                };
                out!(
                    "{:<34} {:<18} {:<44} {:<10} {}{unit}{flags}",
                    spec.path,
                    default,
                    spec.kind.allowed(),
                    spec.takes_effect().words(),
                    spec.doc
                );
            }
            out!("{:<34} {:<18} {:<44} Ordered phases: name, length steps(N)|epochs(N)|minutes(X), overrides {{\"field\": value}}, start_from_best", "phases", "[main: epochs(1000)]", "at least one phase");
            Ok(())
        }
    }
}
