#!/usr/bin/env bash
# Every test of the project: the Rust workspace (unit, property, golden,
# CLI, crash, sync and convergence tests), then the mobile library through
# its generated Python bindings against a real hub.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --workspace
scripts/mobile-bindings.sh test
