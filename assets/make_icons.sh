#!/usr/bin/env bash
# Renders the app icon's PNGs from its source, assets/icon.svg, at the sizes a Linux desktop
# asks for (needs rsvg-convert: `apt-get install librsvg2-bin`). The PNGs are committed; run
# this after editing the SVG.
set -euo pipefail
cd "$(dirname "$0")"
for s in 16 24 32 48 64 128 256 512; do
  rsvg-convert -w "$s" -h "$s" icon.svg -o "icons/workbench-$s.png"
done
