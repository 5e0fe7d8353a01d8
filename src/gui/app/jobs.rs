//! The app's background work: every thread the app starts for a panel goes through
//! [`background`], and what reads a file for a panel is here (images, video frames, volumes),
//! so that nothing that draws waits on a disk or a decoder.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use egui::ColorImage;

use crate::core::protocol::Waker;
use crate::core::runtable::{RunIndex, RunRow};
use crate::core::runview::VolumeRef;
use crate::engine::explore::{ActionExplorer, Explored};
use crate::engine::worker::WorkerHandle;
use crate::gui::actions::{ExploreRequest, FrameSource};
use crate::gui::panels::volume::Voxels;

use crate::gui::editor::{LibraryEntry, PresetEditor};

use super::queue::Reply;

/// Runs `job` on a named thread and hands its result back through a channel; `waker` asks
/// for a frame when it is done.
pub(crate) fn background<T: Send + 'static>(
    name: &str,
    waker: Option<Waker>,
    job: impl FnOnce() -> T + Send + 'static,
) -> Receiver<T> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    let spawned = std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let _ = tx.send(job());
            if let Some(w) = waker {
                w();
            }
        });
    if let Err(e) = spawned {
        // The receiver then reports a disconnect; the app says the job could not start.
        eprintln!("cannot start the {name} thread: {e}");
    }
    rx
}

/// A finished job's result: `None` while it runs, `Some(Err)` when its thread ended without
/// one (it could not start, or it panicked). The slot is emptied when it is done.
pub(crate) fn take<T>(slot: &mut Option<Receiver<T>>) -> Option<Result<T, String>> {
    let result = match slot.as_ref()?.try_recv() {
        Ok(r) => Ok(r),
        Err(TryRecvError::Empty) => return None,
        Err(TryRecvError::Disconnected) => Err("the job's thread ended without a result".into()),
    };
    *slot = None;
    Some(result)
}

/// The finished jobs among `jobs` (the others stay).
pub(crate) fn take_all<T>(jobs: &mut Vec<Receiver<T>>) -> Vec<Result<T, String>> {
    let mut done = Vec::new();
    jobs.retain(|rx| match rx.try_recv() {
        Ok(r) => {
            done.push(Ok(r));
            false
        }
        Err(TryRecvError::Empty) => true,
        Err(TryRecvError::Disconnected) => {
            done.push(Err("the job's thread ended without a result".into()));
            false
        }
    });
    done
}

/// The result of a file job run off the UI thread.
#[derive(Debug)]
pub(crate) enum IoDone {
    /// A preset read and parsed for the editor.
    Loaded(Result<Box<PresetEditor>, String>),
    /// The preset was saved there; the library as it is now.
    Saved(Result<(PathBuf, Vec<LibraryEntry>), String>),
    /// A library preset to compare with, as a tree.
    Compare(Result<(String, serde_json::Value), String>),
    /// A file written (exports).
    Written(Result<String, String>),
    /// A file written that only speaks up when it failed.
    Quiet(Result<(), String>),
}

/// An explorer loaded for a run folder, or why not.
pub(crate) type Opened = (String, Result<Box<dyn ActionExplorer>, String>);
/// The explorer back from a rollout, with the rollout.
pub(crate) type Rolled = (Box<dyn ActionExplorer>, Result<Explored, String>);

/// A volume read for a run folder at a step.
pub(crate) type VolumeRead = (String, u64, Result<Voxels, String>);

/// A run's live fields and their values in each phase, read from its preset, or why not.
pub(crate) type LiveFields = (PathBuf, Result<Vec<Vec<(String, f64)>>, String>);

/// A remote's runs, listed: the remote's index, its runs or why not.
pub(crate) type RemoteListed = (usize, Result<Vec<crate::core::runtable::WireRow>, String>);

