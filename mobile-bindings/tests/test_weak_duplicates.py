"""The weaker duplicate check through the bindings and a real station-hub
process: people without an ID number are opened by name, gender and birth
date; once the directory reached it, another station's phone is told of a
*possible* duplicate, offline, by station name only, for a person with or
without an ID number; the warning never refuses, and a person born another
day is not named."""

import datetime

import pytest

import station_mobile as sm
from conftest import OTHER_STATION
from field_day import day, id_number

OTHER_COMMUNITY = "540502101201"


def person(community, opened_on, name, birth, number=""):
    return sm.CaseOpening(
        name=name, id_number=number, gender=sm.Gender.MALE,
        birth_date=birth.isoformat(), community_code=community, address="", phone="",
        language="bo", categories=[sm.Category.CHILD_IN_DIFFICULTY], tier=sm.Tier.KEY,
        source=sm.CaseSource.OUTREACH, opened_on=opened_on)


def test_a_file_is_opened_without_an_id_number_and_its_rules_are_kept(open_store):
    store = open_store("zedang", worker="zd-01")
    today = datetime.date.today()
    child = person("540502001003", day(today, 0), "扎西·次仁", datetime.date(2019, 6, 1))
    opened = store.open_case(child)
    assert [c.case_id for c in store.cases()] == [opened.event_id]
    # A sibling of the same name born another year: no number compares
    # them, so neither a refusal nor a warning.
    sibling = person("540502001003", day(today, 0), "扎西·次仁", datetime.date(2020, 6, 1))
    assert store.possible_duplicates(sibling) == []
    store.open_case(sibling)
    # Born tomorrow: refused, and nothing recorded.
    with pytest.raises(sm.FieldError.InvalidInput) as refused:
        store.open_case(person("540502001003", day(today, 0), "卓玛",
                               today + datetime.timedelta(days=1)))
    assert refused.value.field == "case_opened.birth_date"
    assert len(store.cases()) == 2


def test_an_id_less_person_is_a_possible_duplicate_across_stations_never_refused(
        hub, open_store):
    zedang_token = hub.enroll("泽当-1")
    changzhu_token = hub.enroll("昌珠-1", station=OTHER_STATION)
    url = hub.start()
    zedang = open_store("zedang", worker="zd-01")
    changzhu = open_store("changzhu", worker="cz-01", station=OTHER_STATION)
    zedang.configure(url, zedang_token)
    changzhu.configure(url, changzhu_token)
    today = datetime.date.today()
    child_birth = datetime.date(2019, 6, 1)
    elder_birth = datetime.date(1949, 12, 31)
    number = id_number(elder_birth, 417, True)

    # Zedang holds a child without an ID card, and an elder with one.
    zedang.open_case(person("540502001003", day(today, -3), "扎西·次仁", child_birth))
    zedang.open_case(person("540502001003", day(today, -3), "次仁", elder_birth, number))
    # Its own phone is told of the child at its own station.
    assert zedang.possible_duplicates(
        person("540502001003", day(today, 0), "扎西 次仁", child_birth)) == ["540502001"]
    zedang.sync_now()
    changzhu.sync_now()

    # Offline at Changzhu: the child, written another way, is a possible
    # duplicate at 泽当街道, named by station only.
    again = person(OTHER_COMMUNITY, day(today, 0), "扎西.次仁", child_birth)
    assert changzhu.possible_duplicates(again) == ["泽当街道"]
    # Not refused, and no reason asked.
    opened = changzhu.open_case(again)
    assert [c.case_id for c in changzhu.cases()] == [opened.event_id]
    # The elder, who has an ID number at Zedang, brought to Changzhu
    # without a card: a possible duplicate too.
    assert changzhu.possible_duplicates(
        person(OTHER_COMMUNITY, day(today, 0), "次仁", elder_birth)) == ["泽当街道"]
    # Another child of that name, born another day: none.
    assert changzhu.possible_duplicates(
        person(OTHER_COMMUNITY, day(today, 0), "扎西次仁", datetime.date(2019, 6, 2))) == []
