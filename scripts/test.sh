#!/usr/bin/env bash
# Every test of the project: the Rust workspace (unit, property, golden,
# CLI, crash, sync and convergence tests), then the mobile library through
# its generated Python bindings against a real hub.
set -euo pipefail
cd "$(dirname "$0")/.."

# The hub's JetStream log is tested against real nats-server processes
# (scripts/nats-server.sh installs the pinned server under target/ once).
# Without it those tests skip, unless STATION_REQUIRE_NATS=1.
if [[ -z ${STATION_NATS_SERVER:-} ]] && server="$(scripts/nats-server.sh path)"; then
    export STATION_NATS_SERVER="$server"
fi

# With the mobile bindgen feature, so that the build of the bindings below
# resolves features the same way and reuses everything built here.
cargo test --workspace --features station-mobile/bindgen
scripts/mobile-bindings.sh test
