#!/usr/bin/env bash
# Sets up, then runs the whole test suite (unit, engine on CPU libtorch, CLI).
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$SECONDS
source scripts/setup.sh
echo "== setup took $((SECONDS - t0)) s" >&2
cargo fetch --locked >&2
cargo test --locked "$@"
echo "== tests took $((SECONDS - t0)) s in all" >&2
