//! Everything between frames: apply what the panels asked for, drain the runs' events within a
//! time budget, take the results of finished jobs (and hand them to their panels), keep the
//! title and the app's log, the scripted quit and the screenshots.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::core::preset::Reports;
use crate::core::runtable::RunRow;
use crate::gui::actions::{capabilities, Tab};
use crate::gui::panels::explorer::ExplorerInfo;
use crate::gui::sources::{Follower, Source};

use super::jobs::{take, take_all};
use super::state::WorkbenchApp;

/// How long `logic()` may spend folding events per frame.
pub const EVENT_BUDGET: Duration = Duration::from_millis(8);

impl WorkbenchApp {
    /// Everything between frames: actions, events, jobs, dialogs, scripted quit and
    /// screenshots.
    pub fn logic(&mut self, ctx: &egui::Context) {
        // `--start` waits for the first frame, after a remembered state has been restored.
        if std::mem::take(&mut self.opts.start) {
            self.start_run();
        }
        for action in std::mem::take(&mut self.actions) {
            self.apply(action);
        }
        // The title names the run shown, or the preset being edited.
        let subject = self.current_run().map(|r| r.view.name.clone()).or_else(|| {
            self.presets.editor.tree["name"]
                .as_str()
                .map(str::to_string)
        });
        let title = window_title(subject.as_deref());
        if title != self.title {
            ctx.send_viewport_cmd(egui::ViewportCommand::Title(title.clone()));
            self.title = title;
        }
        self.poll_jobs();
        self.refresh_for_tab(ctx);
        self.log_message();
        if self.jobs.busy() {
            ctx.request_repaint_after(Duration::from_millis(50));
        }
        if self.drain(EVENT_BUDGET) {
            ctx.request_repaint();
        }
        self.show_branch_parent();
        self.overlay_started_branches(ctx);
        // Events left over after the frame budget: come back for them.
        if self
            .runs
            .iter()
            .any(|r| r.source.events().is_some_and(|rx| !rx.is_empty()))
        {
            ctx.request_repaint();
        }
        if let Some((purpose, path)) = self.dialogs.poll() {
            self.on_dialog(purpose, &path);
        }
        if self.dialogs.is_open() {
            ctx.request_repaint_after(Duration::from_millis(100));
        }
        self.screenshot_events(ctx);
        if let Some(after) = self.opts.quit_after {
            let elapsed = self.started_at.elapsed();
            if elapsed >= after {
                if self.opts.screenshot_dir.is_some() && !self.screenshots.done {
                    self.tour_step(ctx);
                } else {
                    ctx.send_viewport_cmd(egui::ViewportCommand::Close);
                }
            } else {
                ctx.request_repaint_after(after - elapsed);
            }
        }
    }

    /// What the run shown (or, with none, the edited preset's family) reports: the tabs shown.
    #[must_use]
    pub fn caps(&self) -> Reports {
        capabilities(
            self.current_run().map(|r| &r.view),
            self.presets.editor.family,
        )
    }

    /// Folds pending events into the run views for at most `budget`. Returns whether
    /// anything arrived.
    pub fn drain(&mut self, budget: Duration) -> bool {
        let t0 = Instant::now();
        let mut any = false;
        for run in &mut self.runs {
            if let Source::Remote(f) = &run.source {
                let down = f.down();
                if down != run.down {
                    any = true;
                    self.message = Some(match &down {
                        Some(why) => (
                            true,
                            format!(
                                "{}: connection lost ({why}); reconnecting",
                                run.dir.display()
                            ),
                        ),
                        None => (false, format!("{}: connected", run.dir.display())),
                    });
                }
                run.down = down;
            }
            let preview = match &run.source {
                Source::Follow(f) => f.take_preview(),
                Source::Remote(f) => f.take_preview(),
                _ => None,
            };
            if let Some(p) = preview {
                run.view.begin_preview(&p);
                any = true;
            }
            let Some(rx) = run.source.events() else {
                continue;
            };
            while t0.elapsed() < budget {
                let Ok(ev) = rx.try_recv() else { break };
                run.view.apply(ev, Some(Instant::now()));
                any = true;
            }
            // The log is read: its series replace the pyramids shown meanwhile.
            let caught_up = match &run.source {
                Source::Follow(f) => f.caught_up(),
                Source::Remote(f) => f.caught_up(),
                _ => false,
            };
            if caught_up && run.view.in_preview() {
                run.view.end_preview();
                any = true;
            }
            if let Source::Follow(f) = &mut run.source {
                if caught_up && !f.lod_checked {
                    f.lod_checked = true;
                    refresh_pyramids(&run.dir, &run.view, f);
                }
            }
        }
        any
    }

