//! Keyboard shortcuts, the help overlay that lists them (F1 or `?`), and the About window.
//! A shortcut asks for exactly what its button asks for: the same `UiAction`.

use egui::{Key, KeyboardShortcut, Modifiers, RichText, Ui};

use crate::core::protocol::Command;
use crate::core::runview::RunState;
use crate::gui::actions::{Tab, UiAction};
use crate::gui::app::WorkbenchApp;

/// What a shortcut does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shortcut {
    Start,
    PauseResume,
    StopAndSave,
    CheckpointNow,
    SavePreset,
    Undo,
    Redo,
    NextStep,
    PreviousStep,
    NextEvent,
    PreviousEvent,
    Tab(usize),
    Help,
}

/// Every shortcut, its keys and what it does, in the order the help lists them. One with
/// Shift comes before the same key without it: egui matches Shift loosely.
pub const SHORTCUTS: &[(Shortcut, KeyboardShortcut, &str)] = &[
    (
        Shortcut::Start,
        KeyboardShortcut::new(Modifiers::COMMAND, Key::Enter),
        "Start training the preset",
    ),
    (
        Shortcut::PauseResume,
        KeyboardShortcut::new(Modifiers::COMMAND, Key::P),
        "Pause or resume the run",
    ),
    (
        Shortcut::StopAndSave,
        KeyboardShortcut::new(Modifiers::COMMAND.plus(Modifiers::SHIFT), Key::S),
        "Stop the run and save a checkpoint",
    ),
    (
        Shortcut::CheckpointNow,
        KeyboardShortcut::new(Modifiers::COMMAND, Key::K),
        "Checkpoint now",
    ),
    (
        Shortcut::SavePreset,
        KeyboardShortcut::new(Modifiers::COMMAND, Key::S),
        "Save the preset into your folder",
    ),
    (
        Shortcut::Redo,
        KeyboardShortcut::new(Modifiers::COMMAND.plus(Modifiers::SHIFT), Key::Z),
        "Redo an edit of the preset",
    ),
    (
        Shortcut::Undo,
        KeyboardShortcut::new(Modifiers::COMMAND, Key::Z),
        "Undo an edit of the preset",
    ),
    (
        Shortcut::NextEvent,
        KeyboardShortcut::new(Modifiers::SHIFT, Key::ArrowRight),
        "Step cursor: the next event",
    ),
    (
        Shortcut::PreviousEvent,
        KeyboardShortcut::new(Modifiers::SHIFT, Key::ArrowLeft),
        "Step cursor: the previous event",
    ),
    (
        Shortcut::NextStep,
        KeyboardShortcut::new(Modifiers::NONE, Key::ArrowRight),
        "Step cursor: the next logged step",
    ),
    (
        Shortcut::PreviousStep,
        KeyboardShortcut::new(Modifiers::NONE, Key::ArrowLeft),
        "Step cursor: the previous logged step",
    ),
    (
        Shortcut::Tab(0),
        KeyboardShortcut::new(Modifiers::COMMAND, Key::Num1),
        "Presets tab",
    ),
    (
        Shortcut::Tab(1),
        KeyboardShortcut::new(Modifiers::COMMAND, Key::Num2),
        "Phases tab",
    ),
    (
        Shortcut::Tab(2),
        KeyboardShortcut::new(Modifiers::COMMAND, Key::Num3),
        "Dashboard tab",
    ),
    (
        Shortcut::Tab(3),
        KeyboardShortcut::new(Modifiers::COMMAND, Key::Num4),
        "Samples tab",
    ),
    (
        Shortcut::Tab(4),
        KeyboardShortcut::new(Modifiers::COMMAND, Key::Num5),
        "GAAD tab",
    ),
    (
        Shortcut::Tab(5),
        KeyboardShortcut::new(Modifiers::COMMAND, Key::Num6),
        "Controller tab",
    ),
    (
        Shortcut::Tab(6),
        KeyboardShortcut::new(Modifiers::COMMAND, Key::Num7),
        "Runs tab",
    ),
    (
        Shortcut::Tab(7),
        KeyboardShortcut::new(Modifiers::COMMAND, Key::Num8),
        "Actions tab (codebook use and the action explorer)",
    ),
    (
        Shortcut::Help,
        KeyboardShortcut::new(Modifiers::NONE, Key::F1),
        "This help (also `?`)",
    ),
];

