//! The app's file work, off the UI thread: loading and saving presets, imports and exports
//! through the dialogs; each job runs through `background()` and hands an [`IoDone`] back to
//! `logic()`.

use std::path::{Path, PathBuf};

use crate::gui::actions::{FrameSource, Purpose, UiAction};
use crate::gui::editor::{scan_library, PresetEditor};
use crate::gui::panels::dashboard::series_csv;
use crate::gui::sources::shown_runs;

use super::jobs::{background, take_all, IoDone};
use super::state::WorkbenchApp;

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
    /// Takes the results of finished file jobs.
    pub(crate) fn poll_io(&mut self) {
        for done in take_all(&mut self.jobs.io) {
            match done {
                Ok(done) => self.io_done(done),
                Err(e) => self.message = Some((true, format!("a file job failed: {e}"))),
            }
        }
    }

    pub(crate) fn io_done(&mut self, done: IoDone) {
        let message = match done {
            IoDone::Loaded(Ok(ed)) => {
                let shown = ed
                    .source
                    .as_ref()
                    .map(|p| format!("loaded {}", p.display()))
                    .unwrap_or_default();
                self.presets.editor = *ed;
                Ok(shown)
            }
            IoDone::Loaded(Err(m)) | IoDone::Compare(Err(m)) => Err(m),
            IoDone::Compare(Ok(with)) => {
                self.presets.editor.compare_with = Some(with);
                return;
            }
            IoDone::Saved(Ok((path, library))) => {
                self.presets.library = library;
                let m = format!("saved {}", path.display());
                self.presets.editor.source = Some(path);
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
            Purpose::ExportPreset => match self.presets.editor.to_ron() {
                Some(text) => Box::new(write(text.into_bytes(), path)),
                None => {
                    self.message =
                        Some((true, "the preset does not parse; nothing written".into()));
                    return;
                }
            },
            Purpose::ExportPlotCsv(name) => Box::new(write(
                series_csv(&name, &shown_runs(&self.runs, self.current)).into_bytes(),
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
                self.gaad.source = FrameSource::file(path.clone());
                self.message = Some((false, format!("inspecting {}", path.display())));
                return;
            }
        };
        self.jobs
            .io
            .push(background("workbench-io", self.waker.clone(), job));
    }

    /// The sample shown in the Samples tab, as what exporting it needs.
    fn sample_to_export(&self) -> Result<SampleExport, &'static str> {
        let run = self.current_run().ok_or("no run")?;
        let s = run
            .view
            .samples
            .get(self.samples.viewer.index)
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
        let name = crate::core::rundir::safe_file_name(&self.presets.editor.save_as_name);
        let Some(text) = self.presets.editor.to_ron() else {
            self.message = Some((true, "the preset does not parse; nothing saved".into()));
            return;
        };
        let dir = self.opts.user_presets_dir.clone();
        self.jobs
            .io
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
