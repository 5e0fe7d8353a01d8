//! `workbench runs list|export`.

use std::path::Path;

use workbench::core::rundir::{list_runs, RunDir};
use workbench::engine::export;

use super::{bad_input, Failure, RunsCmd};

pub(super) fn run(cmd: RunsCmd, default_dir: &Path) -> Result<(), Failure> {
    match cmd {
        RunsCmd::List { dir } => {
            let dir = dir.unwrap_or_else(|| default_dir.to_path_buf());
            let list = list_runs(&dir).map_err(bad_input)?;
            if list.is_empty() {
                out!("no runs in {}", dir.display());
            }
            for r in list {
                let name = r
                    .dir
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default();
                let lineage = workbench::core::branch::read(&r.dir).map_or(String::new(), |l| {
                    format!(
                        "  branch of {} at step {} ({})",
                        l.parent
                            .file_name()
                            .map_or(String::new(), |n| n.to_string_lossy().into_owned()),
                        l.fork_step,
                        l.describe_changes()
                    )
                });
                out!(
                    "{:<12} step {:>8}  {:<8} {:<40} {}{}{lineage}",
                    r.status.label(),
                    r.last_step,
                    r.family,
                    name,
                    r.device,
                    if r.message.is_empty() {
                        String::new()
                    } else {
                        format!("  ({})", r.message)
                    }
                );
            }
            Ok(())
        }
        RunsCmd::Export {
            run,
            csv,
            tensorboard,
        } => {
            let dir = RunDir::open(&run).map_err(bad_input)?;
            match (csv, tensorboard) {
                (Some(out), None) => {
                    let rows = export::export_csv(&dir, &out).map_err(bad_input)?;
                    out!("wrote {rows} rows to {}", out.display());
                }
                (None, Some(out)) => {
                    let file = export::export_tensorboard(&dir, &out).map_err(bad_input)?;
                    out!("wrote {}", file.display());
                }
                _ => {
                    return Err(bad_input(anyhow::anyhow!(
                        "give --csv FILE or --tensorboard DIR"
                    )))
                }
            }
            Ok(())
        }
    }
}