impl WorkbenchApp {
    /// Takes this frame's shortcuts and asks for what each one's button asks for. Keys that
    /// a text field is typing into are left to it.
    pub(crate) fn shortcuts(&mut self, ctx: &egui::Context) {
        let typing = ctx.egui_wants_keyboard_input();
        let mut fired = Vec::new();
        ctx.input_mut(|i| {
            for (what, keys, _) in SHORTCUTS {
                // A focused text field keeps its own keys, and its own undo.
                let plain = keys.modifiers.is_none() || keys.modifiers == Modifiers::SHIFT;
                if typing && (plain || matches!(what, Shortcut::Undo | Shortcut::Redo)) {
                    continue;
                }
                if i.consume_shortcut(keys) {
                    fired.push(*what);
                }
            }
            if !typing
                && i.events
                    .iter()
                    .any(|e| matches!(e, egui::Event::Text(t) if t == "?"))
            {
                fired.push(Shortcut::Help);
            }
        });
        for what in fired {
            self.shortcut(what);
        }
    }

    /// Does what a shortcut stands for.
    pub fn shortcut(&mut self, what: Shortcut) {
        let paused = self
            .current_run()
            .is_some_and(|r| matches!(r.view.state, RunState::Paused));
        match what {
            Shortcut::Start => self.actions.push(UiAction::Start),
            Shortcut::PauseResume => self.ask(if paused {
                Command::Resume
            } else {
                Command::Pause
            }),
            Shortcut::StopAndSave => self.ask(Command::StopAndSave),
            Shortcut::CheckpointNow => self.ask(Command::CheckpointNow),
            Shortcut::SavePreset => self.actions.push(UiAction::SavePreset),
            Shortcut::Undo => {
                self.editor.undo();
            }
            Shortcut::Redo => {
                self.editor.redo();
            }
            Shortcut::NextStep | Shortcut::PreviousStep => {
                self.move_cursor_step(what == Shortcut::NextStep);
            }
            Shortcut::NextEvent | Shortcut::PreviousEvent => {
                self.move_cursor_event(what == Shortcut::NextEvent);
            }
            Shortcut::Tab(i) => {
                if let Some(t) = Tab::ALL.get(i) {
                    self.tab = *t;
                }
            }
            Shortcut::Help => self.show_help = !self.show_help,
        }
    }

    /// Moves the step cursor to the next (or previous) logged step of the primary run.
    fn move_cursor_step(&mut self, forward: bool) {
        let steps = self
            .current_run()
            .map(|r| r.view.logged_steps())
            .unwrap_or_default();
        self.move_cursor(forward, &steps);
    }

    /// Moves the step cursor to the next (or previous) event of the primary run.
    fn move_cursor_event(&mut self, forward: bool) {
        let mut steps: Vec<u64> = self
            .current_run()
            .map(|r| r.view.markers.iter().map(|m| m.step).collect())
            .unwrap_or_default();
        steps.sort_unstable();
        steps.dedup();
        self.move_cursor(forward, &steps);
    }

    /// Moves the step cursor to the next (or previous) of `steps` (sorted).
    fn move_cursor(&mut self, forward: bool, steps: &[u64]) {
        let Some(run) = self.current_run() else {
            return;
        };
        let at = self.cursor.unwrap_or(run.view.step);
        let next = if forward {
            steps.iter().find(|s| **s > at)
        } else {
            steps.iter().rev().find(|s| **s < at)
        };
        if let Some(s) = next {
            self.cursor = Some(*s);
        }
    }

    /// The shortcuts, listed (F1 or `?`).
    pub(crate) fn help_ui(&mut self, ctx: &egui::Context) {
        let mut open = self.show_help;
        egui::Window::new("Keyboard shortcuts")
            .open(&mut open)
            .collapsible(false)
            .resizable(false)
            .show(ctx, |ui| {
                egui::Grid::new("shortcuts").striped(true).show(ui, |ui| {
                    for (_, keys, what) in SHORTCUTS {
                        ui.label(RichText::new(ctx.format_shortcut(keys)).monospace());
                        ui.label(*what);
                        ui.end_row();
                    }
                });
            });
        self.show_help = open;
    }

    /// Version, commit, libtorch, device, folders and the app's log, copyable for bug reports.
    pub(crate) fn about_ui(&mut self, ctx: &egui::Context) {
        let mut open = self.show_about;
        let text = self.about_text();
        egui::Window::new("About Generative Workbench")
            .open(&mut open)
            .collapsible(false)
            .show(ctx, |ui: &mut Ui| {
                ui.label(RichText::new(&text).monospace());
                if ui.button("Copy").clicked() {
                    ui.ctx().copy_text(text.clone());
                }
            });
        self.show_about = open;
    }
}
