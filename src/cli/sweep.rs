//! `workbench sweep plan|submit`.

use std::path::{Path, PathBuf};

use workbench::core::preset;

use anyhow::Context;

use super::queue::add_tasks;
use super::{bad_input, preset_text, Failure, SweepCmd};

/// `workbench sweep plan FILE`: the runs a sweep makes, as a table; `submit`: the same, queued.
pub(super) fn run(cmd: SweepCmd, runs_dir: &Path) -> Result<(), Failure> {
    let (file, submit) = match cmd {
        SweepCmd::Plan { file } => (file, None),
        SweepCmd::Submit { file, slurm } => (file, Some(slurm)),
        SweepCmd::Promote { run, .. } => {
            return Err(bad_input(anyhow::anyhow!(
                "{}: promote is its own command",
                run.display()
            )))
        }
    };
    let origin = file.display().to_string();
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("{origin}: cannot read"))
        .map_err(bad_input)?;
    let s = workbench::core::sweep::Sweep::parse(&text, &origin).map_err(bad_input)?;
    // A bare name is a shipped preset; anything else is a file beside the sweep.
    let base_path = if s.base.contains('/') || s.base.ends_with(".ron") {
        file.parent().unwrap_or(Path::new("")).join(&s.base)
    } else {
        PathBuf::from(&s.base)
    };
    let (base_text, base_origin) = preset_text(&base_path)?;
    let (base, _) =
        preset::parse_str(&base_text, &base_origin.display().to_string()).map_err(bad_input)?;
    let runs = s
        .plan(&base)
        .map_err(|e| bad_input(anyhow::anyhow!("{origin}: {e}")))?;
    out!(
        "sweep {}: {} runs of {}",
        s.name,
        runs.len(),
        base_origin.display()
    );
    let fields = s.fields();
    let mut rows = vec![std::iter::once("run".to_string())
        .chain(fields.iter().cloned())
        .collect::<Vec<_>>()];
    for r in &runs {
        rows.push(
            std::iter::once(r.name.clone())
                .chain(fields.iter().map(|f| {
                    // A TPE trial's values are proposed when it starts.
                    r.values.iter().find(|(k, _)| k == f).map_or_else(
                        || "(at start)".to_string(),
                        |(_, v)| workbench::core::sweep::short(v),
                    )
                }))
                .collect(),
        );
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out!("{}", line.join("  ").trim_end());
    }
    if let Some(slurm) = submit {
        let tasks =
            workbench::core::sweep::write_runs(runs_dir, &s, &origin, &runs).map_err(bad_input)?;
        let added = add_tasks(&s.name, tasks, slurm.as_deref(), runs_dir)?;
        let (first, last) = (
            added.ids.first().copied().unwrap_or_default(),
            added.ids.last().copied().unwrap_or_default(),
        );
        let queue_path = runs_dir.join("queue.json");
        match added.slurm_job {
            Some(job) => out!(
                "submitted SLURM job array {job} (tasks 0..={}) as queue jobs {first}..={last} in {}; `workbench queue list` follows them",
                added.ids.len().saturating_sub(1),
                queue_path.display()
            ),
            None => out!(
                "queued jobs {first}..={last} in {} (presets in {}); `workbench queue run` trains them",
                queue_path.display(),
                runs_dir.join("sweeps").join(&s.name).display()
            ),
        }
    }
    Ok(())
}

/// `workbench sweep promote RUN`: the trial is marked promoted in its sweep's state (it reports
/// but is never stopped again) and resumed from its latest checkpoint to its full budget, here
/// or queued (`--queue`, `--slurm PROFILE`). Returns the exit status.
pub(super) fn promote(
    run: &Path,
    queue: bool,
    slurm: Option<&Path>,
    runs_dir: &Path,
) -> Result<u8, Failure> {
    let (link, was) = workbench::core::pruner::promote(run).map_err(bad_input)?;
    out!(
        "promoted trial `{}`{}: it trains to its full budget",
        link.trial,
        was.map_or(String::new(), |s| format!(" ({})", s.describe()))
    );
    let dir = run.display().to_string();
    if queue || slurm.is_some() {
        let added = add_tasks(
            &link.trial,
            vec![vec!["--resume".to_string(), dir]],
            slurm,
            runs_dir,
        )?;
        let id = added.ids.first().copied().unwrap_or_default();
        match added.slurm_job {
            Some(job) => out!("submitted SLURM job {job} as queue job {id}"),
            None => out!(
                "queued job {id} in {}",
                runs_dir.join("queue.json").display()
            ),
        }
        return Ok(0);
    }
    super::train::run(
        &super::TrainArgs {
            resume: Some(run.to_path_buf()),
            ..super::TrainArgs::default()
        },
        runs_dir,
    )
}
