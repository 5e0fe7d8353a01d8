//! The desktop app (no subcommand).

use std::path::Path;
use std::time::Duration;

use workbench::core::preset;

use super::{bad_input, preset_text, AppArgs, Failure};

pub(super) fn run(args: AppArgs, runs_dir: &Path, explicit_runs_dir: bool) -> Result<(), Failure> {
    let tab = workbench::gui::Tab::parse(args.tab.as_deref().unwrap_or("presets"))
        .map_err(|e| bad_input(anyhow::anyhow!(e)))?;
    let preset = match &args.preset {
        Some(path) => {
            let (text, origin) = preset_text(path)?;
            let (p, _) =
                preset::parse_str(&text, &origin.display().to_string()).map_err(bad_input)?;
            Some((p, Some(origin)))
        }
        None => None,
    };
    if let Some(q) = args.quit_after.filter(|q| !(q.is_finite() && *q >= 0.0)) {
        return Err(bad_input(anyhow::anyhow!(
            "--quit-after {q}: a number of seconds >= 0"
        )));
    }
    let opts = workbench::gui::LaunchOptions {
        runs_dir: runs_dir.to_path_buf(),
        user_presets_dir: workbench::gui::style::user_presets_dir(),
        app_log: workbench::gui::style::app_log_path(),
        remember: true,
        explicit_tab: args.tab.is_some(),
        explicit_runs_dir,
        preset,
        start: args.start,
        open: args.open,
        tab,
        quit_after: args.quit_after.map(Duration::from_secs_f64),
        screenshot_dir: args.screenshot_dir,
        step_limit: args.steps,
    };
    workbench::gui::run(opts).map_err(|e| {
        let no_display =
            std::env::var_os("DISPLAY").is_none() && std::env::var_os("WAYLAND_DISPLAY").is_none();
        let hint = if no_display {
            "\nno display (DISPLAY and WAYLAND_DISPLAY are unset): run under a desktop or Xvfb, \
             or train headless with `workbench train`"
        } else {
            ""
        };
        Failure {
            code: 1,
            error: anyhow::anyhow!("cannot open the app window: {e}{hint}"),
        }
    })
}
