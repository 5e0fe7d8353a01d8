#!/usr/bin/env bash
# Sets up, builds, and runs the workbench. With no arguments it opens the desktop app on the
# embedded default preset (WGAN-GP on synthetic sprites); `train` trains headless.
# Any arguments are passed to the `workbench` binary, e.g. `scripts/run.sh presets show wgan_gp`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
echo "== $WORKBENCH_BUILD_NOTE" >&2
cargo build --locked --bin workbench >&2
exec "$WORKBENCH_BIN" "$@"
