//! `workbench branch`: a new run from one of a run's checkpoints (`core::branch`).

use std::path::Path;

use workbench::core::branch::{self, BranchRequest};
use workbench::core::preset::schema;

use super::{bad_input, queue, say_line, train, BranchArgs, Failure, TrainArgs};

/// Makes the branch, then trains it, queues it or submits it. Returns the exit status.
pub(super) fn run(args: &BranchArgs, runs_dir: &Path) -> Result<u8, Failure> {
    let set = args
        .set
        .iter()
        .map(|item| {
            item.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), schema::parse_cli_value(v)))
                .ok_or_else(|| {
                    bad_input(anyhow::anyhow!("--set {item}: expected FIELD.PATH=VALUE"))
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let made = branch::create(&BranchRequest {
        parent: &args.run,
        at: args.at,
        set,
        name: args.name.clone(),
    })
    .map_err(bad_input)?;
    let dir = made.run.root().to_path_buf();
    say_line(&format!(
        "branch {} of {} at step {} ({})",
        dir.display(),
        made.lineage.parent.display(),
        made.lineage.fork_step,
        made.lineage.describe_changes()
    ));
    let mut train_args = vec!["--resume".to_string(), dir.display().to_string()];
    if let Some(steps) = args.steps {
        train_args.extend(["--steps".into(), steps.to_string()]);
    }
    if let Some(device) = &args.device {
        train_args.extend(["--device".into(), device.clone()]);
    }
    if args.no_train {
        say_line(&format!(
            "train it with: workbench train {}",
            train_args.join(" ")
        ));
        return Ok(0);
    }
    if args.queue || args.slurm.is_some() {
        let added = queue::add_tasks(
            made.preset.preset().name(),
            vec![train_args],
            args.slurm.as_deref(),
            runs_dir,
        )?;
        let id = added.ids.first().copied().unwrap_or_default();
        match added.slurm_job {
            Some(job) => say_line(&format!("submitted SLURM job {job} as queue job {id}")),
            None => say_line(&format!(
                "queued job {id} in {}",
                runs_dir.join("queue.json").display()
            )),
        }
        return Ok(0);
    }
    train::run(
        &TrainArgs {
            resume: Some(dir),
            steps: args.steps,
            device: args.device.clone(),
            ..TrainArgs::default()
        },
        runs_dir,
    )
}
