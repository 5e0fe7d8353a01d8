//! Checkpoints: every tensor in one safetensors file plus `state.json`, written into a
//! temporary folder that is renamed into place only when complete, so a kill at any moment
//! leaves the previous checkpoint intact.
//!
//! ```text
//! checkpoints/step-00001200/tensors.safetensors
//! checkpoints/step-00001200/state.json
//! checkpoints/latest        "step-00001200"
//! checkpoints/best.json     the best checkpoint of each phase, with its metric
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::core::rundir::{atomic_write, sync_dir};

/// Errors of checkpoint files.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct CheckpointError {
    pub path: PathBuf,
    pub message: String,
}

fn err(path: &Path, message: impl std::fmt::Display) -> CheckpointError {
    CheckpointError {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// The best checkpoint of each phase.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BestIndex {
    pub phases: BTreeMap<usize, BestEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BestEntry {
    pub dir: String,
    pub step: u64,
    pub metric: f64,
}

/// The folder name of the checkpoint at `step`.
#[must_use]
pub fn dir_name(step: u64) -> String {
    format!("step-{step:08}")
}

/// The first tensor holding a NaN or an infinity, by name: a checkpoint is never written with
/// one (a resume or a branch from it could only diverge again).
#[must_use]
pub fn first_non_finite(tensors: &[(String, Tensor)]) -> Option<&str> {
    tensors
        .iter()
        .find(|(_, t)| {
            t.is_floating_point()
                && t.numel() > 0
                && !bool::try_from(t.isfinite().all()).unwrap_or(true)
        })
        .map(|(n, _)| n.as_str())
}

/// Writes a checkpoint atomically and points `latest` at it. Returns its folder.
pub fn write(
    checkpoints: &Path,
    step: u64,
    tensors: &[(String, Tensor)],
    state: &serde_json::Value,
) -> Result<PathBuf, CheckpointError> {
    let name = dir_name(step);
    let tmp = checkpoints.join(format!(".tmp-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).map_err(|e| err(&tmp, e))?;
    let tensor_file = tmp.join("tensors.safetensors");
    let cpu: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(n, t)| {
            (
                n.clone(),
                t.detach().to_device(tch::Device::Cpu).contiguous(),
            )
        })
        .collect();
    Tensor::write_safetensors(&cpu, &tensor_file).map_err(|e| err(&tensor_file, e))?;
    fs::File::open(&tensor_file)
        .and_then(|f| f.sync_all())
        .map_err(|e| err(&tensor_file, e))?;
    if crate::engine::failpoint("checkpoint-mid-write", step) {
        // Test hook: die half-way through a checkpoint, as a kill or power cut would.
        std::process::abort();
    }
    let state_text = serde_json::to_vec_pretty(state).map_err(|e| err(&tmp, e))?;
    atomic_write(&tmp.join("state.json"), &state_text).map_err(|e| err(&tmp, e))?;
    let final_dir = checkpoints.join(&name);
    if final_dir.exists() {
        fs::remove_dir_all(&final_dir).map_err(|e| err(&final_dir, e))?;
    }
    fs::rename(&tmp, &final_dir).map_err(|e| err(&final_dir, e))?;
    sync_dir(checkpoints);
    atomic_write(&checkpoints.join("latest"), name.as_bytes()).map_err(|e| err(checkpoints, e))?;
    Ok(final_dir)
}

/// A loaded checkpoint.
#[derive(Debug)]
pub struct Loaded {
    pub dir: PathBuf,
    pub tensors: HashMap<String, Tensor>,
    pub state: serde_json::Value,
}

impl Loaded {
    /// Copies every variable of `vs` from the tensors named `<prefix>.<variable>`; errors
    /// name the checkpoint, the tensor and both shapes.
    pub fn load_vars(&self, prefix: &str, vs: &tch::nn::VarStore) -> Result<(), CheckpointError> {
        for (name, mut var) in vs.variables() {
            let key = format!("{prefix}.{name}");
            let t = self.get(&key).ok_or_else(|| {
                err(
                    &self.dir,
                    format!("missing tensor `{key}` (a checkpoint of another model?)"),
                )
            })?;
            if t.size() != var.size() {
                return Err(err(
                    &self.dir,
                    format!(
                        "tensor `{key}` has shape {:?}, the preset's model needs {:?}",
                        t.size(),
                        var.size()
                    ),
                ));
            }
            tch::no_grad(|| var.copy_(&t));
        }
        Ok(())
    }

    /// A tensor by name, copied (so the checkpoint can be reused).
    #[must_use]
    pub fn get(&self, name: &str) -> Option<Tensor> {
        self.tensors.get(name).map(Tensor::copy)
    }
}

/// Reads the state of a checkpoint folder without its tensors.
pub fn read_state(dir: &Path) -> Result<serde_json::Value, CheckpointError> {
    let path = dir.join("state.json");
    let text =
        fs::read(&path).map_err(|e| err(&path, format!("not a complete checkpoint: {e}")))?;
    serde_json::from_slice(&text).map_err(|e| err(&path, e))
}

/// Reads a checkpoint folder.
pub fn read(dir: &Path) -> Result<Loaded, CheckpointError> {
    let state = read_state(dir)?;
    let path = dir.join("tensors.safetensors");
    let tensors = Tensor::read_safetensors(&path)
        .map_err(|e| err(&path, e))?
        .into_iter()
        .collect();
    Ok(Loaded {
        dir: dir.to_path_buf(),
        tensors,
        state,
    })
}

/// Turns a run folder (its latest checkpoint) or a checkpoint folder into a checkpoint folder.
pub fn resolve(path: &Path) -> Result<PathBuf, CheckpointError> {
    if path.join("state.json").is_file() {
        return Ok(path.to_path_buf());
    }
    let ckpts = if path.join("checkpoints").is_dir() {
        path.join("checkpoints")
    } else {
        path.to_path_buf()
    };
    let latest = ckpts.join("latest");
    let name = fs::read_to_string(&latest).map_err(|_| {
        err(
            path,
            "neither a checkpoint nor a run with checkpoints (no checkpoints/latest)",
        )
    })?;
    let dir = ckpts.join(name.trim());
    if dir.join("state.json").is_file() {
        Ok(dir)
    } else {
        Err(err(&dir, "the latest checkpoint is missing or incomplete"))
    }
}

/// Reads `best.json` (empty when absent).
#[must_use]
pub fn read_best(checkpoints: &Path) -> BestIndex {
    fs::read(checkpoints.join("best.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Writes `best.json`.
pub fn write_best(checkpoints: &Path, best: &BestIndex) -> Result<(), CheckpointError> {
    let text = serde_json::to_vec_pretty(best).map_err(|e| err(checkpoints, e))?;
    atomic_write(&checkpoints.join("best.json"), &text).map_err(|e| err(checkpoints, e))
}

/// Deletes all but the latest `keep_last` checkpoints, never one listed in `best.json`, and any
/// temporary folder left by a killed writer.
pub fn prune(checkpoints: &Path, keep_last: usize) -> Result<(), CheckpointError> {
    let best = read_best(checkpoints);
    let protected: Vec<&str> = best.phases.values().map(|b| b.dir.as_str()).collect();
    let mut steps: Vec<String> = Vec::new();
    for entry in fs::read_dir(checkpoints)
        .map_err(|e| err(checkpoints, e))?
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with(".tmp-") {
            let pid_alive = name
                .rsplit('-')
                .next()
                .and_then(|p| p.parse::<u32>().ok())
                .is_some_and(|p| p == std::process::id());
            if !pid_alive {
                let _ = fs::remove_dir_all(entry.path());
            }
        } else if name.starts_with("step-") {
            steps.push(name);
        }
    }
    steps.sort();
    let n = steps.len();
    for name in steps.into_iter().take(n.saturating_sub(keep_last)) {
        if !protected.contains(&name.as_str()) {
            fs::remove_dir_all(checkpoints.join(&name)).map_err(|e| err(checkpoints, e))?;
        }
    }
    Ok(())
}

/// Moves checkpoints later than `step` out of the way (to `superseded/`) when a run resumes from
/// an earlier one: they belong to a history that is being replaced, but are kept, not deleted.
pub fn supersede_after(checkpoints: &Path, step: u64) -> Result<(), CheckpointError> {
    let target = dir_name(step);
    let mut moved = false;
    for entry in fs::read_dir(checkpoints)
        .map_err(|e| err(checkpoints, e))?
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with("step-") && name > target {
            let dest = checkpoints.join("superseded");
            fs::create_dir_all(&dest).map_err(|e| err(&dest, e))?;
            fs::rename(entry.path(), dest.join(&name)).map_err(|e| err(&dest, e))?;
            moved = true;
        }
    }
    if moved {
        atomic_write(&checkpoints.join("latest"), target.as_bytes())
            .map_err(|e| err(checkpoints, e))?;
        let mut best = read_best(checkpoints);
        best.phases.retain(|_, b| b.step <= step);
        write_best(checkpoints, &best)?;
    }
    Ok(())
}
