//! What the app does with the actions the panels return: the one place that starts runs,
//! threads and processes, follows run folders, and reads or writes files for a panel.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::core::preset::AnyPreset;
use crate::core::protocol::Command;
use crate::core::runtable::RunRow;
use crate::core::runview::RunView;
use crate::engine::worker::{self, RunRequest, WorkerHandle};
use crate::gui::actions::{ExploreRequest, QueueRequest, Tab, UiAction};
use crate::gui::editor::PresetEditor;
use crate::gui::sources::{Follower, Source, Tracked};

use super::jobs::{self, background, IoDone};
use super::queue::{self as queue_file, QueueEdit, QueueRequestBranch, SLURM_POLL};
use super::state::WorkbenchApp;

impl WorkbenchApp {
    /// Applies one action a panel (or a shortcut) returned.
    pub fn apply(&mut self, action: UiAction) {
        match action {
            UiAction::SetTab(t) => self.tab = t,
            UiAction::SetCursor(c) => self.cursor = c,
            UiAction::Start => self.start_run(),
            UiAction::Command(c) => self.command(c),
            UiAction::OpenRun(dir) => {
                self.open_run(&dir);
                self.tab = Tab::Dashboard;
            }
            UiAction::Overlay(dir, on) => self.overlay(&dir, on),
            UiAction::PlotGroup(dirs) => self.plot_group(&dirs),
            UiAction::Importance(key) => {
                let wanted: std::collections::HashSet<&PathBuf> = key.0.iter().collect();
                let rows: Vec<crate::core::runtable::RunRow> = self
                    .run_list
                    .iter()
                    .filter(|r| wanted.contains(&r.dir))
                    .cloned()
                    .collect();
                let log = rows
                    .first()
                    .map(|r| (*r.log_fields).clone())
                    .unwrap_or_default();
                let (fields, metric) = (key.1.clone(), key.2.clone());
                self.jobs.importance = Some((
                    key,
                    background("workbench-importance", self.waker.clone(), move || {
                        crate::core::runtable::importance(&rows, &fields, &metric, &log)
                    }),
                ));
            }
            UiAction::LoadPreset(i) => {
                let Some(e) = self.presets.library.get(i).cloned() else {
                    return;
                };
                self.jobs
                    .io
                    .push(background("workbench-io", self.waker.clone(), move || {
                        let origin = e.origin();
                        IoDone::Loaded(
                            e.text()
                                .and_then(|t| PresetEditor::load_text(&t, &origin).map(Box::new)),
                        )
                    }));
            }
            UiAction::SavePreset => self.save_as(),
            UiAction::CompareWith(None) => self.presets.editor.compare_with = None,
            UiAction::CompareWith(Some(i)) => {
                let Some(e) = self.presets.library.get(i).cloned() else {
                    return;
                };
                self.jobs
                    .io
                    .push(background("workbench-io", self.waker.clone(), move || {
                        IoDone::Compare(e.load().map(|p| (e.name.clone(), p.to_tree())))
                    }));
            }
            UiAction::Undo => {
                self.presets.editor.undo();
            }
            UiAction::Redo => {
                self.presets.editor.redo();
            }
            UiAction::SaveLayout => self.save_layout(),
            UiAction::Dialog(purpose, name) => self.dialogs.open(purpose, &name),
            UiAction::ToggleHelp => self.overlays.show_help = !self.overlays.show_help,
            UiAction::ToggleAbout => self.overlays.show_about = !self.overlays.show_about,
            UiAction::RefreshRuns => self.refresh_run_list(true),
            UiAction::AddRemote {
                destination,
                workbench,
                runs_dir,
            } => self.add_remote(&destination, &workbench, &runs_dir),
            UiAction::RemoteFromSlurmProfile => self.remote_from_slurm_profile(),
            UiAction::BranchAt(dir, step) => {
                self.runs_table.branching = Some(crate::gui::panels::runs::BranchForm {
                    parent: dir,
                    at: step.to_string(),
                    ..Default::default()
                });
                self.tab = Tab::Runs;
            }
            UiAction::Queue(request) => self.queue_request(request),
            UiAction::StartRunner(n) => self.start_runner(n),
            UiAction::OpenExplorer(dir) => self.open_explorer(dir),
            UiAction::Explore(req) => self.explore(req),
            UiAction::LoadVolume(dir, v) => {
                let key = dir.display().to_string();
                let remote = self.remote_source(&dir);
                self.jobs.volumes.push(background(
                    "workbench-volume-read",
                    self.waker.clone(),
                    move || {
                        // A remote run's two files come over a connection of their own first.
                        let voxels = match remote {
                            Some((argv, run)) => {
                                jobs::fetch_into(&argv, &run, &[v.truth.clone(), v.recon.clone()])
                                    .and_then(|mirror| {
                                        let read = jobs::read_volume_pair(&mirror, &v);
                                        let _ = std::fs::remove_file(mirror.join(&v.truth));
                                        let _ = std::fs::remove_file(mirror.join(&v.recon));
                                        read
                                    })
                            }
                            None => jobs::read_volume_pair(&dir, &v),
                        };
                        (key, v.step, voxels)
                    },
                ));
            }
            UiAction::LoadFrame(source) => {
                self.jobs.frames.push(background(
                    "workbench-video",
                    self.waker.clone(),
                    move || {
                        let frame = jobs::load_frame(&source);
                        (source, frame)
                    },
                ));
            }
            UiAction::LoadImage(path) => {
                if self.images.start(&path) {
                    // A remote run's image comes over its connection's command line.
                    let remote = self.runs.iter().find_map(|r| match &r.source {
                        Source::Remote(f) => path
                            .strip_prefix(&r.dir)
                            .ok()
                            .map(|rel| (f.argv.clone(), f.run.clone(), rel.to_path_buf())),
                        _ => None,
                    });
                    self.jobs.images.push(background(
                        "workbench-image",
                        self.waker.clone(),
                        move || {
                            let img = match &remote {
                                Some((argv, run, rel)) => jobs::fetch_image(argv, run, rel),
                                None => jobs::decode_image(&path),
                            };
                            (path, img)
                        },
                    ));
                }
            }
        }
    }

