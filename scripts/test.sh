#!/usr/bin/env bash
# Every test of the project: the Rust workspace (unit, property, golden,
# CLI, crash, sync and convergence tests), then the mobile library through
# its generated Python bindings against a real hub.
set -euo pipefail
cd "$(dirname "$0")/.."

# With the mobile bindgen feature, so that the build of the bindings below
# resolves features the same way and reuses everything built here.
cargo test --workspace --features station-mobile/bindgen
scripts/mobile-bindings.sh test
