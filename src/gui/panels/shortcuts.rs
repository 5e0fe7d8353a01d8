//! Keyboard shortcuts, the help overlay that lists them (F1 or `?`), and the About window.
//! A shortcut asks for exactly what its button asks for: the same `UiAction`.

use egui::{Key, KeyboardShortcut, Modifiers, RichText, Ui};

use crate::core::protocol::Command;
use crate::core::runview::RunState;
use crate::gui::actions::{Tab, UiAction};

use super::Ctx;

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

/// Takes this frame's shortcuts from the input. Keys that a text field is typing into are
/// left to it.
pub fn fired(ctx: &egui::Context) -> Vec<Shortcut> {
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
    fired
}

/// What a shortcut asks for: exactly what its button asks for.
#[must_use]
pub fn action(what: Shortcut, ctx: &Ctx<'_>) -> Option<UiAction> {
    let paused = ctx
        .current_run()
        .is_some_and(|r| matches!(r.view.state, RunState::Paused));
    Some(match what {
        Shortcut::Start => UiAction::Start,
        Shortcut::PauseResume => UiAction::Command(if paused {
            Command::Resume
        } else {
            Command::Pause
        }),
        Shortcut::StopAndSave => UiAction::Command(Command::StopAndSave),
        Shortcut::CheckpointNow => UiAction::Command(Command::CheckpointNow),
        Shortcut::SavePreset => UiAction::SavePreset,
        Shortcut::Undo => UiAction::Undo,
        Shortcut::Redo => UiAction::Redo,
        Shortcut::NextStep | Shortcut::PreviousStep => {
            let steps = ctx
                .current_run()
                .map(|r| r.view.logged_steps())
                .unwrap_or_default();
            return moved_cursor(ctx, what == Shortcut::NextStep, &steps);
        }
        Shortcut::NextEvent | Shortcut::PreviousEvent => {
            let mut steps: Vec<u64> = ctx
                .current_run()
                .map(|r| r.view.markers.iter().map(|m| m.step).collect())
                .unwrap_or_default();
            steps.sort_unstable();
            steps.dedup();
            return moved_cursor(ctx, what == Shortcut::NextEvent, &steps);
        }
        Shortcut::Tab(i) => UiAction::SetTab(*Tab::ALL.get(i)?),
        Shortcut::Help => UiAction::ToggleHelp,
    })
}

/// The step cursor moved to the next (or previous) of `steps` (sorted), if there is one.
fn moved_cursor(ctx: &Ctx<'_>, forward: bool, steps: &[u64]) -> Option<UiAction> {
    let run = ctx.current_run()?;
    let at = ctx.cursor.unwrap_or(run.view.step);
    let next = if forward {
        steps.iter().find(|s| **s > at)
    } else {
        steps.iter().rev().find(|s| **s < at)
    };
    next.map(|s| UiAction::SetCursor(Some(*s)))
}

/// The keyboard shortcuts' overlay (F1 or `?`) and the About window, and whether each is open.
#[derive(Debug, Default)]
pub struct Overlays {
    pub show_help: bool,
    pub show_about: bool,
}

impl Overlays {
    /// The open windows. `about`: what the About window says.
    pub fn ui(&mut self, ctx: &egui::Context, about: &str) {
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
        // Version, commit, libtorch, device, folders and the app's log, copyable for bug reports.
        let mut open = self.show_about;
        egui::Window::new("About Generative Workbench")
            .open(&mut open)
            .collapsible(false)
            .show(ctx, |ui: &mut Ui| {
                ui.label(RichText::new(about).monospace());
                if ui.button("Copy").clicked() {
                    ui.ctx().copy_text(about.to_string());
                }
            });
        self.show_about = open;
    }
}
