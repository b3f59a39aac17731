#!/usr/bin/env bash
# Builds station-mobile, generates its Kotlin, Swift and Python bindings from
# the unstripped library with the crate's own uniffi-bindgen, and runs the
# Python suite (mobile-bindings/tests) and the Kotlin suite
# (mobile-bindings/tests/kotlin, on a JVM through JNA, as an Android app
# calls the library) against the real library and a real station-hub process.
# Swift is generated only: no Swift toolchain runs here.
#
#   scripts/mobile-bindings.sh test      debug library; bindings; pytest; Kotlin suite (default)
#   scripts/mobile-bindings.sh release   size-optimised library (profile "mobile");
#                                        bindings; stripped copy and its size; pytest
#                                        and the Kotlin suite against the stripped copy
#
# The Kotlin suite needs a JDK (java, Debian openjdk-17-jdk-headless), JNA
# (/usr/share/java/jna.jar, Debian libjna-java, or $JNA_JAR) and npm, which
# installs kotlinc (the npm package kotlin-compiler) once into
# target/kotlin-compiler. Without them the suite is skipped with a message,
# unless STATION_REQUIRE_KOTLIN=1 (CI), which makes that an error. The suite
# is compiled in one kotlinc call, again only when its sources or the
# generated bindings change. KOTLIN_TESTS=TEXT runs only the Kotlin tests
# whose `suite::test` name contains TEXT.
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

kotlin_version=2.4.20
kotlinc="target/kotlin-compiler/node_modules/kotlin-compiler/bin/kotlinc"
kotlin_stdlib="target/kotlin-compiler/node_modules/kotlin-compiler/lib/kotlin-stdlib.jar"
jna="${JNA_JAR:-/usr/share/java/jna.jar}"
missing=()
command -v java >/dev/null 2>&1 || missing+=("java (openjdk-17-jdk-headless)")
[[ -f $jna ]] || missing+=("$jna (libjna-java)")
[[ -x $kotlinc ]] || command -v npm >/dev/null 2>&1 || missing+=("npm (for kotlinc)")
if ((${#missing[@]})); then
    if [[ ${STATION_REQUIRE_KOTLIN:-0} == 1 ]]; then
        echo "== the Kotlin suite needs: ${missing[*]}" >&2
        exit 1
    fi
    echo "== Kotlin suite SKIPPED: missing ${missing[*]}"
    exit 0
fi
if [[ ! -x $kotlinc ]]; then
    echo "== installing kotlinc (npm kotlin-compiler@$kotlin_version) into target/kotlin-compiler"
    npm install --silent --no-audit --no-fund --prefix target/kotlin-compiler \
        "kotlin-compiler@$kotlin_version" >/dev/null
fi

# One kotlinc call compiles the generated bindings and the suite, again only
# when one of them changed.
suite_jar="target/mobile-bindings/kotlin-suite/station-mobile-tests.jar"
sources=("$out/kotlin/org/stationsync/mobile/station_mobile.kt" mobile-bindings/tests/kotlin/*.kt)
stamp=$(cat "${sources[@]}" | sha256sum | cut -d' ' -f1)
if [[ ! -f $suite_jar || "$(cat "$suite_jar.sha256" 2>/dev/null)" != "$stamp" ]]; then
    echo "== compiling the Kotlin bindings and suite"
    mkdir -p "$(dirname "$suite_jar")"
    rm -f "$suite_jar" "$suite_jar.sha256"
    "$kotlinc" -nowarn -cp "$jna" -d "$suite_jar" "${sources[@]}"
    echo "$stamp" >"$suite_jar.sha256"
fi
echo "== Kotlin suite mobile-bindings/tests/kotlin (library: $tested_library)"
kotlin_lib="$out/kotlin-lib"
mkdir -p "$kotlin_lib"
cp "$tested_library" "$kotlin_lib/$lib_file"
STATION_HUB_BIN="$PWD/target/debug/station-hub" \
    java -Djna.library.path="$PWD/$kotlin_lib" \
    -cp "$suite_jar:$jna:$kotlin_stdlib" org.stationsync.mobile.tests.MainKt ${KOTLIN_TESTS:+"$KOTLIN_TESTS"}
