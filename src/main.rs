//! `workbench`: with no subcommand, the desktop app (on the embedded default preset unless
//! told otherwise); the subcommands are headless (`cli`). Benchmarks are `workbench-bench`.

mod cli;

fn main() -> std::process::ExitCode {
    workbench::engine::ops::keep_large_host_allocations();
    cli::run()
}