/// The work under way, by kind.
#[derive(Default)]
pub(crate) struct Jobs {
    /// A run being prepared.
    pub starting: Option<Receiver<Result<WorkerHandle, String>>>,
    /// File reads and writes (presets, exports, layouts).
    pub io: Vec<Receiver<IoDone>>,
    /// The runs folder's index, read incrementally, and the read under way.
    pub run_index: Arc<Mutex<RunIndex>>,
    pub run_list: Option<Receiver<Vec<RunRow>>>,
    pub run_list_at: Option<Instant>,
    /// A read or an edit of the queue file; when the queue and SLURM were last asked.
    pub queue: Option<Receiver<Reply>>,
    pub queue_edits: Vec<super::queue::QueueEdit>,
    pub queue_at: Option<Instant>,
    pub slurm_at: Option<Instant>,
    /// Which settings matter, being computed for the Runs tab.
    pub importance: Option<(
        crate::gui::panels::runs::ImportanceKey,
        Receiver<Option<crate::core::fanova::Importance>>,
    )>,
    /// The devices, probed once for the About window.
    pub about: Option<Receiver<String>>,
    /// The action explorer: loaded (idle), being loaded, or rolling out; the rollout asked
    /// for while another was under way.
    pub explorer: Option<Box<dyn ActionExplorer>>,
    pub opening: Option<Receiver<Opened>>,
    pub exploring: Option<Receiver<Rolled>>,
    pub next_explore: Option<ExploreRequest>,
    /// Volumes, GAAD frames and images being read.
    pub volumes: Vec<Receiver<VolumeRead>>,
    pub frames: Vec<Receiver<(FrameSource, Result<ColorImage, String>)>>,
    pub images: Vec<Receiver<(PathBuf, Result<ColorImage, String>)>>,
    /// Remotes' runs being listed: the remote's index and its runs, or why not.
    pub remote_lists: Vec<Receiver<RemoteListed>>,
    /// A followed run's live fields, read from its preset: its folder and the fields.
    pub live_fields: Vec<Receiver<LiveFields>>,
}

impl Jobs {
    /// Whether any job is under way (the app polls again soon).
    pub(crate) fn busy(&self) -> bool {
        self.starting.is_some()
            || !self.io.is_empty()
            || self.run_list.is_some()
            || self.queue.is_some()
            || !self.queue_edits.is_empty()
            || self.about.is_some()
            || self.opening.is_some()
            || self.exploring.is_some()
            || !self.volumes.is_empty()
            || !self.frames.is_empty()
            || !self.images.is_empty()
            || self.importance.is_some()
            || !self.remote_lists.is_empty()
            || !self.live_fields.is_empty()
    }
}

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jobs")
            .field("starting", &self.starting.is_some())
            .field("io", &self.io.len())
            .field("explorer", &self.explorer.is_some())
            .finish_non_exhaustive()
    }
}

/// Decodes an image file.
pub(crate) fn decode_image(path: &Path) -> Result<ColorImage, String> {
    let img = image::open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .to_rgba8();
    Ok(ColorImage::from_rgba_unmultiplied(
        [img.width() as usize, img.height() as usize],
        img.as_raw(),
    ))
}

/// A remote run's file (`run`'s file `rel`), over a connection of its own.
pub(crate) fn fetch_file(argv: &[String], run: &str, rel: &Path) -> Result<Vec<u8>, String> {
    use crate::core::remote::Connection;
    let shown = || format!("{run}/{}", rel.display());
    let (mut c, _) = Connection::open(argv).map_err(|e| format!("{}: {e}", shown()))?;
    crate::core::remote::fetch(&mut c, run, &rel.to_string_lossy())
        .map_err(|e| format!("{}: {e}", shown()))
}

