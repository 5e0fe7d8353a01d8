#!/usr/bin/env bash
# Real screenshots of the app during a real training run: starts Xvfb, opens the app on a
# preset (the WuBu-GAAD learning preset, or the arguments' --preset) with --start, lets it train
# for $SECS seconds (default 75), then the app screenshots every tab into screenshots/ and
# closes. Software Vulkan (lavapipe) renders.
set -euo pipefail
cd "$(dirname "$0")/.."
export WORKBENCH_EXTRA_APT="xvfb xauth"
source scripts/setup.sh
cargo build --locked --bin workbench >&2
runs="$(mktemp -d)"
display=":${XVFB_DISPLAY:-97}"
Xvfb "$display" -screen 0 1400x900x24 -nolisten tcp >/dev/null 2>&1 &
xvfb=$!
trap 'kill $xvfb 2>/dev/null || true; rm -rf "$runs"' EXIT
sleep 1
# The family with the most to show (reconstructions, regions, four controllers) by default.
if [ "$#" -eq 0 ]; then set -- --preset presets/wubu_gaad_learning.ron; fi
DISPLAY="$display" "$WORKBENCH_BIN" --runs-dir "$runs" --start \
  --quit-after "${SECS:-75}" --screenshot-dir screenshots "$@"
ls -l screenshots/*.png >&2
