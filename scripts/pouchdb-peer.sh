#!/usr/bin/env bash
# Installs the PouchDB peer of the sync benchmark: the npm packages pinned by
# tests/bench/pouchdb/package-lock.json (PouchDB 7 with the in-memory adapter,
# express-pouchdb), with `npm ci` into target/pouchdb-peer, once per lock
# file. The benchmark harness calls it; nothing else needs it.
#
#   scripts/pouchdb-peer.sh     prints the node_modules directory to use as NODE_PATH
#
# Exit status 3 when Node.js or npm is not installed, 4 when the install fails.
set -euo pipefail
cd "$(dirname "$0")/.."

src=tests/bench/pouchdb
dest="${CARGO_TARGET_DIR:-target}/pouchdb-peer"
[[ $dest = /* ]] || dest="$PWD/$dest"

for tool in node npm; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "pouchdb-peer: $tool is not installed (the PouchDB peer needs Node.js and npm)" >&2
        exit 3
    fi
done

if [[ ! -d $dest/node_modules ]] || ! cmp -s "$src/package-lock.json" "$dest/package-lock.json"; then
    echo "pouchdb-peer: installing $(cd "$src" && node -e 'const d = require("./package.json").dependencies; console.log(Object.entries(d).map(([n, v]) => n + "@" + v).join(" "))') into $dest" >&2
    rm -rf "$dest"
    mkdir -p "$dest"
    cp "$src/package.json" "$src/package-lock.json" "$dest/"
    if ! (cd "$dest" && npm ci --no-audit --no-fund --loglevel=error >&2); then
        rm -rf "$dest/node_modules"
        echo "pouchdb-peer: npm ci failed" >&2
        exit 4
    fi
fi
echo "$dest/node_modules"
