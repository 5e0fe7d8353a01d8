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
            out!("importance of {metric} over {} runs (share of its variance above a null field's, 10-90 % over {} trees):", imp.runs, workbench::core::fanova::TREES);
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
        RunsCmd::Control {
            run,
            command,
            timeout,
        } => control(&run, &command, timeout),
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

/// `workbench runs control RUN COMMAND`: sends it through the run's inbox and waits for the
/// run's answer; says so when the run has ended (before or while waiting).
fn control(run: &Path, words: &[String], timeout: f64) -> Result<(), Failure> {
    use workbench::core::inbox;
    use workbench::core::rundir::RunStatus;
    let command = inbox::parse(words).map_err(|e| bad_input(anyhow::anyhow!(e)))?;
    let dir = RunDir::open(run).map_err(bad_input)?;
    let ended = |dir: &RunDir| -> Result<Option<String>, Failure> {
        let s = dir.status().map_err(bad_input)?;
        Ok((s.status != RunStatus::Running).then(|| {
            format!(
                "{} has ended ({} at step {})",
                run.display(),
                s.status.label(),
                s.last_step
            )
        }))
    };
    if let Some(why) = ended(&dir)? {
        return Err(Failure {
            code: 1,
            error: anyhow::anyhow!("{why}: nothing was sent"),
        });
    }
    let id = inbox::send(run, &command, true).map_err(bad_input)?;
    let what = words.join(" ");
    let t0 = std::time::Instant::now();
    let mut last_check = t0;
    loop {
        if let Some(ack) = inbox::answer(run, &id) {
            let said = if ack.said.is_empty() {
                String::new()
            } else {
                format!(": {}", ack.said)
            };
            out!("{what}: applied at step {}{said}", ack.step);
            return Ok(());
        }
        // The run may end while the command waits: then it never takes it.
        if last_check.elapsed().as_secs_f64() >= 1.0 {
            last_check = std::time::Instant::now();
            if let Some(why) = ended(&dir)? {
                if inbox::withdraw(run, &id) {
                    return Err(Failure {
                        code: 1,
                        error: anyhow::anyhow!("{why} before it took `{what}`"),
                    });
                }
            }
        }
        if t0.elapsed().as_secs_f64() > timeout {
            let _ = inbox::withdraw(run, &id);
            return Err(Failure {
                code: 1,
                error: anyhow::anyhow!(
                    "{} did not take `{what}` within {timeout} s (is it paused in a long step, or on a machine that does not share this folder?); the command was withdrawn",
                    run.display()
                ),
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
