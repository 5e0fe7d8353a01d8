#!/usr/bin/env bash
# Sets up, builds, and runs the workbench. With no arguments it trains the embedded default
# preset (WGAN-GP on synthetic sprites) with a progress bar and prints where the run went.
# Any arguments are passed to the `workbench` binary, e.g. `scripts/run.sh presets show wgan_gp`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo build --locked --bin workbench >&2
exec "$WORKBENCH_BIN" "$@"
