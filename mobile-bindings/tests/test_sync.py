"""Sync through the bindings against a real station-hub process: the hub comes
to hold every entry, stores of one station converge through it, and a wrong
token is refused with the auth error."""

import socket
import time

import pytest

import station_mobile as sm
from conftest import OTHER_STATION
from field_day import case_rows, check_field_day, day, record_field_day, timeline_rows


def all_timelines(store):
    return {c.case_id: timeline_rows(store, c.case_id) for c in store.cases()}


def test_stores_of_one_station_converge_through_the_hub(hub, open_store):
    tokens = [hub.enroll(f"phone-{n}") for n in range(3)]
    url = hub.start()
    zhuoma = open_store("zhuoma", worker="zd-01")
    dawa = open_store("dawa", worker="zd-02")
    zhuoma.configure(url, tokens[0])
    dawa.configure(url, tokens[1])

    fd = record_field_day(zhuoma)
    report = zhuoma.sync_now()
    assert (report.pushed, report.pulled) == (fd.entries, 0)
    assert report.durable_through == report.head_seq == fd.entries
    assert report.backlog == 0 and report.parked is None
    status = zhuoma.status()
    assert (status.durable_through, status.backlog) == (status.head_seq, 0)
    assert status.last_sync_ms is not None and status.last_error is None
    assert zhuoma.unacknowledged_count() == 0

    pulled = dawa.sync_now()
    assert (pulled.pushed, pulled.pulled) == (0, fd.entries)
    assert case_rows(dawa) == case_rows(zhuoma)
    assert all_timelines(dawa) == all_timelines(zhuoma)
    check_field_day(dawa, fd)

    # Dawa visits the overdue case and corrects Zhuoma's note; both sync.
    tsewang, tashi = fd.people[3], fd.people[0]
    dawa.record_visit(sm.Visit(
        case_id=tsewang.case_id, visit_date=day(fd.today, 0), kind=sm.VisitKind.HOME,
        duration_minutes=25, notes="ཚེ་དབང་ལྷ་མོ 身体好转", needs_found=[]))
    note = next(e for e in dawa.case_timeline(tashi.case_id) if e.kind == sm.EntryKind.NOTE_ADDED)
    dawa.void_entry(sm.Voiding(event_id=note.event_id, reason="计划改由社工站统一制定"))
    assert dawa.sync_now().pushed == 2
    assert zhuoma.sync_now().pulled == 2
    assert case_rows(zhuoma) == case_rows(dawa)
    assert all_timelines(zhuoma) == all_timelines(dawa)
    assert zhuoma.case(tsewang.case_id).last_visit == day(fd.today, 0)
    assert note.event_id not in [e.event_id for e in zhuoma.case_timeline(tashi.case_id)]
    assert [f.name for f in zhuoma.due_follow_ups(0)] == []
    visit = next(e for e in zhuoma.case_timeline(tsewang.case_id) if e.kind == sm.EntryKind.VISIT)
    assert visit.author == "zd-02"

    # The hub holds everything durably: restarted on its data, it serves a
    # third phone that has never synced the whole station.
    hub.stop()
    url = hub.start()
    third = open_store("third", worker="zd-03")
    third.configure(url, tokens[2])
    assert third.sync_now().pulled == fd.entries + 2
    assert case_rows(third) == case_rows(zhuoma)
    assert all_timelines(third) == all_timelines(zhuoma)
    for store in (zhuoma, dawa):
        status = store.status()
        assert status.backlog == 0 and status.durable_through == status.head_seq


def test_a_wrong_token_gives_the_auth_error_and_keeps_the_backlog(hub, open_store):
    other_station = hub.enroll("chang-zhu", station=OTHER_STATION)
    mine = hub.enroll("phone-1")
    url = hub.start()
    store = open_store()
    fd = record_field_day(store)

    for token in ["sst-not-a-token", other_station]:
        store.configure(url, token)
        with pytest.raises(sm.FieldError.Auth) as refused:
            store.sync_now()
        assert refused.value.reason
        status = store.status()
        assert status.backlog == fd.entries and status.durable_through == 0
        assert status.last_error is not None and "authentication" in status.last_error

    store.configure(url, mine)
    assert store.sync_now().pushed == fd.entries
    assert store.status().last_error is None


def test_sync_needs_a_hub_and_a_usable_token(open_store):
    store = open_store()
    with pytest.raises(sm.FieldError.NotConfigured):
        store.sync_now()
    for url in ["", "127.0.0.1:7400", "ftp://hub", "http://"]:
        with pytest.raises(sm.FieldError.InvalidInput) as bad_url:
            store.configure(url, "token")
        assert bad_url.value.field == "hub_url"
    for token in ["", "two words", "令牌"]:
        with pytest.raises(sm.FieldError.InvalidInput) as bad_token:
            store.configure("http://127.0.0.1:7400", token)
        assert bad_token.value.field == "token"
    assert store.status().hub_url is None


def test_an_unreachable_hub_gives_a_network_error_within_the_bound(open_store):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = open_store(sync_timeout_secs=3)
    store.configure(f"http://127.0.0.1:{port}", "sst-token")
    record_field_day(store)
    started = time.monotonic()
    with pytest.raises(sm.FieldError.Network):
        store.sync_now()
    # A guard against hanging, not a performance figure: the bound is 3 s.
    assert time.monotonic() - started < 30
    assert store.unacknowledged_count() == store.status().head_seq
