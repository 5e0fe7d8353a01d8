//! Native file dialogs (rfd) off the UI thread. A dialog runs on its own named thread and
//! sends the chosen path back over a bounded channel; the app polls it each frame, so egui
//! keeps repainting while the dialog is open. Tests answer dialogs with [`Dialogs::answer`].

use std::path::PathBuf;

use crossbeam_channel::{bounded, Receiver, TryRecvError};

use crate::gui::actions::{Purpose, VIDEO_EXTENSIONS};

/// A dialog's title.
fn title(purpose: &Purpose) -> &'static str {
    match purpose {
        Purpose::ImportPreset => "Import a preset",
        Purpose::ExportPreset => "Export the preset",
        Purpose::OpenRun => "Open a run folder",
        Purpose::ExportPlotCsv(_) => "Export the plot's data as CSV",
        Purpose::ExportPlotPng(_) => "Export the plot as PNG",
        Purpose::ExportSample => "Export the sample grid as PNG",
        Purpose::GaadImage => "Open an image or a video to decompose",
    }
}

/// The one dialog that may be open at a time.
#[derive(Debug, Default)]
pub struct Dialogs {
    pending: Option<(Purpose, Receiver<Option<PathBuf>>)>,
    /// Answers queued by tests (or scripted runs) instead of opening a native dialog.
    scripted: Vec<(Purpose, Option<PathBuf>)>,
}

impl Dialogs {
    #[must_use]
    pub fn is_open(&self) -> bool {
        self.pending.is_some()
    }

    /// Opens a dialog for `purpose` unless one is open already. `default_name` seeds a save
    /// dialog.
    pub fn open(&mut self, purpose: Purpose, default_name: &str) {
        if self.pending.is_some() {
            return;
        }
        let (tx, rx) = bounded(1);
        if self.scripted.iter().any(|(p, _)| *p == purpose) {
            // Answered by a script: no native dialog.
            self.pending = Some((purpose, rx));
            return;
        }
        let save = matches!(
            purpose,
            Purpose::ExportPreset
                | Purpose::ExportPlotCsv(_)
                | Purpose::ExportPlotPng(_)
                | Purpose::ExportSample
        );
        let title = title(&purpose);
        let name = default_name.to_string();
        let folder = matches!(purpose, Purpose::OpenRun);
        let filter: Option<(&str, Vec<&str>)> = match &purpose {
            Purpose::ImportPreset | Purpose::ExportPreset => Some(("RON preset", vec!["ron"])),
            Purpose::ExportPlotCsv(_) => Some(("CSV", vec!["csv"])),
            Purpose::ExportPlotPng(_) | Purpose::ExportSample => Some(("PNG", vec!["png"])),
            Purpose::OpenRun => None,
            Purpose::GaadImage => Some((
                "Images and videos",
                ["png", "jpg", "jpeg"]
                    .into_iter()
                    .chain(VIDEO_EXTENSIONS.iter().copied())
                    .collect(),
            )),
        };
        let spawned = std::thread::Builder::new()
            .name("workbench-dialog".into())
            .spawn(move || {
                let mut d = rfd::FileDialog::new().set_title(title);
                if let Some((label, ext)) = filter {
                    d = d.add_filter(label, &ext);
                }
                let chosen = if folder {
                    d.pick_folder()
                } else if save {
                    d.set_file_name(&name).save_file()
                } else {
                    d.pick_file()
                };
                let _ = tx.send(chosen);
            });
        if spawned.is_ok() {
            self.pending = Some((purpose, rx));
        }
    }

    /// Queues the answer to the next dialog of `purpose` (tests, scripted runs).
    pub fn answer(&mut self, purpose: Purpose, path: Option<PathBuf>) {
        self.scripted.push((purpose, path));
    }

    /// The finished dialog's purpose and chosen path, if one finished since the last poll.
    pub fn poll(&mut self) -> Option<(Purpose, PathBuf)> {
        if let Some(i) = self
            .scripted
            .iter()
            .position(|(p, _)| self.pending.as_ref().is_none_or(|(q, _)| q == p))
        {
            let (purpose, path) = self.scripted.remove(i);
            self.pending = None;
            return path.map(|p| (purpose, p));
        }
        let (_, rx) = self.pending.as_ref()?;
        match rx.try_recv() {
            Ok(chosen) => {
                let (purpose, _) = self.pending.take()?;
                chosen.map(|p| (purpose, p))
            }
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => {
                self.pending = None;
                None
            }
        }
    }
}
