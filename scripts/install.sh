#!/usr/bin/env bash
# Installs the workbench for this user, so the app starts from the desktop's menu:
#   the binary            ~/.local/bin/workbench
#   the launcher entry    ~/.local/share/applications/workbench.desktop
#   the icons             ~/.local/share/icons/hicolor/<size>x<size>/apps/workbench.png
# and records every file it wrote in ~/.local/share/workbench/installed.txt.
#
#   scripts/install.sh             build the release binary (the first release build compiles
#                                  every dependency again: about 30 minutes on 2 cores) and install
#   scripts/install.sh --debug     install the build scripts/run.sh uses (dependencies optimised)
#   scripts/install.sh --uninstall remove exactly the files the last install recorded
#
# The binary finds libtorch through the rpath the build gives it (the torch environment in
# ~/.cache/workbench), so the launcher needs no LD_LIBRARY_PATH; keep that cache.
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX="${PREFIX:-$HOME/.local}"
MANIFEST="$PREFIX/share/workbench/installed.txt"

if [ "${1:-}" = "--uninstall" ]; then
  if [ ! -f "$MANIFEST" ]; then
    echo "nothing to uninstall: $MANIFEST does not exist" >&2
    exit 0
  fi
  while IFS= read -r f; do
    [ -n "$f" ] && rm -f -- "$f" && echo "removed $f" >&2
  done <"$MANIFEST"
  rm -f -- "$MANIFEST"
  rmdir --ignore-fail-on-non-empty "$(dirname "$MANIFEST")" 2>/dev/null || true
  command -v update-desktop-database >/dev/null && update-desktop-database -q "$PREFIX/share/applications" || true
  exit 0
fi

source scripts/setup.sh
if [ "${1:-}" = "--debug" ]; then
  echo "== $WORKBENCH_BUILD_NOTE" >&2
  cargo build --locked --bin workbench >&2
  BIN="$CARGO_TARGET_DIR/debug/workbench"
else
  echo "== build: the release binary (the first release build: about 30 minutes on 2 cores)" >&2
  cargo build --locked --release --bin workbench >&2
  BIN="$CARGO_TARGET_DIR/release/workbench"
fi

installed=()
put() { # put SOURCE DEST MODE
  install -D -m "$3" "$1" "$2"
  installed+=("$2")
  echo "installed $2" >&2
}
put "$BIN" "$PREFIX/bin/workbench" 755
for png in assets/icons/workbench-*.png; do
  size="${png##*-}"; size="${size%.png}"
  put "$png" "$PREFIX/share/icons/hicolor/${size}x${size}/apps/workbench.png" 644
done
desktop="$(mktemp)"
sed "s|^Exec=workbench|Exec=$PREFIX/bin/workbench|" assets/workbench.desktop >"$desktop"
put "$desktop" "$PREFIX/share/applications/workbench.desktop" 644
rm -f "$desktop"
mkdir -p "$(dirname "$MANIFEST")"
printf '%s\n' "${installed[@]}" >"$MANIFEST"
command -v update-desktop-database >/dev/null && update-desktop-database -q "$PREFIX/share/applications" || true
command -v desktop-file-validate >/dev/null && desktop-file-validate "$PREFIX/share/applications/workbench.desktop"
echo "installed for $(id -un); uninstall with: scripts/install.sh --uninstall" >&2
