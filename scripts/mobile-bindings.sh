#!/usr/bin/env bash
# Builds station-mobile, generates its Kotlin, Swift and Python bindings from
# the unstripped library with the crate's own uniffi-bindgen, and runs the
# Python suite (mobile-bindings/tests) against the real library and a real
# station-hub process.
#
#   scripts/mobile-bindings.sh test      debug library; bindings; pytest (default)
#   scripts/mobile-bindings.sh release   size-optimised library (profile "mobile");
#                                        bindings; stripped copy and its size; pytest
#                                        against the stripped copy
#
# Everything generated goes to target/mobile-bindings/<profile>/ and is not
# committed. Extra arguments after the mode go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

mode="${1:-test}"
[[ $# -gt 0 ]] && shift
case "$mode" in
    test) profile=dev; profile_dir=debug ;;
    release) profile=mobile; profile_dir=mobile ;;
    *) echo "usage: $0 [test|release] [pytest args...]" >&2; exit 2 ;;
esac

case "$(uname -s)" in
    Darwin) lib_file=libstation_mobile.dylib; strip_args=(-x) ;;
    *) lib_file=libstation_mobile.so; strip_args=(--strip-all) ;;
esac

out="target/mobile-bindings/$profile_dir"
bindgen=target/debug/uniffi-bindgen
python="${PYTHON:-python3}"

echo "== building the library (profile $profile), uniffi-bindgen and station-hub"
if [[ $profile == dev ]]; then
    # One build gives the library, the bindgen binary and the hub. It selects
    # what scripts/test.sh tests (the whole workspace, its tests and the
    # bindgen feature), so features resolve the same way and nothing that
    # `cargo test` built is compiled again. The bindgen feature only adds the
    # generator to uniffi; the library's code is the same.
    cargo build --quiet --workspace --lib --bins --tests --features station-mobile/bindgen
else
    cargo build --quiet -p station-mobile --lib --profile "$profile"
    cargo build --quiet -p station-mobile --features bindgen --bin uniffi-bindgen
    cargo build --quiet -p station-hub --bin station-hub
fi
library="target/$profile_dir/$lib_file"

echo "== generating Kotlin, Swift and Python bindings into $out"
rm -rf "$out"
mkdir -p "$out"
for language in kotlin swift python; do
    "$bindgen" generate --library "$library" --language "$language" \
        --out-dir "$out/$language" --no-format >/dev/null
done
cp "$library" "$out/$lib_file"

tested_library="$library"
if [[ $mode == release ]]; then
    stripped="$out/stripped/$lib_file"
    mkdir -p "$(dirname "$stripped")"
    cp "$library" "$stripped"
    strip "${strip_args[@]}" "$stripped"
    bytes=$(wc -c <"$stripped" | tr -d ' ')
    echo "== $lib_file (profile $profile): $(wc -c <"$library" | tr -d ' ') bytes unstripped," \
        "$bytes bytes stripped ($((bytes / 1024)) KiB)"
    tested_library="$stripped"
fi
cp "$tested_library" "$out/python/$lib_file"

if ! "$python" -m pytest --version >/dev/null 2>&1; then
    echo "== installing pytest"
    "$python" -m pip install --quiet --disable-pip-version-check "pytest>=8,<10"
fi

echo "== pytest mobile-bindings/tests (library: $tested_library)"
STATION_MOBILE_BINDINGS="$PWD/$out/python" \
STATION_HUB_BIN="$PWD/target/debug/station-hub" \
    "$python" -m pytest -q -p no:cacheprovider mobile-bindings/tests "$@"
