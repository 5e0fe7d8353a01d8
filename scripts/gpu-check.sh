#!/usr/bin/env bash
# The GPU check, for whoever has an NVIDIA GPU for ten minutes: every family's tiny preset on
# CUDA, mixed precision where a family has it, one medium preset, data parallelism over NCCL
# (two ranks when two GPUs are visible; otherwise that two ranks on one GPU are refused in one
# line), and the step-time benchmarks beside PyTorch eager on the same GPU. Prints one table:
# each check, pass or FAIL, its seconds, and the last line it printed (its figure).
#
#   scripts/gpu-check.sh              # the debug build the tests use (dependencies optimised)
#   scripts/gpu-check.sh --release    # a release build: the figures to quote
#
# Needs what scripts/setup.sh needs (the CUDA torch wheel is fetched once, so a network the
# first time) and `nvidia-smi`. Each check has its own time limit; the whole table takes
# about 10 minutes on one H100 once built. Full output of every check: $GPU_CHECK_OUT
# (default: a new folder under /tmp).
set -uo pipefail
cd "$(dirname "$0")/.."
profile=debug
build=(cargo build --locked --bin workbench --bin workbench-bench)
if [ "${1:-}" = "--release" ]; then
  profile=release
  build+=(--release)
fi
if ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu-check: no NVIDIA GPU is visible (nvidia-smi -L failed)" >&2
  exit 2
fi
source scripts/setup.sh
echo "== $WORKBENCH_BUILD_NOTE" >&2
"${build[@]}" >&2 || exit 1
wb="$CARGO_TARGET_DIR/$profile/workbench"
wbb="$CARGO_TARGET_DIR/$profile/workbench-bench"
gpus=$(nvidia-smi -L | wc -l)
out="${GPU_CHECK_OUT:-$(mktemp -d /tmp/gpu-check.XXXXXX)}"
mkdir -p "$out"
runs="$out/runs"
rows=()

# check NAME LIMIT_SECONDS COMMAND...: runs it, keeps its output, adds a table row.
check() {
  local name="$1" limit="$2"
  shift 2
  local log="$out/$(echo "$name" | tr -c 'A-Za-z0-9_-' '_').log"
  local t0=$SECONDS
  echo "== gpu-check: $name" >&2
  timeout "$limit" "$@" >"$log" 2>&1
  local code=$?
  local secs=$((SECONDS - t0))
  local last
  last=$(grep -v '^\s*$' "$log" | tail -n 1 | tr -d '\r' | sed 's/\x1b\[[0-9;]*[A-Za-z]//g' | cut -c1-150)
  local result=pass
  if [ "$code" -eq 124 ]; then
    result="FAIL (over ${limit}s)"
  elif [ "$code" -ne 0 ]; then
    result="FAIL (exit $code)"
  fi
  rows+=("$(printf '%-34s | %-16s | %5ss | %s' "$name" "$result" "$secs" "$last")")
}

train() { "$wb" --runs-dir "$runs" train --device cuda "$@"; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >"$out/gpu.txt"
check "tiny: wgan_gp (smoke)" 180 train --preset smoke --steps 40
check "tiny: wubu_gaad" 300 train --preset wubu_gaad_tiny --steps 20
check "tiny: latent_action" 300 train --preset latent_action_tiny --steps 60
check "tiny: latent_action fp16" 300 train --preset latent_action_tiny --steps 60 --set train.mixed_precision=true
check "tiny: vq_gan" 300 train --preset vq_gan_tiny --steps 20
check "tiny: vq_gan fp16" 300 train --preset vq_gan_tiny --steps 20 --set train.mixed_precision=true
check "medium: wgan_gp_sprites32 500 steps" 300 train --preset wgan_gp_sprites32 --steps 500
check "SIGTERM: checkpoint and resume" 300 bash -c '
  set -u
  "$0" --runs-dir "$1/sig" train --device cuda --preset smoke --steps 40 >"$1/sig.out" 2>&1 &
  pid=$!
  sleep 8; kill -TERM "$pid"; wait "$pid"; code=$?
  run=$(ls -d "$1"/sig/*/ | head -n 1)
  "$0" --runs-dir "$1/sig" train --device cuda --resume "$run" >>"$1/sig.out" 2>&1 || exit 1
  echo "first exit $code (143: stopped by the signal, 0: it had finished); resumed to the end"
' "$wb" "$out"
if [ "$gpus" -ge 2 ]; then
  check "NCCL: 2 ranks, wgan_gp smoke" 300 "$VENV/bin/torchrun" --standalone --nproc-per-node 2 --no-python \
    "$wb" --runs-dir "$runs" train --device cuda --preset smoke --steps 30
  check "NCCL: 2 ranks, wubu_gaad tiny" 300 "$VENV/bin/torchrun" --standalone --nproc-per-node 2 --no-python \
    "$wb" --runs-dir "$runs" train --device cuda --preset wubu_gaad_tiny --steps 20
else
  # Two ranks on one GPU: refused in one line before either joins (exit 2).
  check "NCCL: 2 ranks on 1 GPU are refused" 120 bash -c '
    "$0" --standalone --nproc-per-node 2 --no-python "$1" --runs-dir "$2" train --device cuda --preset smoke --steps 5 >"$3" 2>&1
    grep -q "NCCL needs a GPU per rank" "$3" && echo "refused: $(grep -m1 "NCCL needs" "$3" | cut -c1-120)"
  ' "$VENV/bin/torchrun" "$wb" "$runs" "$out/nccl-one-gpu.out"
fi
check "bench wgan-gp (vs PyTorch)" 300 "$wbb" wgan-gp --device cuda --python "$VENV/bin/python"
check "bench latent-action (vs PyTorch)" 300 "$wbb" latent-action --device cuda --python "$VENV/bin/python"
check "bench vq-gan (vs PyTorch)" 300 "$wbb" vq-gan --device cuda --python "$VENV/bin/python"
check "bench wubu-gaad" 300 "$wbb" wubu-gaad --device cuda

echo
echo "GPU: $(cat "$out/gpu.txt") ($gpus visible); build: $profile; logs: $out"
printf '%-34s | %-16s | %6s | %s\n' check result time "last line (the figure)"
printf '%s\n' "${rows[@]}"
failed=$(printf '%s\n' "${rows[@]}" | grep -c '| FAIL')
exit $((failed > 0))