    /// Starts training the edited preset: the run is prepared (device probe, data checks, run
    /// folder) and its worker spawned on a background thread; `logic()` picks the run up.
    pub fn start_run(&mut self) {
        // Every way of starting (button, shortcut, --start) goes through here: one run at a
        // time, and none while one is being prepared.
        if self.jobs.starting.is_some() || self.training_run().is_some() {
            return;
        }
        if let Some(why) = self.presets.editor.start_blocker() {
            self.message = Some((true, format!("cannot start: {why}")));
            return;
        }
        let Some(preset) = self.presets.editor.validated.clone() else {
            return;
        };
        let req = RunRequest {
            preset: Some(preset),
            runs_dir: self.opts.runs_dir.clone(),
            step_limit: self.opts.step_limit,
            ..RunRequest::default()
        };
        let waker = self.waker.clone();
        self.jobs.starting = Some(background(
            "workbench-start",
            self.waker.clone(),
            move || {
                worker::prepare(req)
                    .and_then(|plan| worker::spawn(plan, waker))
                    .map_err(|e| e.to_string())
            },
        ));
        self.message = Some((false, "starting: checking the device and the data".into()));
    }

    /// A prepared run (or why it could not start).
    pub(crate) fn started(&mut self, result: Result<WorkerHandle, String>) {
        match result {
            Ok(handle) => {
                let dir = handle.run_dir().to_path_buf();
                let live = self
                    .presets
                    .editor
                    .preset()
                    .map(|p| live_fields(&p))
                    .unwrap_or_default();
                self.add_run(dir, Source::Live(handle));
                if let Some(r) = self.runs.last_mut() {
                    r.live = live;
                }
                self.message = None;
                self.cursor = None;
                self.tab = Tab::Dashboard;
            }
            Err(e) => self.message = Some((true, format!("cannot start: {e}"))),
        }
    }

