"""Encryption at rest through the generated Python bindings: a store opened
with the app's KeyProvider keeps no personal data in its files, opens again
with the same provider, and refuses a provider that cannot unwrap its key,
changing nothing; lock() drops the key and unlock() asks the provider again,
also after an idle time; a device the hub orders wiped uploads its entries,
then is wiped."""

import gc
import os
import time

import pytest

import station_mobile as sm
from conftest import STATION, XorProvider
from field_day import COMMUNITY


class RefusingProvider(sm.KeyProvider):
    """A key store whose user has not authenticated."""

    def wrap(self, data_key):
        raise sm.KeyProviderError.Failed("user not authenticated")

    def unwrap(self, wrapped):
        raise sm.KeyProviderError.Failed("user not authenticated")


NAME = "次仁卓玛"
ID_NUMBER = "11010519491231002X"
PHONE = "13908930123"
ADDRESS = "格桑路十二号"


def opening():
    return sm.CaseOpening(
        entry_id=None,
        name=NAME,
        id_number=ID_NUMBER,
        gender=sm.Gender.FEMALE,
        birth_date="1949-12-31",
        community_code=COMMUNITY,
        address=ADDRESS,
        phone=PHONE,
        language="bo",
        categories=[sm.Category.ELDERLY],
        tier=sm.Tier.HIGH_RISK,
        source=sm.CaseSource.OUTREACH,
        opened_on="2026-11-01",
    )


def files_holding(folder, text):
    needle = text.encode()
    found = []
    for root, _, files in os.walk(folder):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                if needle in f.read():
                    found.append(name)
    return found


def test_a_store_opened_with_a_key_provider_is_encrypted(tmp_path):
    path = str(tmp_path / "phone")
    provider = XorProvider(b"platform-secret")
    store = sm.FieldStore.open_with_options(path, STATION, "zd-01", provider, sm.StoreOptions())
    case_id = store.open_case(opening()).event_id
    assert provider.calls == ["wrap"]
    del store
    gc.collect()
    for text in (NAME, ID_NUMBER, PHONE, ADDRESS):
        assert files_holding(path, text) == [], text

    store = sm.FieldStore.open_with_options(path, STATION, "zd-01", provider, sm.StoreOptions())
    assert provider.calls == ["wrap", "unwrap"]
    assert [c.case_id for c in store.cases()] == [case_id]
    del store
    gc.collect()


def test_a_wrong_or_refusing_provider_is_refused_and_changes_nothing(tmp_path):
    path = str(tmp_path / "phone")
    store = sm.FieldStore.open_with_options(
        path, STATION, "zd-01", XorProvider(b"right"), sm.StoreOptions()
    )
    store.open_case(opening())
    del store
    gc.collect()
    header = open(os.path.join(path, "seal.json"), "rb").read()

    with pytest.raises(sm.FieldError.Storage) as refused:
        sm.FieldStore.open_with_options(path, STATION, "zd-01", XorProvider(b"wrong"), sm.StoreOptions())
    assert "wrong key" in str(refused.value)
    with pytest.raises(sm.FieldError.Storage) as refused:
        sm.FieldStore.open_with_options(path, STATION, "zd-01", RefusingProvider(), sm.StoreOptions())
    assert "user not authenticated" in str(refused.value)

    assert open(os.path.join(path, "seal.json"), "rb").read() == header
    store = sm.FieldStore.open_with_options(
        path, STATION, "zd-01", XorProvider(b"right"), sm.StoreOptions()
    )
    assert len(store.cases()) == 1


def test_a_lost_device_uploads_its_entries_then_is_wiped(tmp_path, hub):
    token = hub.enroll("phone-1")
    url = hub.start()
    path = str(tmp_path / "phone")
    provider = XorProvider(b"platform-secret")
    store = sm.FieldStore.open_with_options(path, STATION, "zd-01", provider, sm.StoreOptions())
    store.configure(url, token)
    case_id = store.open_case(opening()).event_id
    assert store.sync_now().durable_through == 1
    store.add_note(sm.CaseNote(case_id=case_id, kind=sm.NoteKind.PLAN, text="家访计划", noted_on="2026-11-02"))

    assert hub.order_wipe(token).endswith("wipe pending")
    report = store.sync_now()
    assert report.wiped
    assert (report.pushed, report.durable_through, report.backlog) == (1, 2, 0)

    for call in (store.cases, store.status, store.sync_now, store.unacknowledged_count):
        with pytest.raises(sm.FieldError.Wiped) as wiped:
            call()
        assert "wiped" in str(wiped.value)
    with pytest.raises(sm.FieldError.Wiped):
        store.open_case(opening())
    del store
    gc.collect()
    for text in (NAME, ID_NUMBER, PHONE, ADDRESS, token):
        assert files_holding(path, text) == [], text
    assert sorted(os.listdir(path)) == ["seal.json", "station.lock"]
    with pytest.raises(sm.FieldError.Wiped):
        sm.FieldStore.open_with_options(path, STATION, "zd-01", provider, sm.StoreOptions())


class SwitchProvider(XorProvider):
    """A key store that asks the user first: it refuses while `refusing`."""

    refusing = False

    def unwrap(self, wrapped):
        if self.refusing:
            raise sm.KeyProviderError.Failed("user not authenticated")
        return super().unwrap(wrapped)


def test_lock_drops_the_key_and_unlock_asks_the_provider_again(tmp_path):
    path = str(tmp_path / "phone")
    provider = SwitchProvider(b"platform-secret")
    store = sm.FieldStore.open_with_options(path, STATION, "zd-01", provider, sm.StoreOptions())
    case_id = store.open_case(opening()).event_id
    assert not store.is_locked()

    store.lock()
    assert store.is_locked()
    for call in (store.cases, store.status, store.unacknowledged_count, store.sync_now):
        with pytest.raises(sm.FieldError.Locked):
            call()
    with pytest.raises(sm.FieldError.Locked):
        store.open_case(opening())
    # Its files are closed: the folder opens elsewhere meanwhile.
    other = sm.FieldStore.open_with_options(path, STATION, "zd-01", provider, sm.StoreOptions())
    assert [c.case_id for c in other.cases()] == [case_id]
    del other
    gc.collect()

    provider.refusing = True
    with pytest.raises(sm.FieldError.Storage) as refused:
        store.unlock()
    assert "user not authenticated" in str(refused.value)
    assert store.is_locked()
    provider.refusing = False
    calls = len(provider.calls)
    store.unlock()
    assert provider.calls[calls:] == ["unwrap"]
    assert not store.is_locked()
    assert [c.case_id for c in store.cases()] == [case_id]
    store.unlock()
    assert provider.calls[calls:] == ["unwrap"], "unlocking an open store asks nothing"


def test_a_store_locks_itself_after_its_idle_time(tmp_path):
    path = str(tmp_path / "phone")
    provider = XorProvider(b"platform-secret")
    options = sm.StoreOptions(lock_after_idle_secs=1)
    store = sm.FieldStore.open_with_options(path, STATION, "zd-01", provider, options)
    store.open_case(opening())
    deadline = time.monotonic() + 20
    while not store.is_locked():
        assert time.monotonic() < deadline, "the store did not lock itself"
        time.sleep(0.1)
    with pytest.raises(sm.FieldError.Locked):
        store.cases()
    store.unlock()
    assert len(store.cases()) == 1
