"""The district directory through the bindings and a real station-hub
process: two stations' phones open one person's file offline, before the
directory reached them; once synced, each phone is warned of the other
station's file, offline, naming the station and never the person; a third
opening is refused until confirmed with a reason; and the phone's copy
follows the hub when one file closes."""

import datetime

import pytest

import station_mobile as sm
from conftest import OTHER_STATION
from field_day import day, id_number

OTHER_COMMUNITY = "540502101201"


def opening(community, opened_on, number, birth):
    return sm.CaseOpening(
        name="ཚེ་རིང་སྒྲོལ་མ", id_number=number, gender=sm.Gender.FEMALE,
        birth_date=birth.isoformat(), community_code=community, address="", phone="",
        language="bo", categories=[sm.Category.ELDERLY], tier=sm.Tier.KEY,
        source=sm.CaseSource.OUTREACH, opened_on=opened_on)


def test_two_stations_phones_are_warned_of_each_others_file_once_synced(hub, open_store):
    zedang_token = hub.enroll("泽当-1")
    changzhu_token = hub.enroll("昌珠-1", station=OTHER_STATION)
    third_token = hub.enroll("泽当-2")
    url = hub.start()
    zedang = open_store("zedang", worker="zd-01")
    changzhu = open_store("changzhu", worker="cz-01", station=OTHER_STATION)
    zedang.configure(url, zedang_token)
    changzhu.configure(url, changzhu_token)
    today = datetime.date.today()
    birth = datetime.date(1949, 12, 31)
    number = id_number(birth, 417, False)
    assert zedang.directory_state() == sm.DirectoryState(checked=False, lines=0, bytes=0)
    assert zedang.held_elsewhere(number) == []

    # Both open the file offline: nothing warns yet.
    zedang.open_case(opening("540502001003", day(today, -9), number, birth))
    later = changzhu.open_case(opening(OTHER_COMMUNITY, day(today, -2), number, birth)).event_id
    zedang.sync_now()
    changzhu.sync_now()
    zedang.sync_now()

    # Each phone now holds the directory and names the other station.
    state = zedang.directory_state()
    # Two lines per open file: the ID number's, and the weak one of name,
    # birth date and gender.
    assert state.checked and state.lines == 4 and state.bytes > 0
    assert zedang.held_elsewhere(number) == ["昌珠镇"]
    assert changzhu.held_elsewhere(number) == ["泽当街道"]

    # A colleague's phone of 泽当街道 learns both: the station's own file
    # refuses a second opening, and the directory names 昌珠镇.
    third = open_store("third", worker="zd-02")
    third.configure(url, third_token)
    third.sync_now()
    assert third.held_elsewhere(number) == ["昌珠镇"]
    with pytest.raises(sm.FieldError.PersonHasOpenFile):
        third.open_case(opening("540502001004", day(today, 0), number, birth))

    # A person the district holds no file for is named nowhere.
    assert third.held_elsewhere(id_number(birth, 418, False)) == []

    # 昌珠镇 closes its file: once synced, 泽当街道's phone no longer warns.
    changzhu.close_case(sm.CaseClosing(case_id=later, reason="与泽当街道档案重复",
                                       closed_on=day(today, 0)))
    changzhu.sync_now()
    zedang.sync_now()
    assert zedang.held_elsewhere(number) == []
    assert zedang.directory_state().lines == 2


def test_a_person_held_at_another_station_is_opened_only_with_a_reason(hub, open_store):
    zedang_token = hub.enroll("泽当-1")
    changzhu_token = hub.enroll("昌珠-1", station=OTHER_STATION)
    url = hub.start()
    zedang = open_store("zedang", worker="zd-01")
    changzhu = open_store("changzhu", worker="cz-01", station=OTHER_STATION)
    zedang.configure(url, zedang_token)
    changzhu.configure(url, changzhu_token)
    today = datetime.date.today()
    birth = datetime.date(1950, 6, 15)
    number = id_number(birth, 419, False)
    zedang.open_case(opening("540502001003", day(today, -9), number, birth))
    zedang.sync_now()
    changzhu.sync_now()

    with pytest.raises(sm.FieldError.HeldAtAnotherStation) as warned:
        changzhu.open_case(opening(OTHER_COMMUNITY, day(today, 0), number, birth))
    assert warned.value.stations == ["泽当街道"]
    assert "ཚེ་རིང" not in str(warned.value) and number not in str(warned.value)
    with pytest.raises(sm.FieldError.InvalidInput):
        changzhu.open_case_despite_duplicate(
            opening(OTHER_COMMUNITY, day(today, 0), number, birth), " ")
    assert changzhu.cases() == []
    opened = changzhu.open_case_despite_duplicate(
        opening(OTHER_COMMUNITY, day(today, 0), number, birth), "全家迁入本镇，已请原站转出")
    assert [c.case_id for c in changzhu.cases()] == [opened.event_id]
