"""Opens a store through the generated Python bindings and lists the due
follow-ups, printing the time taken and the process's peak resident memory.

    STATION_MOBILE_BINDINGS=target/mobile-bindings/mobile/python \
        python3 mobile-bindings/examples/open_store.py /tmp/field-100k

The store is one that examples/field_load.rs filled (station 540502001, worker
load-01). The interpreter's own memory is printed apart for comparison.
"""

import os
import resource
import sys
import time

sys.path.insert(0, os.environ["STATION_MOBILE_BINDINGS"])


def peak_kib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main(path):
    interpreter = peak_kib()
    started = time.perf_counter()
    import station_mobile as sm

    class ExampleKeys(sm.KeyProvider):
        """The fixed mask examples/field_load.rs wraps the data key with; an
        app uses the Android Keystore or the iOS Keychain."""

        def wrap(self, data_key):
            return bytes(b ^ 0x5A for b in data_key)

        def unwrap(self, wrapped):
            return bytes(b ^ 0x5A for b in wrapped)

    loaded = time.perf_counter()
    store = sm.FieldStore.open(path, "540502001", "load-01", ExampleKeys())
    opened = time.perf_counter()
    due = store.due_follow_ups(7)
    listed = time.perf_counter()
    print(
        f"python: library loaded in {(loaded - started) * 1000:.0f} ms; store of "
        f"{store.status().head_seq} entries opened in {(opened - loaded) * 1000:.0f} ms; "
        f"{len(due)} due follow-ups listed in {(listed - opened) * 1000:.0f} ms; "
        f"ru_maxrss {peak_kib()} KiB (interpreter alone {interpreter} KiB)"
    )


if __name__ == "__main__":
    main(sys.argv[1])