/// Copies a remote run's files `rels` into its mirror folder (the same relative paths, under
/// this process's own temporary folder), over one connection; gives the mirror folder.
/// Volumes and a checkpoint are read from there as local files.
pub(crate) fn fetch_into(argv: &[String], run: &str, rels: &[String]) -> Result<PathBuf, String> {
    use crate::core::remote::Connection;
    let mirror = std::env::temp_dir()
        .join(format!("workbench-remote-{}", std::process::id()))
        .join(run);
    let (mut c, _) = Connection::open(argv).map_err(|e| format!("{run}: {e}"))?;
    for rel in rels {
        let bytes = crate::core::remote::fetch(&mut c, run, rel)
            .map_err(|e| format!("{run}/{rel}: {e}"))?;
        let path = mirror.join(rel);
        path.parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&path, bytes))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(mirror)
}

/// A remote run's latest checkpoint and preset, copied into its mirror folder (which then
/// opens as a run folder).
pub(crate) fn fetch_checkpoint(argv: &[String], run: &str) -> Result<PathBuf, String> {
    let mirror = fetch_into(
        argv,
        run,
        &["preset.ron".into(), "checkpoints/latest".into()],
    )?;
    let latest = std::fs::read_to_string(mirror.join("checkpoints/latest"))
        .map_err(|e| format!("{run}: {e}"))?;
    let name = latest.trim();
    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
        return Err(format!("{run}: its checkpoints/latest names no checkpoint"));
    }
    fetch_into(
        argv,
        run,
        &[
            format!("checkpoints/{name}/state.json"),
            format!("checkpoints/{name}/tensors.safetensors"),
        ],
    )
}

/// A remote run's image (`run`'s file `rel`), over a connection of its own.
pub(crate) fn fetch_image(argv: &[String], run: &str, rel: &Path) -> Result<ColorImage, String> {
    let shown = || format!("{run}/{}", rel.display());
    let bytes = fetch_file(argv, run, rel)?;
    let img = image::load_from_memory(&bytes)
        .map_err(|e| format!("{}: {e}", shown()))?
        .to_rgba8();
    Ok(ColorImage::from_rgba_unmultiplied(
        [img.width() as usize, img.height() as usize],
        img.as_raw(),
    ))
}

/// The GAAD inspector's frame of a file: an image, or a video's frame (FFmpeg).
pub(crate) fn load_frame(source: &FrameSource) -> Result<ColorImage, String> {
    match source {
        FrameSource::Image(path) => decode_image(path),
        FrameSource::Video { path, index } => {
            let f = crate::core::video::read_frame(path, *index).map_err(|e| e.to_string())?;
            Ok(ColorImage::from_rgba_unmultiplied(
                [f.width as usize, f.height as usize],
                &f.rgba,
            ))
        }
        FrameSource::Synthetic { .. } => Err("a synthetic frame has no file".into()),
    }
}

/// Reads a volume event's two files.
pub(crate) fn read_volume_pair(dir: &Path, v: &VolumeRef) -> Result<Voxels, String> {
    use crate::core::nifti::read_channels;
    let truth = read_channels(&dir.join(&v.truth)).map_err(|e| e.to_string())?;
    let recon = read_channels(&dir.join(&v.recon)).map_err(|e| e.to_string())?;
    if truth.dims != recon.dims || truth.channels != recon.channels {
        return Err(format!(
            "{}: {:?} x {} channels, but the reconstruction is {:?} x {}",
            v.truth, truth.dims, truth.channels, recon.dims, recon.channels
        ));
    }
    Ok(Voxels {
        step: v.step,
        channels: truth.channels,
        dims: truth.dims,
        truth: truth.data,
        recon: recon.data,
    })
}

/// Starts the app's log writer: lines arrive on a bounded channel and are appended on the
/// `workbench-log` thread, so the UI never waits on the file.
pub(crate) fn app_log(path: &Path) -> Option<Sender<String>> {
    let (tx, rx) = crossbeam_channel::bounded::<String>(256);
    let path = path.to_path_buf();
    std::thread::Builder::new()
        .name("workbench-log".into())
        .spawn(move || {
            use std::io::Write as _;
            if let Some(dir) = path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let Ok(mut file) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
            else {
                return;
            };
            for line in rx {
                let _ = writeln!(file, "{line}");
            }
        })
        .ok()?;
    Some(tx)
}
