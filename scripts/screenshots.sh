#!/usr/bin/env bash
# Real screenshots of the app during a real training run: starts Xvfb, opens the app on a
# preset (the WuBu-GAAD learning preset, then the latent action levers preset and the tiny
# VQ-GAN; or the arguments' --preset) with --start, lets it train for $SECS seconds (default
# 75; $SECS_LAM and $SECS_VQ, 60, for the others), then the app screenshots every tab and
# closes. Software Vulkan (lavapipe) renders.
set -euo pipefail
cd "$(dirname "$0")/.."
export WORKBENCH_EXTRA_APT="xvfb xauth"
source scripts/setup.sh
cargo build --locked --bin workbench >&2
runs="$(mktemp -d)"
display=":${XVFB_DISPLAY:-97}"
Xvfb "$display" -screen 0 1280x800x24 -nolisten tcp >/dev/null 2>&1 &
xvfb=$!
trap 'kill $xvfb 2>/dev/null || true; rm -rf "$runs"' EXIT
sleep 1
# The family with the most to show (reconstructions, regions, four controllers) by default,
# then the latent action model's Actions tab (codebook use and the action explorer) in
# screenshots/latent_action/, and the VQ-GAN's Volume tab in screenshots/vq_gan/.
if [ "$#" -eq 0 ]; then
  # A small finished sweep beside the live run, for the Runs table and the Queue tab.
  # Its rates are drawn log-uniformly, so parallel coordinates draw them on a log axis.
  echo "(name: \"lr\", base: \"$PWD/presets/smoke.ron\", random: Some((count: 4, seed: 3, fields: { \"train.lr_g\": log_uniform(1e-5, 1e-2) })))" >"$runs/lr.ron"
  "$WORKBENCH_BIN" --runs-dir "$runs" sweep submit "$runs/lr.ron" >&2
  "$WORKBENCH_BIN" --runs-dir "$runs" queue run --jobs 2 2>/dev/null
  # Lineage: a branch of one sweep run at its step-30 checkpoint with another rate, and a
  # branch of that branch; and a guarded run whose NaN at step 13 rolls back to step 10
  # (its abandoned rows are a branch too). The Runs tab shows the tree; guard/dashboard.png
  # the rollback on the plots.
  first="$(ls -d "$runs"/lr-* | head -1)"
  "$WORKBENCH_BIN" --runs-dir "$runs" branch "$first" --at 30 --set train.lr_g=5e-5 --name lr-slower >&2
  "$WORKBENCH_BIN" --runs-dir "$runs" branch "$(ls -d "$runs"/lr-slower-* | head -1)" --at 30 \
    --set train.lr_d=1e-4 --name lr-slower-critic >&2
  WORKBENCH_FAILPOINT=nan-loss-once:13 "$WORKBENCH_BIN" --runs-dir "$runs" train \
    --preset presets/smoke.ron --set health.guard=true --set name=guarded >&2
  DISPLAY="$display" "$WORKBENCH_BIN" --runs-dir "$runs" --start \
    --quit-after "${SECS:-75}" --screenshot-dir screenshots --preset presets/wubu_gaad_learning.ron
  mkdir -p screenshots/latent_action
  DISPLAY="$display" "$WORKBENCH_BIN" --runs-dir "$runs" --start \
    --quit-after "${SECS_LAM:-60}" --screenshot-dir screenshots/latent_action \
    --preset presets/latent_action_levers.ron
  # The VQ-GAN's Volume tab (three orthogonal slices, codebook use) after its critics start.
  mkdir -p screenshots/vq_gan
  DISPLAY="$display" "$WORKBENCH_BIN" --runs-dir "$runs" --start \
    --quit-after "${SECS_VQ:-60}" --screenshot-dir screenshots/vq_gan \
    --preset presets/vq_gan_tiny.ron
  # The guarded run's rollback, on its dashboard.
  mkdir -p screenshots/guard
  DISPLAY="$display" "$WORKBENCH_BIN" --runs-dir "$runs" --open "$(ls -d "$runs"/guarded-2* | head -1)" \
    --tab dashboard --quit-after 8 --screenshot-dir screenshots/guard
  find screenshots/guard -name '*.png' ! -name dashboard.png -delete
  # The other tabs of these runs look like the first run's: keep what is their own.
  find screenshots/latent_action -name '*.png' ! -name actions.png ! -name dashboard.png \
    ! -name samples.png -delete
  find screenshots/vq_gan -name '*.png' ! -name volume.png ! -name dashboard.png \
    ! -name samples.png -delete
else
  DISPLAY="$display" "$WORKBENCH_BIN" --runs-dir "$runs" --start \
    --quit-after "${SECS:-75}" --screenshot-dir screenshots "$@"
fi
ls -l screenshots/*.png screenshots/*/*.png >&2 || true
