//! The app's file work, off the UI thread: loading and saving presets, imports and exports
//! through the dialogs, the dashboard layouts; each job runs through `background()` and hands
//! an [`IoDone`] back to `logic()`.

use std::path::{Path, PathBuf};

use super::actions::{background, UiAction};
use super::app::WorkbenchApp;
use super::dashboard::series_csv;
use super::dialogs::Purpose;
use super::editor::{scan_library, LibraryEntry, PresetEditor};

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

/// A sample to export: its file in the run folder, or its pixels when the file is gone.
#[derive(Debug)]
struct SampleExport {
    file: PathBuf,
    rgba: Vec<u8>,
    size: (u32, u32),
}

impl SampleExport {
    fn write(&self, path: &Path) -> Result<String, String> {
        if self.file.is_file() {
            std::fs::copy(&self.file, path).map_err(|e| format!("{}: {e}", path.display()))?;
        } else {
            image::save_buffer(
                path,
                &self.rgba,
                self.size.0,
                self.size.1,
                image::ExtendedColorType::Rgba8,
            )
            .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(format!("wrote {}", path.display()))
    }
}

impl WorkbenchApp {
    /// Where the dashboard layouts are remembered: beside the user's preset folder
    /// (`~/.config/workbench/dashboard.json`).
    pub(crate) fn layout_path(&self) -> PathBuf {
        self.opts
            .user_presets_dir
            .parent()
            .unwrap_or(Path::new("."))
            .join("dashboard.json")
    }

    /// Takes the results of finished file jobs.
    pub(crate) fn poll_io(&mut self) {
        let mut still = Vec::new();
        for rx in std::mem::take(&mut self.io) {
            match rx.try_recv() {
                Ok(done) => self.io_done(done),
                Err(crossbeam_channel::TryRecvError::Empty) => still.push(rx),
                Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    self.message = Some((true, "a file job ended without a result".into()));
                }
            }
        }
        self.io = still;
    }

    pub(crate) fn io_done(&mut self, done: IoDone) {
        let message = match done {
            IoDone::Loaded(Ok(ed)) => {
                let shown = ed
                    .source
                    .as_ref()
                    .map(|p| format!("loaded {}", p.display()))
                    .unwrap_or_default();
                self.editor = *ed;
                Ok(shown)
            }
            IoDone::Loaded(Err(m)) | IoDone::Compare(Err(m)) => Err(m),
            IoDone::Compare(Ok(with)) => {
                self.editor.compare_with = Some(with);
                return;
            }
            IoDone::Saved(Ok((path, library))) => {
                self.library = library;
                let m = format!("saved {}", path.display());
                self.editor.source = Some(path);
                Ok(m)
            }
            IoDone::Saved(Err(m)) => Err(m),
            IoDone::Written(r) => r,
            IoDone::Quiet(Ok(())) => return,
            IoDone::Quiet(Err(m)) => Err(m),
        };
        self.message = Some(match message {
            Ok(m) => (false, m),
            Err(m) => (true, m),
        });
    }

    /// A dialog's chosen path: reads and writes go to a background thread.
    pub(crate) fn on_dialog(&mut self, purpose: Purpose, path: &Path) {
        let path = path.to_path_buf();
        let write = |bytes: Vec<u8>, path: PathBuf| {
            move || {
                IoDone::Written(
                    crate::core::rundir::atomic_write(&path, &bytes)
                        .map(|()| format!("wrote {}", path.display()))
                        .map_err(|e| e.to_string()),
                )
            }
        };
        let job: Box<dyn FnOnce() -> IoDone + Send> = match purpose {
            Purpose::ImportPreset => Box::new(move || {
                IoDone::Loaded(
                    std::fs::read_to_string(&path)
                        .map_err(|e| format!("{}: {e}", path.display()))
                        .and_then(|text| PresetEditor::load_text(&text, &path).map(Box::new)),
                )
            }),
            Purpose::ExportPreset => match self.editor.to_ron() {
                Some(text) => Box::new(write(text.into_bytes(), path)),
                None => {
                    self.message =
                        Some((true, "the preset does not parse; nothing written".into()));
                    return;
                }
            },
            Purpose::ExportPlotCsv(name) => Box::new(write(
                series_csv(&name, &self.shown_runs()).into_bytes(),
                path,
            )),
            Purpose::ExportSample => match self.sample_to_export() {
                Ok(sample) => Box::new(move || IoDone::Written(sample.write(&path))),
                Err(m) => {
                    self.message = Some((true, m.into()));
                    return;
                }
            },
            Purpose::OpenRun => {
                self.apply(UiAction::OpenRun(path.clone()));
                self.message = Some((false, format!("opened {}", path.display())));
                return;
            }
            Purpose::ExportPlotPng(name) => {
                self.pending_plot_png = Some((name, path.clone()));
                self.message = Some((false, format!("writing {}", path.display())));
                return;
            }
            Purpose::GaadImage => {
                self.gaad.open_image(path.clone());
                self.message = Some((false, format!("inspecting {}", path.display())));
                return;
            }
        };
        self.io
            .push(background("workbench-io", self.waker.clone(), job));
    }

    /// The sample shown in the Samples tab, as what exporting it needs.
    fn sample_to_export(&self) -> Result<SampleExport, &'static str> {
        let run = self.current_run().ok_or("no run")?;
        let s = run
            .view
            .samples
            .get(self.samples.index)
            .ok_or("no sample")?;
        Ok(SampleExport {
            file: run.dir.join(&s.path),
            rgba: s.rgba.clone(),
            size: (s.width, s.height),
        })
    }

    /// Saves the edited preset into the user's folder on a background thread, then rescans
    /// the library there.
    pub(crate) fn save_as(&mut self) {
        let name = crate::core::rundir::safe_file_name(&self.editor.save_as_name);
        let Some(text) = self.editor.to_ron() else {
            self.message = Some((true, "the preset does not parse; nothing saved".into()));
            return;
        };
        let dir = self.opts.user_presets_dir.clone();
        self.io
            .push(background("workbench-io", self.waker.clone(), move || {
                let path = dir.join(format!("{name}.ron"));
                IoDone::Saved(
                    std::fs::create_dir_all(&dir)
                        .map_err(|e| format!("{}: {e}", dir.display()))
                        .and_then(|()| {
                            crate::core::rundir::atomic_write(&path, text.as_bytes())
                                .map_err(|e| e.to_string())
                        })
                        .map(|()| (path, scan_library(&dir))),
                )
            }));
    }
}
