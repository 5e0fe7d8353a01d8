//! The app's panels, one file each. Each draws into a `&mut Ui` and asks for changes through
//! [`crate::gui::actions::UiAction`], which the app applies between frames.

mod controller;
mod presets;
mod run_controls;
pub mod runs;
pub mod shortcuts;
mod views;