    /// Sends a command to the live run.
    pub fn command(&mut self, c: Command) {
        if let Some(h) = self.live_handle() {
            if !h.send(c) {
                self.message = Some((true, "the worker is not accepting commands".into()));
            }
            return;
        }
        if let Some(Source::Remote(r)) = self.current_run().map(|r| &r.source) {
            if !r.send(c) {
                self.message = Some((true, "the remote connection is not taking commands".into()));
            }
            return;
        }
        // A run started elsewhere (a shell, the queue, SLURM) takes commands through its
        // folder's inbox, between steps.
        match self.followed_running() {
            Some(dir) => match crate::core::inbox::send(&dir, &c, false) {
                Ok(_) => {
                    self.message = Some((
                        false,
                        format!("sent to {}: it applies it between steps", dir.display()),
                    ));
                }
                Err(e) => self.message = Some((true, format!("sending the command: {e}"))),
            },
            None => self.message = Some((true, "no running run to command".into())),
        }
    }

    /// Lists a remote's runs on a background thread (a new destination joins the remotes).
    pub fn add_remote(&mut self, destination: &str, workbench: &str, runs_dir: &str) {
        let destination = destination.trim();
        if destination.is_empty() {
            self.message = Some((
                true,
                "name an SSH destination (user@host, or a Host of ~/.ssh/config)".into(),
            ));
            return;
        }
        let workbench = if workbench.trim().is_empty() {
            "workbench"
        } else {
            workbench.trim()
        };
        let argv =
            crate::core::remote::ssh_argv(&self.remote_ssh, destination, workbench, runs_dir);
        let i = match self
            .remotes
            .iter()
            .position(|r| r.destination == destination)
        {
            Some(i) => {
                self.remotes[i].argv.clone_from(&argv);
                i
            }
            None => {
                self.remotes.push(crate::gui::sources::RemoteSite {
                    destination: destination.to_string(),
                    argv: argv.clone(),
                    rows: Vec::new(),
                    error: None,
                    listing: false,
                });
                self.remotes.len() - 1
            }
        };
        self.remotes[i].listing = true;
        self.jobs.remote_lists.push(super::jobs::background(
            "workbench-remote-list",
            self.waker.clone(),
            move || {
                (
                    i,
                    crate::core::remote::rows(&argv).map_err(|e| e.to_string()),
                )
            },
        ));
    }

