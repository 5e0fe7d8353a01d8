//! Branches: a new run that starts from one of another run's checkpoints, with some fields
//! changed or none. The branch is a run folder like any other (it trains, resumes, queues
//! and goes to SLURM as one); what makes it a branch is `branch.json`, which names its
//! parent, the step it forks at and the fields it changed.
//!
//! The parent's history is not copied. The fork checkpoint (and the parent's best checkpoints
//! up to the fork, which a later phase may start from) are hard links in the branch's own
//! `checkpoints/`, so they cost no space, survive the parent pruning them, and the branch
//! starts as any resumed run does: from its own latest checkpoint. Only `state.json` is a
//! copy, without the changed fields' live values (which would otherwise override them).
//! Reading a checkpoint never touches the parent, so branching a running run does not pause
//! it.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::core::preset::{self, schema, AnyPreset, ValidatedPreset};
use crate::core::rundir::{atomic_write, RunDir, RunDirError};

/// The file in a run folder that makes it a branch.
pub const LINEAGE_FILE: &str = "branch.json";

/// Where a branch comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lineage {
    /// The parent run's folder (absolute).
    pub parent: PathBuf,
    /// The parent's preset name.
    pub parent_name: String,
    /// The step of the checkpoint the branch starts from: its first logged row is the next.
    pub fork_step: u64,
    /// The fields the branch changed, in the order given.
    pub changes: Vec<Change>,
    /// When the branch was made (`YYYY-MM-DD HH:MM:SS UTC`).
    pub created: String,
}

/// One changed field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub field: String,
    pub from: Value,
    pub to: Value,
}

