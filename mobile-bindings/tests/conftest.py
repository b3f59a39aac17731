"""Fixtures of the station-mobile Python suite: the generated bindings over the
real library, stores in temporary folders, and a real station-hub process.

Run through scripts/mobile-bindings.sh, which builds the library and the hub
and sets:
  STATION_MOBILE_BINDINGS  folder holding station_mobile.py and the library
  STATION_HUB_BIN          the station-hub binary
"""

import gc
import os
import select
import subprocess
import sys

import pytest

BINDINGS = os.environ.get("STATION_MOBILE_BINDINGS")
if not BINDINGS or not os.path.isfile(os.path.join(BINDINGS, "station_mobile.py")):
    raise RuntimeError(
        "STATION_MOBILE_BINDINGS must name the folder of the generated Python "
        "bindings; run scripts/mobile-bindings.sh test"
    )
sys.path.insert(0, BINDINGS)

import station_mobile as sm  # noqa: E402

STATION = "540502001"  # 泽当街道
OTHER_STATION = "540502101"  # 昌珠镇


class XorProvider(sm.KeyProvider):
    """Stands in for the Android Keystore / iOS Keychain: wraps the data key
    with a secret of its own (a real app uses an AES-GCM platform key)."""

    def __init__(self, secret=b"platform-secret"):
        self.secret = secret
        self.calls = []

    def wrap(self, data_key):
        self.calls.append("wrap")
        return bytes(b ^ self.secret[i % len(self.secret)] for i, b in enumerate(data_key))

    def unwrap(self, wrapped):
        self.calls.append("unwrap")
        return bytes(b ^ self.secret[i % len(self.secret)] for i, b in enumerate(wrapped))


@pytest.fixture
def open_store(tmp_path):
    """Opens (or reopens) a store under tmp_path by name. The fixture keeps no
    reference: a store closes when the test drops its last one."""

    def _open(name="phone", worker="zd-01", station=STATION, sync_timeout_secs=None):
        path = str(tmp_path / name)
        if sync_timeout_secs is None:
            store = sm.FieldStore.open(path, station, worker, XorProvider())
        else:
            options = sm.StoreOptions(sync_timeout_secs=sync_timeout_secs)
            store = sm.FieldStore.open_with_options(path, station, worker, XorProvider(), options)
        return store

    yield _open
    gc.collect()


class Hub:
    """A station-hub process over a data folder: tokens are enrolled while it is
    stopped, then it serves on an ephemeral loopback port."""

    def __init__(self, binary, data, log_path):
        self.binary = binary
        self.data = str(data)
        self.log_path = log_path
        self.process = None
        self.url = None

    def enroll(self, device, station=STATION):
        assert self.process is None, "the hub must not run while enrolling"
        done = subprocess.run(
            [self.binary, "enroll", "--data", self.data, "--station", station, "--device", device],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return done.stdout.strip()

    def order_wipe(self, token):
        """`station-hub revoke --wipe` for the device holding `token`, through
        the running hub's administration socket (or on its stopped store)."""
        token_id = token.split(".")[0]
        done = subprocess.run(
            [self.binary, "revoke", "--data", self.data, "--token-id", token_id, "--wipe"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return done.stdout.strip()

    def start(self, config=None):
        """Serves; `config` names a configuration file (TOML), else the
        built-in one."""
        log = open(self.log_path, "a")
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn"))
        self.process = subprocess.Popen(
            [
                self.binary, "serve", "--data", self.data, "--listen", "127.0.0.1:0",
                "--cache-capacity", str(16 * 1024 * 1024), "--shutdown-grace-secs", "1",
            ] + (["--config", str(config)] if config else []),
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=env,
        )
        log.close()
        ready, _, _ = select.select([self.process.stdout], [], [], 60)
        line = self.process.stdout.readline() if ready else ""
        if not line.startswith("listening on "):
            self.stop()
            with open(self.log_path) as f:
                raise RuntimeError(f"station-hub did not start: {line!r}\n{f.read()}")
        self.url = "http://" + line.split()[-1]
        return self.url

    def stop(self):
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=20)
        self.process.stdout.close()
        self.process = None
        self.url = None


@pytest.fixture
def hub(tmp_path):
    binary = os.environ.get("STATION_HUB_BIN")
    if not binary or not os.access(binary, os.X_OK):
        raise RuntimeError("STATION_HUB_BIN must name the station-hub binary")
    hub = Hub(binary, tmp_path / "hub-data", tmp_path / "hub.log")
    yield hub
    hub.stop()
