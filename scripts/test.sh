#!/usr/bin/env bash
# Sets up, then runs the whole test suite (unit, engine on CPU libtorch, CLI).
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$SECONDS
source scripts/setup.sh
echo "== setup took $((SECONDS - t0)) s" >&2
cargo fetch --locked >&2
echo "== $WORKBENCH_BUILD_NOTE; then the tests (about 1 minute)" >&2
# The same build as scripts/run.sh: the test build includes the `workbench` binary, with the
# same features (Cargo.toml aligns them), so after either command the other starts at once.
cargo test --locked "$@"
echo "== tests took $((SECONDS - t0)) s in all" >&2