impl Lineage {
    /// `lr_g 0.0002 -> 0.0001, seed 1 -> 2`, or `no change`.
    #[must_use]
    pub fn describe_changes(&self) -> String {
        if self.changes.is_empty() {
            return "no change".into();
        }
        self.changes
            .iter()
            .map(|c| {
                format!(
                    "{} {} -> {}",
                    c.field,
                    schema::show_value(&c.from),
                    schema::show_value(&c.to)
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Why a branch could not be made. Each names the run, the step or the field.
#[derive(Debug, thiserror::Error)]
pub enum BranchError {
    #[error(transparent)]
    RunDir(#[from] RunDirError),
    #[error("{run}: no checkpoint at step {step}; its checkpoints: {available}")]
    NoCheckpoint {
        run: PathBuf,
        step: u64,
        available: String,
    },
    #[error("{run}: no checkpoint to branch from yet")]
    NoCheckpoints { run: PathBuf },
    #[error("{file}: {message}")]
    Preset { file: PathBuf, message: String },
    #[error("{fields}: changes the model's shape ({have} -> {want}); a branch starts from the parent's weights, so it can change any field but those")]
    ModelChanged {
        fields: String,
        have: String,
        want: String,
    },
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> BranchError + '_ {
    move |e| BranchError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// A branch to make.
#[derive(Debug, Clone)]
pub struct BranchRequest<'a> {
    /// The parent run's folder.
    pub parent: &'a Path,
    /// The checkpoint's step; `None` takes the parent's latest.
    pub at: Option<u64>,
    /// Fields to change, as `--set` gives them.
    pub set: Vec<(String, Value)>,
    /// The branch's preset name; by default the parent's with `-at<step>`.
    pub name: Option<String>,
}

/// A branch made: its folder (ready to train with `--resume`) and its lineage.
#[derive(Debug, Clone)]
pub struct Branch {
    pub run: RunDir,
    pub lineage: Lineage,
    pub preset: ValidatedPreset,
}

/// The steps of a run's complete checkpoints (`checkpoints/step-N/state.json`), ascending.
#[must_use]
pub fn checkpoint_steps(run: &Path) -> Vec<u64> {
    let Ok(entries) = fs::read_dir(run.join("checkpoints")) else {
        return Vec::new();
    };
    let mut steps: Vec<u64> = entries
        .flatten()
        .filter(|e| e.path().join("state.json").is_file())
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("step-")?.parse().ok())
        .collect();
    steps.sort_unstable();
    steps
}

/// The folder name of the checkpoint at `step` (as the engine writes it).
#[must_use]
pub fn checkpoint_dir_name(step: u64) -> String {
    format!("step-{step:08}")
}

/// A run's lineage, if it is a branch.
#[must_use]
pub fn read(run: &Path) -> Option<Lineage> {
    let text = fs::read_to_string(run.join(LINEAGE_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Makes a branch of `req.parent` next to it (in the same runs folder). Nothing of the parent
/// changes; on an error nothing of the branch is left.
pub fn create(req: &BranchRequest<'_>) -> Result<Branch, BranchError> {
    let parent_dir = RunDir::open(req.parent)?;
    let parent = crate::core::rundir::absolute(req.parent);
    let steps = checkpoint_steps(&parent);
    let step = match req.at {
        Some(s) if steps.contains(&s) => s,
        Some(s) => {
            return Err(BranchError::NoCheckpoint {
                run: parent,
                step: s,
                available: if steps.is_empty() {
                    "none".into()
                } else {
                    steps
                        .iter()
                        .map(u64::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            })
        }
        None => *steps.last().ok_or_else(|| BranchError::NoCheckpoints {
            run: parent.clone(),
        })?,
    };
    let fork = parent.join("checkpoints").join(checkpoint_dir_name(step));
    let preset_file = parent_dir.preset_path();
    let text = fs::read_to_string(&preset_file).map_err(io(&preset_file))?;
    let bad_preset = |message: String| BranchError::Preset {
        file: preset_file.clone(),
        message,
    };
    let (before, _) = preset::parse_str(&text, &preset_file.display().to_string())
        .map_err(|e| bad_preset(e.to_string()))?;
    let joined = |problems: Vec<preset::Problem>| {
        problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    };
    let changed = before
        .with_overrides(req.set.iter().map(|(k, v)| (k.as_str(), v.clone())))
        .map_err(|p| bad_preset(format!("--set: {}", joined(p))))?;
    let name = req
        .name
        .clone()
        .unwrap_or_else(|| format!("{}-at{step}", before.name()));
    let changed = renamed(&changed, &name).map_err(|p| bad_preset(p.to_string()))?;
    let validated = preset::validate(changed).map_err(|p| bad_preset(joined(p)))?;
    let state_file = fork.join("state.json");
    let state_text = fs::read_to_string(&state_file).map_err(io(&state_file))?;
    let mut state: Value = serde_json::from_str(&state_text).map_err(|e| BranchError::Io {
        path: state_file.clone(),
        message: e.to_string(),
    })?;
    let have = state
        .get("signature")
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_string();
    let want = validated.preset().front().signature();
    if have != want {
        return Err(BranchError::ModelChanged {
            fields: req
                .set
                .iter()
                .map(|(k, _)| k.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            have,
            want,
        });
    }
    // What changes: from the value in force at the checkpoint (a live edit's, else the
    // preset's) to the branch's.
    let (old_tree, new_tree) = (before.to_tree(), validated.preset().to_tree());
    let changes = req
        .set
        .iter()
        .map(|(field, _)| Change {
            field: field.clone(),
            from: state
                .get("live")
                .and_then(|l| l.get(field))
                .or_else(|| schema::get_path(&old_tree, field))
                .cloned()
                .unwrap_or(Value::Null),
            to: schema::get_path(&new_tree, field)
                .cloned()
                .unwrap_or(Value::Null),
        })
        .collect();
    // The changed fields' values, not the ones in force at the checkpoint.
    if let Some(live) = state.get_mut("live").and_then(Value::as_object_mut) {
        for (field, _) in &req.set {
            live.remove(field);
        }
    }
    let lineage = Lineage {
        parent: parent.clone(),
        parent_name: before.name().to_string(),
        fork_step: step,
        changes,
        created: crate::core::timefmt::readable_utc(crate::core::timefmt::unix_now() as u64)
            + " UTC",
    };
    let runs_dir = parent.parent().unwrap_or(Path::new("."));
    let run = RunDir::create(runs_dir, &name)?;
    let made = fill(&run, &parent, &fork, step, &state, &lineage, &validated);
    if let Err(e) = made {
        let _ = fs::remove_dir_all(run.root());
        return Err(e);
    }
    Ok(Branch {
        run,
        lineage,
        preset: validated,
    })
}

/// The preset under another name.
fn renamed(p: &AnyPreset, name: &str) -> Result<AnyPreset, preset::Problem> {
    let mut tree = p.to_tree();
    tree["name"] = Value::String(name.to_string());
    AnyPreset::from_tree(p.family(), tree)
}

/// Writes a new branch folder's preset, checkpoints and lineage.
fn fill(
    run: &RunDir,
    parent: &Path,
    fork: &Path,
    step: u64,
    state: &Value,
    lineage: &Lineage,
    preset: &ValidatedPreset,
) -> Result<(), BranchError> {
    let meta = [
        ("branch of", parent.display().to_string()),
        ("fork step", step.to_string()),
        ("changed", lineage.describe_changes()),
        ("branched", lineage.created.clone()),
    ];
    run.write_preset(&preset.preset().to_ron(), &meta)?;
    let ckpts = run.checkpoints();
    // The parent's best checkpoints up to the fork: a later phase that starts from the best
    // of an earlier one finds it, as the parent did.
    let parent_ckpts = parent.join("checkpoints");
    let mut best: Value = fs::read_to_string(parent_ckpts.join("best.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_else(|| serde_json::json!({ "phases": {} }));
    if let Some(phases) = best.get_mut("phases").and_then(Value::as_object_mut) {
        phases.retain(|_, e| {
            let at = e.get("step").and_then(Value::as_u64);
            let dir = e.get("dir").and_then(Value::as_str).unwrap_or("");
            at.is_some_and(|s| s <= step) && parent_ckpts.join(dir).join("state.json").is_file()
        });
        for e in phases.values() {
            if let Some(dir) = e.get("dir").and_then(Value::as_str) {
                link_checkpoint(&parent_ckpts.join(dir), &ckpts.join(dir), None)?;
            }
        }
    }
    let name = checkpoint_dir_name(step);
    link_checkpoint(fork, &ckpts.join(&name), Some(state))?;
    let text = |v: &Value| serde_json::to_vec_pretty(v).unwrap_or_default();
    atomic_write(&ckpts.join("best.json"), &text(&best))?;
    atomic_write(&ckpts.join("latest"), name.as_bytes())?;
    write_lineage(run, lineage)
}

/// Writes a run folder's `branch.json` (atomically): what makes the folder a branch.
pub fn write_lineage(run: &RunDir, lineage: &Lineage) -> Result<(), BranchError> {
    let json = serde_json::to_vec_pretty(lineage).map_err(|e| BranchError::Io {
        path: run.root().join(LINEAGE_FILE),
        message: e.to_string(),
    })?;
    atomic_write(&run.root().join(LINEAGE_FILE), &json)?;
    Ok(())
}

/// `to` as a checkpoint folder whose files are hard links to `from`'s (copies across file
/// systems), with `state` written in place of `state.json` when given.
fn link_checkpoint(from: &Path, to: &Path, state: Option<&Value>) -> Result<(), BranchError> {
    if to.exists() {
        if let Some(state) = state {
            // Already linked as a best checkpoint: only the state differs.
            let bytes = serde_json::to_vec_pretty(state).unwrap_or_default();
            atomic_write(&to.join("state.json"), &bytes)?;
        }
        return Ok(());
    }
    fs::create_dir_all(to).map_err(io(to))?;
    // The parent may prune this checkpoint while it is linked: say so rather than leave half.
    let gone = |e: std::io::Error| BranchError::Io {
        path: from.to_path_buf(),
        message: format!(
            "{e} (did the running parent prune this checkpoint? branch from a later one)"
        ),
    };
    for entry in fs::read_dir(from).map_err(gone)? {
        let entry = entry.map_err(gone)?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if state.is_some() && entry.file_name() == "state.json" {
            continue;
        }
        if fs::hard_link(&src, &dst).is_err() {
            fs::copy(&src, &dst).map_err(gone)?;
        }
    }
    match state {
        Some(state) => {
            let bytes = serde_json::to_vec_pretty(state).unwrap_or_default();
            atomic_write(&to.join("state.json"), &bytes)?;
        }
        None if !to.join("state.json").is_file() => {
            return Err(gone(std::io::Error::other("state.json is missing")));
        }
        None => {}
    }
    Ok(())
}

/// How many bytes of a run folder are its own: everything but the checkpoints' tensors that
/// are hard links shared with another run.
#[must_use]
pub fn own_bytes(run: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    fn walk(dir: &Path, total: &mut u64) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let Ok(meta) = fs::symlink_metadata(e.path()) else {
                continue;
            };
            if meta.is_dir() {
                walk(&e.path(), total);
            } else if meta.nlink() <= 1 {
                *total += meta.len();
            }
        }
    }
    let mut total = 0;
    walk(run, &mut total);
    total
}

/// The lineage of many runs: each branch's parent among them, and how many children each has.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    /// For each run (by index), the index of its parent among the runs, if there.
    pub parent: Vec<Option<usize>>,
    /// For each run, how many branches among the runs start from it.
    pub children: Vec<usize>,
    /// For each run, how many ancestors it has among the runs (0 for a root).
    pub depth: Vec<usize>,
}

impl Tree {
    /// Builds the tree of `runs` (their folders, and the lineage of those that are branches).
    #[must_use]
    pub fn new(runs: &[(&Path, Option<&Lineage>)]) -> Self {
        let index: std::collections::HashMap<PathBuf, usize> = runs
            .iter()
            .enumerate()
            .map(|(i, (dir, _))| (crate::core::rundir::absolute(dir), i))
            .collect();
        let parent: Vec<Option<usize>> = runs
            .iter()
            .map(|(_, l)| l.and_then(|l| index.get(&l.parent).copied()))
            .collect();
        let mut children = vec![0; runs.len()];
        for p in parent.iter().flatten() {
            children[*p] += 1;
        }
        let depth = (0..runs.len())
            .map(|mut i| {
                let mut d = 0;
                // A cycle (folders edited by hand) stops at the number of runs.
                while let Some(p) = parent[i] {
                    d += 1;
                    i = p;
                    if d > runs.len() {
                        break;
                    }
                }
                d
            })
            .collect();
        Self {
            parent,
            children,
            depth,
        }
    }

    /// The runs in tree order: each root, then its branches (in the order shown) depth first.
    #[must_use]
    pub fn order(&self, roots_in: &[usize]) -> Vec<usize> {
        let mut kids: Vec<Vec<usize>> = vec![Vec::new(); self.parent.len()];
        for &i in roots_in {
            if let Some(p) = self.parent[i] {
                kids[p].push(i);
            }
        }
        let shown: std::collections::HashSet<usize> = roots_in.iter().copied().collect();
        let mut out = Vec::with_capacity(roots_in.len());
        let mut stack: Vec<usize> = roots_in
            .iter()
            .rev()
            .copied()
            .filter(|&i| self.parent[i].is_none_or(|p| !shown.contains(&p)))
            .collect();
        while let Some(i) = stack.pop() {
            out.push(i);
            stack.extend(kids[i].iter().rev().copied());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lineage(parent: &Path, step: u64) -> Lineage {
        Lineage {
            parent: parent.to_path_buf(),
            parent_name: "p".into(),
            fork_step: step,
            changes: Vec::new(),
            created: String::new(),
        }
    }

    #[test]
    fn the_tree_puts_branches_under_their_parents() {
        let dirs: Vec<PathBuf> = (0..5)
            .map(|i| PathBuf::from(format!("/runs/r{i}")))
            .collect();
        // r1 and r3 branch r0; r2 branches r1; r4 is on its own.
        let l1 = lineage(&dirs[0], 10);
        let l2 = lineage(&dirs[1], 20);
        let l3 = lineage(&dirs[0], 30);
        let runs: Vec<(&Path, Option<&Lineage>)> = vec![
            (&dirs[0], None),
            (&dirs[1], Some(&l1)),
            (&dirs[2], Some(&l2)),
            (&dirs[3], Some(&l3)),
            (&dirs[4], None),
        ];
        let t = Tree::new(&runs);
        assert_eq!(t.parent, [None, Some(0), Some(1), Some(0), None]);
        assert_eq!(t.children, [2, 1, 0, 0, 0]);
        assert_eq!(t.depth, [0, 1, 2, 1, 0]);
        // Shown in the order r4, r3, r2, r1, r0 (say, sorted by name descending): each root,
        // then its branches under it.
        assert_eq!(t.order(&[4, 3, 2, 1, 0]), [4, 0, 3, 1, 2]);
        // A branch whose parent is filtered out is a root of what is shown.
        assert_eq!(t.order(&[2, 4]), [2, 4]);
    }
}
