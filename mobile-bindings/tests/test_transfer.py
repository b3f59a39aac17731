"""Transfers between stations through the bindings against a real station-hub
process: a request made on a phone of one station reaches the phones of the
station asked when they sync, is accepted there offline, and then that
station's phones hold the file with its whole history while the sending
station's phones keep a closed stub."""

import datetime

import station_mobile as sm
from conftest import OTHER_STATION, STATION
from field_day import day, id_number

OTHER_COMMUNITY = OTHER_STATION + "201"
COMMUNITY = STATION + "003"
NAME = "次仁卓玛 ཚེ་རིང་སྒྲོལ་མ"


def opening(today, serial):
    return sm.CaseOpening(
        name=NAME,
        id_number=id_number(datetime.date(1948, 3, 1), serial, False),
        gender=sm.Gender.FEMALE,
        birth_date="1948-03-01",
        community_code=OTHER_COMMUNITY,
        address="昌珠镇 ཁྲ་འབྲུག",
        phone="",
        language="bo",
        categories=[sm.Category.ELDERLY],
        tier=sm.Tier.KEY,
        source=sm.CaseSource.OUTREACH,
        opened_on=day(today, -20),
    )


def test_a_transfer_reaches_the_station_asked_and_moves_the_file_with_its_history(hub, open_store):
    changzhu_token = hub.enroll("cz-phone", station=OTHER_STATION)
    zedang_token = hub.enroll("zd-phone")
    url = hub.start()
    today = datetime.date.today()
    changzhu = open_store("changzhu", worker="cz-01", station=OTHER_STATION)
    zedang = open_store("zedang", worker="zd-01")
    changzhu.configure(url, changzhu_token)
    zedang.configure(url, zedang_token)

    case = changzhu.open_case(opening(today, 31)).event_id
    changzhu.record_visit(sm.Visit(
        case_id=case, visit_date=day(today, -10), kind=sm.VisitKind.HOME,
        duration_minutes=30, notes="入户走访", needs_found=[]))
    kept = changzhu.open_case(opening(today, 32)).event_id
    request = changzhu.request_transfer(sm.TransferRequest(
        case_id=case, to_station_code=STATION, reason="全家迁居泽当",
        requested_on=day(today, -2))).event_id
    changzhu.sync_now()

    assert zedang.incoming_transfers() == []
    zedang.sync_now()
    incoming = zedang.incoming_transfers()
    assert len(incoming) == 1
    asked = incoming[0]
    assert (asked.request_id, asked.case_id, asked.from_station_code) == (request, case, OTHER_STATION)
    assert (asked.name, asked.reason, asked.requested_on) == (NAME, "全家迁居泽当", day(today, -2))
    assert asked.file_number.startswith("昌珠-") and asked.age_days == 2
    # Only asked: not among the station's cases, and nothing of the other file.
    assert zedang.cases() == []
    assert kept not in [c.case_id for c in zedang.cases()]

    # Accepted on the phone (offline: no sync in between).
    zedang.accept_transfer(sm.TransferAcceptance(
        request_id=request, community_code=COMMUNITY, accepted_on=day(today, -1),
        note="已入户核实"))
    assert zedang.incoming_transfers() == []
    held = zedang.case(case)
    assert (held.status, held.community_code) == (sm.CaseStatus.OPEN, COMMUNITY)

    report = zedang.sync_now()
    assert report.pushed == 1
    held = zedang.case(case)
    assert held.visits == 1 and held.last_visit == day(today, -10)
    assert [c.case_id for c in zedang.cases()] == [case]
    kinds = [e.kind for e in zedang.case_timeline(case)]
    assert sm.EntryKind.VISIT in kinds and sm.EntryKind.TRANSFER_ACCEPTED in kinds

    changzhu.sync_now()
    stub = changzhu.case(case)
    assert (stub.status, stub.transferred_to) == (sm.CaseStatus.CLOSED, STATION)
    assert changzhu.case(kept).status == sm.CaseStatus.OPEN


def test_a_declined_request_leaves_the_file_with_its_station(hub, open_store):
    changzhu_token = hub.enroll("cz-phone", station=OTHER_STATION)
    zedang_token = hub.enroll("zd-phone")
    url = hub.start()
    today = datetime.date.today()
    changzhu = open_store("changzhu", worker="cz-01", station=OTHER_STATION)
    zedang = open_store("zedang", worker="zd-01")
    changzhu.configure(url, changzhu_token)
    zedang.configure(url, zedang_token)
    case = changzhu.open_case(opening(today, 33)).event_id
    request = changzhu.request_transfer(sm.TransferRequest(
        case_id=case, to_station_code=STATION, reason="全家迁居泽当",
        requested_on=day(today, -2))).event_id
    changzhu.sync_now()
    zedang.sync_now()
    zedang.decline_transfer(sm.TransferDecline(
        request_id=request, reason="不在本站辖区", declined_on=day(today, -1)))
    assert zedang.incoming_transfers() == []
    zedang.sync_now()
    assert zedang.cases() == []
    changzhu.sync_now()
    file = changzhu.case(case)
    assert (file.status, file.transferred_to) == (sm.CaseStatus.OPEN, None)
    # Asked again, the station asked sees the new request only.
    again = changzhu.request_transfer(sm.TransferRequest(
        case_id=case, to_station_code=STATION, reason="再次申请", requested_on=day(today, 0))).event_id
    changzhu.sync_now()
    zedang.sync_now()
    assert [t.request_id for t in zedang.incoming_transfers()] == [again]
