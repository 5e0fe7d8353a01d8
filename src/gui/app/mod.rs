//! The app: the one owner of the window's state and of every side effect. Its state
//! (`state.rs`) holds the runs it follows, one struct per panel and the work under way;
//! `logic.rs` runs between frames (apply what the panels asked for, drain events within a time
//! budget, hand finished jobs to their panels); `ui.rs` draws the panels from a read-only
//! context; `command_handling.rs` is the one place that starts runs, threads and processes and
//! reads or writes files for a panel, with `jobs.rs` (background work and the readers it
//! runs), `io.rs` (presets, imports and exports), `queue.rs` (the queue file), `dialogs.rs`
//! (native file dialogs), `tour.rs` and `screenshots.rs` (the scripted screenshots) and
//! `remember.rs` (what it keeps between sessions).

mod command_handling;
mod dialogs;
mod io;
mod jobs;
mod logic;
mod queue;
mod remember;
mod screenshots;
mod state;
mod tour;
mod ui;

pub use dialogs::Dialogs;
pub use logic::{window_title, EVENT_BUDGET};
pub use remember::{Remembered, STATE_KEY, STATE_VERSION};
pub use state::{default_preset, WorkbenchApp};
