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
        RunsCmd::Importance {
            dir,
            metric,
            filter,
            csv,
        } => {
            use workbench::core::runtable;
            let dir = dir.unwrap_or_else(|| default_dir.to_path_buf());
            let rows: Vec<runtable::RunRow> = runtable::RunIndex::default()
                .refresh(&dir)
                .into_iter()
                .filter(|r| r.matches(&filter))
                .collect();
            let metric = match metric {
                Some(m) => m,
                None => rows
                    .iter()
                    .flat_map(|r| r.main.iter().chain(r.best.keys()))
                    .next()
                    .cloned()
                    .ok_or_else(|| {
                        bad_input(anyhow::anyhow!(
                            "{}: no run reports a validation metric",
                            dir.display()
                        ))
                    })?,
            };
            let fields = runtable::varying_fields(&rows);
            let log = runtable::declared_log_fields(&dir);
            let imp = runtable::importance(&rows, &fields, &metric, &log).ok_or_else(|| {
                bad_input(anyhow::anyhow!(
                    "{}: importance of `{metric}` needs at least four runs that report it and a field that varies ({} runs, {} varying fields)",
                    dir.display(),
                    rows.iter().filter(|r| r.best.contains_key(&metric)).count(),
                    fields.len()
                ))
            })?;
            out!("importance of {metric} over {} runs (share of its variance, 10-90 % over {} trees):", imp.runs, workbench::core::fanova::TREES);
            for f in &imp.fields {
                out!(
                    "  {:<32} {:>6.1} %  [{:.1}, {:.1}]",
                    f.field,
                    100.0 * f.share,
                    100.0 * f.low,
                    100.0 * f.high
                );
            }
            if let Some((a, b, s)) = &imp.pair {
                out!("strongest interaction: {a} x {b}, {:.1} %", 100.0 * s);
            }
            if let Some(path) = csv {
                workbench::core::rundir::atomic_write(&path, imp.csv().as_bytes())
                    .map_err(bad_input)?;
                out!("wrote {}", path.display());
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