    /// The tab shown keeps its data fresh: the runs folder every two seconds, the queue file
    /// every two seconds (SLURM every 30), the devices once for the About window.
    fn refresh_for_tab(&mut self, ctx: &egui::Context) {
        match self.tab {
            Tab::Runs => self.refresh_run_list(false),
            Tab::Queue => {
                self.refresh_queue(None);
                ctx.request_repaint_after(Duration::from_secs(2));
            }
            _ => {}
        }
        if self.overlays.show_about && self.about_device.is_none() && self.jobs.about.is_none() {
            self.jobs.about = Some(super::jobs::background(
                "workbench-devices",
                self.waker.clone(),
                crate::engine::worker::describe_devices,
            ));
        }
    }

    /// Takes the results of finished jobs and hands each to whoever asked.
    fn poll_jobs(&mut self) {
        if let Some(result) = take(&mut self.jobs.starting) {
            self.started(result.and_then(|r| r));
        }
        self.poll_io();
        if let Some(Ok(d)) = take(&mut self.jobs.about) {
            self.about_device = Some(d);
        }
        if let Some((key, rx)) = &self.jobs.importance {
            match rx.try_recv() {
                Ok(done) => {
                    self.runs_table.importance = Some((key.clone(), done));
                    self.jobs.importance = None;
                }
                Err(crossbeam_channel::TryRecvError::Disconnected) => self.jobs.importance = None,
                Err(crossbeam_channel::TryRecvError::Empty) => {}
            }
        }
        for done in take_all(&mut self.jobs.remote_lists) {
            match done {
                Ok((i, listed)) => {
                    if let Some(site) = self.remotes.get_mut(i) {
                        site.listing = false;
                        match listed {
                            Ok(rows) => {
                                let machine = site.destination.clone();
                                site.rows = rows
                                    .into_iter()
                                    .map(|w| RunRow::from_wire(&machine, w))
                                    .collect();
                                site.error = None;
                            }
                            Err(e) => site.error = Some(e),
                        }
                        self.remote_rows_changed();
                    }
                }
                Err(e) => self.message = Some((true, format!("listing a remote: {e}"))),
            }
        }
        for done in take_all(&mut self.jobs.live_fields) {
            // A preset that does not read leaves the fields empty: `runs control RUN set`
            // still edits the run.
            if let Ok((dir, Ok(live))) = done {
                if let Some(r) = self.runs.iter_mut().find(|r| r.dir == dir) {
                    r.live = live;
                }
            }
        }
        self.sync_live_values();
        if let Some(Ok(rows)) = take(&mut self.jobs.run_list) {
            self.set_local_rows(rows);
        }
        if let Some(reply) = take(&mut self.jobs.queue) {
            match reply.and_then(|r| r) {
                Ok((q, runner, said)) => {
                    self.queue.queue = q;
                    self.queue.runner_active = runner;
                    self.queue.error = None;
                    if let Some(a) = said {
                        self.queue.said = Some(a.said);
                        // An A/B branch joins the dashboard beside the run it came from.
                        if let Some(dir) = a.overlay {
                            self.overlay_pending.push(dir);
                        }
                    }
                }
                Err(e) => self.queue.error = Some(e),
            }
            if !self.jobs.queue_edits.is_empty() {
                self.refresh_queue(None);
            }
        }
        self.poll_explorer();
        for done in take_all(&mut self.jobs.volumes) {
            match done {
                Ok((key, step, voxels)) => self.volume.loaded(key, step, voxels),
                Err(e) => self.message = Some((true, format!("reading a volume: {e}"))),
            }
        }
        for done in take_all(&mut self.jobs.frames) {
            match done {
                Ok((source, frame)) => self.gaad.frame_loaded(source, frame),
                Err(e) => self.gaad.error = Some(e),
            }
        }
        for (path, img) in take_all(&mut self.jobs.images).into_iter().flatten() {
            self.images.finish(path, img.map(Arc::new));
        }
    }