    /// The remote of the Queue tab's SLURM profile: its login node (`ssh`), its `workbench`
    /// (this binary's path when empty, as a job finds it on shared storage) and the runs
    /// folder its jobs write to (this app's, as submitted), filled in and listed.
    fn remote_from_slurm_profile(&mut self) {
        let path = self.queue.slurm_profile.trim().to_string();
        if path.is_empty() {
            self.message = Some((true, "name a SLURM profile in the Queue tab first".into()));
            return;
        }
        let profile = match crate::core::slurm::Profile::load(Path::new(&path)) {
            Ok(p) => p,
            Err(e) => {
                self.message = Some((true, e.to_string()));
                return;
            }
        };
        if profile.ssh.trim().is_empty() {
            self.message = Some((
                true,
                format!("{path}: no `ssh` destination: its jobs are submitted from this machine, whose runs folder the table already shows"),
            ));
            return;
        }
        let workbench = if profile.workbench.trim().is_empty() {
            std::env::current_exe()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "workbench".into())
        } else {
            profile.workbench.clone()
        };
        let runs_dir = crate::core::rundir::absolute(&self.opts.runs_dir)
            .display()
            .to_string();
        self.runs_table.remote_destination.clone_from(&profile.ssh);
        self.runs_table.remote_workbench.clone_from(&workbench);
        self.runs_table.remote_runs_dir.clone_from(&runs_dir);
        self.add_remote(&profile.ssh, &workbench, &runs_dir);
    }

    /// Follows a remote's run over its own connection.
    pub fn open_remote(&mut self, site: usize, run: &str) {
        let Some(s) = self.remotes.get(site) else {
            return;
        };
        let dir = std::path::PathBuf::from(format!("{}:{run}", s.destination));
        if let Some(i) = self.runs.iter().position(|r| r.dir == dir) {
            self.current = Some(i);
            return;
        }
        match crate::gui::sources::RemoteFollower::spawn(
            s.argv.clone(),
            run.to_string(),
            self.waker.clone(),
        ) {
            Ok(f) => self.add_run(dir, Source::Remote(f)),
            Err(e) => self.message = Some((true, format!("cannot follow {}: {e}", dir.display()))),
        }
    }

    /// The remote and folder of a remote's row (`DESTINATION:FOLDER`), if `dir` is one.
    fn remote_of(&self, dir: &Path) -> Option<(usize, String)> {
        let text = dir.to_string_lossy();
        self.remotes.iter().enumerate().find_map(|(i, s)| {
            text.strip_prefix(&format!("{}:", s.destination))
                .filter(|run| s.rows.iter().any(|r| r.dir == dir) && !run.is_empty())
                .map(|run| (i, run.to_string()))
        })
    }

    /// Opens a run folder and follows its event log (live or finished); a remote's row is
    /// followed over its connection.
    pub fn open_run(&mut self, dir: &Path) {
        if let Some(i) = self.runs.iter().position(|r| r.dir == dir) {
            self.current = Some(i);
            return;
        }
        if let Some((site, run)) = self.remote_of(dir) {
            self.open_remote(site, &run);
            return;
        }
        let log = dir.join("events.log");
        if !log.is_file() {
            self.message = Some((
                true,
                format!("{}: not a run folder (no events.log)", dir.display()),
            ));
            return;
        }
        match Follower::spawn(log, self.waker.clone()) {
            Ok(f) => self.add_run(dir.to_path_buf(), Source::Follow(f)),
            Err(e) => self.message = Some((true, format!("cannot follow {}: {e}", dir.display()))),
        }
    }

    /// Overlays a run's curves (following it in the background: the run shown stays shown).
    pub(crate) fn overlay(&mut self, dir: &Path, on: bool) {
        let shown = self.current;
        if on && !self.runs.iter().any(|r| r.dir == dir) {
            self.open_run(dir);
            if shown.is_some() {
                self.current = shown;
            }
        }
        if let Some(t) = self.runs.iter_mut().find(|r| r.dir == dir) {
            t.overlay = on;
        }
    }

    /// Overlays every run of a group as one band: a mean line and a min-max band on every
    /// plot, in the first run's colour. The group's runs are followed like any overlay.
    fn plot_group(&mut self, dirs: &[PathBuf]) {
        let band = dirs.first().map(|d| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            std::hash::Hash::hash(d, &mut h);
            std::hash::Hasher::finish(&h) as usize
        });
        for dir in dirs {
            self.overlay(dir, true);
            if let Some(t) = self.runs.iter_mut().find(|r| r.dir == *dir) {
                t.band = band;
            }
        }
    }

    /// A branch shown as the primary run brings its parent's curve up to the fork (once per
    /// branch: untick the parent's overlay and it stays off).
    pub(crate) fn show_branch_parent(&mut self) {
        let Some(run) = self.current.and_then(|i| self.runs.get(i)) else {
            return;
        };
        let Some(b) = run.view.branch_of.clone() else {
            return;
        };
        if !self.parents_shown.insert(run.key) {
            return;
        }
        let parent = PathBuf::from(&b.parent);
        self.overlay(&parent, true);
        if let Some(t) = self.runs.iter_mut().find(|r| r.dir == parent) {
            t.before = Some(b.fork_step);
        }
    }

    /// Shows an already built view as the primary run (benchmarks, tests).
    pub fn show_view(&mut self, view: RunView) {
        let dir = PathBuf::from(&view.run_dir);
        self.add_run(dir, Source::Detached);
        if let Some(r) = self.runs.last_mut() {
            r.view = view;
        }
    }

    fn add_run(&mut self, dir: PathBuf, source: Source) {
        let key = self.next_key;
        self.next_key += 1;
        let mut view = RunView::default();
        view.run_dir = dir.display().to_string();
        view.name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.runs.push(Tracked {
            key,
            dir,
            view,
            source,
            overlay: false,
            color: crate::gui::style::palette(key),
            before: None,
            band: None,
            down: None,
            live: Vec::new(),
        });
        self.current = Some(self.runs.len() - 1);
        self.read_live_fields();
    }

    /// The top bar's live fields show the shown run's: its phase's values with the live edits
    /// made since the phase started, read again when another run is shown, a phase starts or
    /// an edit is logged.
    pub(crate) fn sync_live_values(&mut self) {
        let Some(r) = self.current_run() else {
            return;
        };
        let phase = r.view.phase.as_ref().map_or(0, |(i, _)| *i);
        let key = (r.key, r.live.len(), r.view.hyper_edits);
        if self.controls.live_of == Some(key) {
            return;
        }
        let Some(values) = r.live.get(phase).or(r.live.first()) else {
            self.controls.live_values.clear();
            self.controls.live_of = Some(key);
            return;
        };
        self.controls.live_values = values
            .iter()
            .map(|(k, v)| (k.clone(), r.view.hyper.get(k).copied().unwrap_or(*v)))
            .collect();
        self.controls.live_of = Some(key);
    }

    /// Reads the live fields of the run just added, when it was started elsewhere: its
    /// `preset.ron` from its folder, or over its remote's connection.
    fn read_live_fields(&mut self) {
        let Some(r) = self.runs.last() else {
            return;
        };
        let dir = r.dir.clone();
        let read: Box<dyn FnOnce() -> Result<Vec<u8>, String> + Send> = match &r.source {
            Source::Live(_) => return,
            Source::Remote(f) => {
                let (argv, run) = (f.argv.clone(), f.run.clone());
                Box::new(move || super::jobs::fetch_file(&argv, &run, Path::new("preset.ron")))
            }
            _ => {
                let path = dir.join("preset.ron");
                Box::new(move || {
                    std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))
                })
            }
        };
        self.jobs
            .live_fields
            .push(background("workbench-io", self.waker.clone(), move || {
                let fields = read().and_then(|bytes| {
                    let text = String::from_utf8_lossy(&bytes);
                    crate::core::preset::parse_str(&text, "preset.ron")
                        .map(|(p, _)| live_fields(&p))
                        .map_err(|e| e.to_string())
                });
                (dir, fields)
            }));
    }

    /// Saves the dashboard layouts, quietly: a layout is not worth a message.
    fn save_layout(&mut self) {
        let path = self.layout_path();
        let text = serde_json::to_string_pretty(&self.dashboard.layouts).unwrap_or_default();
        self.jobs
            .io
            .push(background("workbench-io", self.waker.clone(), move || {
                let saved = path
                    .parent()
                    .map_or(Ok(()), std::fs::create_dir_all)
                    .map_err(|e| e.to_string())
                    .and_then(|()| {
                        crate::core::rundir::atomic_write(&path, text.as_bytes())
                            .map_err(|e| e.to_string())
                    });
                IoDone::Quiet(saved.map_err(|e| format!("{}: {e}", path.display())))
            }));
    }

    /// Replaces the runs table's rows (what a read of the folder brings; benchmarks).
    pub fn set_run_list(&mut self, rows: Vec<RunRow>) {
        self.set_local_rows(rows);
        self.jobs.run_list_at = Some(Instant::now());
    }

    /// The table's rows: this machine's, then each remote's as last listed.
    pub(crate) fn set_local_rows(&mut self, mut rows: Vec<RunRow>) {
        rows.extend(self.remotes.iter().flat_map(|s| s.rows.iter().cloned()));
        self.run_list = rows;
        self.runs_table.rows_changed();
    }

    /// A remote's listing changed: its rows in the table are replaced.
    pub(crate) fn remote_rows_changed(&mut self) {
        let local: Vec<RunRow> = self
            .run_list
            .drain(..)
            .filter(|r| r.machine.is_none())
            .collect();
        self.set_local_rows(local);
    }

    /// Re-reads the runs folder at most every two seconds (only what each log gained).
    pub fn refresh_run_list(&mut self, force: bool) {
        if self.jobs.run_list.is_some()
            || (!force
                && self
                    .jobs
                    .run_list_at
                    .is_some_and(|t| t.elapsed() < Duration::from_secs(2)))
        {
            return;
        }
        self.jobs.run_list_at = Some(Instant::now());
        let dir = self.opts.runs_dir.clone();
        let index = Arc::clone(&self.jobs.run_index);
        self.jobs.run_list = Some(background(
            "workbench-runs",
            self.waker.clone(),
            move || match index.lock() {
                Ok(mut i) => i.refresh(&dir),
                Err(poisoned) => poisoned.into_inner().refresh(&dir),
            },
        ));
    }

    fn queue_request(&mut self, request: QueueRequest) {
        let slurm = self.slurm_target();
        let preset = || self.presets.editor.preset().map(Box::new);
        let edit = match request {
            QueueRequest::AddPreset => match preset() {
                Some(p) => QueueEdit::AddPreset(p, slurm),
                None => {
                    self.queue.error = Some("the edited preset does not validate".into());
                    return;
                }
            },
            QueueRequest::AddSweep { field, values } => match preset() {
                Some(base) => QueueEdit::AddSweep {
                    base,
                    field,
                    values,
                    slurm,
                },
                None => {
                    self.queue.error = Some("the edited preset does not validate".into());
                    return;
                }
            },
            QueueRequest::Cancel(id) => QueueEdit::Cancel(id),
            QueueRequest::Move(id, by) => QueueEdit::Move(id, by),
            QueueRequest::Pause(on) => QueueEdit::Pause(on),
            QueueRequest::Promote(run) => QueueEdit::Promote(run, slurm),
            QueueRequest::Branch {
                parent,
                at,
                set,
                name,
                overlay,
            } => QueueEdit::Branch {
                request: Box::new(QueueRequestBranch {
                    parent,
                    at,
                    set,
                    name,
                    overlay,
                }),
                slurm,
            },
        };
        self.refresh_queue(Some(edit));
    }

    /// Reads the queue file at most every two seconds (asking SLURM at most every
    /// [`SLURM_POLL`]), or applies an edit (after the read or edit under way), off the UI
    /// thread.
    pub(crate) fn refresh_queue(&mut self, edit: Option<QueueEdit>) {
        if self.jobs.queue.is_some() {
            // One at a time: an edit waits for the read or edit under way.
            self.jobs.queue_edits.extend(edit);
            return;
        }
        let edit = edit.or_else(|| {
            (!self.jobs.queue_edits.is_empty()).then(|| self.jobs.queue_edits.remove(0))
        });
        if edit.is_none()
            && self
                .jobs
                .queue_at
                .is_some_and(|t| t.elapsed() < Duration::from_secs(2))
        {
            return;
        }
        self.jobs.queue_at = Some(Instant::now());
        let path = self.opts.runs_dir.join("queue.json");
        let runs_dir = self.opts.runs_dir.clone();
        let every = self.slurm_every.unwrap_or(SLURM_POLL);
        let ask_slurm = edit.is_some() || self.jobs.slurm_at.is_none_or(|t| t.elapsed() >= every);
        if ask_slurm {
            self.jobs.slurm_at = Some(Instant::now());
        }
        self.jobs.queue = Some(background(
            "workbench-queue",
            self.waker.clone(),
            move || {
                let said = match edit {
                    Some(e) => Some(queue_file::apply(&path, &runs_dir, e)?),
                    None => None,
                };
                let (q, runner) = queue_file::read(&path, &runs_dir, ask_slurm)?;
                Ok((q, runner, said))
            },
        ));
    }

    /// The SLURM profile and the `workbench` its jobs run, when the Queue tab names a profile.
    fn slurm_target(&self) -> Option<(PathBuf, PathBuf)> {
        let profile = self.queue.slurm_profile.trim();
        if profile.is_empty() {
            return None;
        }
        let exe = self
            .queue
            .runner
            .clone()
            .or_else(|| std::env::current_exe().ok())?;
        Some((PathBuf::from(profile), exe))
    }

    /// Starts `workbench queue run` as a process of its own (its own process group, output in
    /// `RUNS_DIR/queue/runner.log`): it trains the pending jobs and keeps going after the app
    /// closes, and its jobs after it.
    fn start_runner(&mut self, jobs: usize) {
        let exe = match &self.queue.runner {
            Some(p) => Ok(p.clone()),
            None => std::env::current_exe().map_err(|e| e.to_string()),
        };
        let started = exe.and_then(|exe| {
            crate::core::jobs::start_runner(&exe, &self.opts.runs_dir, jobs.max(1))
                .map_err(|e| e.to_string())
        });
        self.queue.said = Some(match started {
            Ok(pid) => {
                self.queue.runner_active = true;
                format!("started a queue runner (process {pid})")
            }
            Err(e) => format!("cannot start a queue runner: {e}"),
        });
    }

    /// Loads the action explorer from a run folder's latest checkpoint, on the CPU.
    fn open_explorer(&mut self, dir: PathBuf) {
        self.jobs.explorer = None;
        self.jobs.next_explore = None;
        let key = dir.display().to_string();
        let remote = self.remote_source(&dir);
        self.jobs.opening = Some(background(
            "workbench-explore-open",
            self.waker.clone(),
            move || {
                // A remote run's latest checkpoint and preset are copied here first, and
                // removed once the explorer holds them.
                let opened = match remote {
                    Some((argv, run)) => jobs::fetch_checkpoint(&argv, &run).and_then(|mirror| {
                        let opened =
                            crate::engine::explore::open(&mirror).map_err(|e| e.to_string());
                        let _ = std::fs::remove_dir_all(&mirror);
                        opened
                    }),
                    None => crate::engine::explore::open(&dir).map_err(|e| e.to_string()),
                };
                (key, opened)
            },
        ));
    }

    /// How a followed remote run is reached: its remote's command line and its folder's
    /// name there.
    fn remote_source(&self, dir: &Path) -> Option<(Vec<String>, String)> {
        self.runs
            .iter()
            .find(|r| r.dir == dir)
            .and_then(|r| match &r.source {
                Source::Remote(f) => Some((f.argv.clone(), f.run.clone())),
                _ => None,
            })
    }

    /// Rolls the explorer out, or (while it is busy) keeps the request for when it is back.
    pub(crate) fn explore(&mut self, req: ExploreRequest) {
        let Some(mut e) = self.jobs.explorer.take() else {
            if self.jobs.exploring.is_some() || self.jobs.opening.is_some() {
                self.jobs.next_explore = Some(req);
            } else {
                self.explorer.decoded(Err("no explorer is loaded".into()));
            }
            return;
        };
        self.jobs.exploring = Some(background(
            "workbench-explore",
            self.waker.clone(),
            move || {
                let r = e
                    .explore(req.window, &req.action, req.steps, req.channel)
                    .map_err(|e| e.to_string());
                (e, r)
            },
        ));
    }
}

/// The live fields with their values in each phase (each phase starts from the preset with
/// its overrides, live edits before it undone, as the engine starts a phase); one entry for
/// a preset without phases.
fn live_fields(p: &AnyPreset) -> Vec<Vec<(String, f64)>> {
    let values = |p: &AnyPreset| {
        p.live_values()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect::<Vec<_>>()
    };
    if p.phases().is_empty() {
        vec![values(p)]
    } else {
        (0..p.phases().len())
            .map(|i| values(&p.for_phase(i)))
            .collect()
    }
}