    /// The explorer loaded or back from a rollout; the next rollout asked for meanwhile.
    fn poll_explorer(&mut self) {
        if let Some(opened) = take(&mut self.jobs.opening) {
            match opened {
                Ok((dir, Ok(e))) => {
                    let info = ExplorerInfo {
                        windows: e.windows(),
                        codebook_size: e.codebook_size(),
                        slots: e.slots(),
                        max_steps: e.max_steps(),
                        channels: e.channels(),
                        describe: e.describe(),
                    };
                    self.jobs.explorer = Some(e);
                    self.explorer.opened(&dir, Ok(info));
                }
                Ok((dir, Err(why))) => self.explorer.opened(&dir, Err(why)),
                Err(why) => self.explorer.decoded(Err(why)),
            }
        }
        if let Some(rolled) = take(&mut self.jobs.exploring) {
            match rolled {
                Ok((e, result)) => {
                    self.jobs.explorer = Some(e);
                    self.explorer.decoded(result);
                }
                Err(why) => self.explorer.decoded(Err(why)),
            }
        }
        if self.jobs.exploring.is_none() {
            if let Some(req) = self.jobs.next_explore.take() {
                self.explore(req);
            }
        }
    }

    /// Appends a new status message to the app's log.
    fn log_message(&mut self) {
        if self.message == self.logged {
            return;
        }
        if let (Some(tx), Some((error, text))) = (&self.log_tx, &self.message) {
            let level = if *error { "error" } else { "info" };
            let stamp = crate::core::timefmt::readable_utc(crate::core::timefmt::unix_now() as u64);
            let _ = tx.try_send(format!("{stamp} UTC {level}: {text}"));
        }
        self.logged = self.message.clone();
    }
}

/// The window title: the app, and the run or preset it shows.
#[must_use]
pub fn window_title(subject: Option<&str>) -> String {
    match subject {
        Some(s) if !s.is_empty() => format!("{s} - Generative Workbench"),
        _ => "Generative Workbench".to_string(),
    }
}

impl WorkbenchApp {
    /// Overlays each pending branch once its run log appears (looked for every second while
    /// any is pending): a queued branch joins the dashboard when it starts training.
    fn overlay_started_branches(&mut self, ctx: &egui::Context) {
        if self.overlay_pending.is_empty()
            || self
                .overlay_checked
                .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        self.overlay_checked = Some(Instant::now());
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.overlay_pending)
            .into_iter()
            .partition(|d| d.join("events.log").is_file());
        self.overlay_pending = waiting;
        for dir in ready {
            self.overlay(&dir, true);
        }
        if !self.overlay_pending.is_empty() {
            ctx.request_repaint_after(Duration::from_secs(1));
        }
    }
}

/// Writes a finished run's pyramids (`core::lod`) from its folded series when the file is
/// missing or covers less of the log than was read: the next open of a long run draws at
/// once. On its own thread; a failure only means the next open reads the whole log again.
fn refresh_pyramids(dir: &std::path::Path, view: &crate::core::runview::RunView, f: &Follower) {
    use std::sync::atomic::Ordering;
    let read = f.offset.load(Ordering::Relaxed);
    let covers = f.lod_covers.lock().ok().and_then(|c| *c);
    if !view.state.is_over() || covers == Some(read) || read == 0 {
        return;
    }
    let p =
        crate::core::lod::Pyramids::of_series(&view.series, view.started.clone(), view.step, read);
    let dir = dir.to_path_buf();
    let _ = std::thread::Builder::new()
        .name("workbench-lod-write".into())
        .spawn(move || {
            let _ = crate::core::lod::write(&dir, &p);
        });
}
