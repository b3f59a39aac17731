"""Field entry through the generated Python bindings over the real library:
a day of work read back unchanged, refusals that record nothing, a store
closed and reopened."""

import datetime
import gc
import threading
import unicodedata

import pytest

import station_mobile as sm
from conftest import OTHER_STATION, STATION
from field_day import (
    COMMUNITY, case_rows, check_field_day, day, people, record_field_day, timeline_rows,
)


def test_a_day_of_field_work_reads_back_unchanged(open_store):
    store = open_store()
    fd = record_field_day(store)
    check_field_day(store, fd)

    recent = store.recent_entries(100)
    assert len(recent) == fd.entries
    assert recent[0].kind == sm.EntryKind.TRAINING and recent[0].summary == fd.training_title
    by_kind = {}
    for entry in recent:
        by_kind.setdefault(entry.kind, []).append(entry)
    assert [e.summary for e in by_kind[sm.EntryKind.ACTIVITY]] == [fd.activity_title]
    assert [e.summary for e in by_kind[sm.EntryKind.GROUP_SESSION]] == [fd.group_name]
    voided = [e for e in recent if e.voided]
    assert [e.event_id for e in voided] == [fd.voided_visit]
    assert all(e.author == "zd-01" for e in recent)

    status = store.status()
    assert status.station_code == STATION
    assert status.worker_id == "zd-01"
    assert status.head_seq == fd.entries
    assert status.backlog == fd.entries == store.unacknowledged_count()
    assert status.hub_url is None and not status.has_token
    assert status.last_sync_ms is None


def test_text_is_stored_nfc(open_store):
    store = open_store()
    fd = record_field_day(store)
    decomposed = "e\u0301 རྩེད\u0f71 王"
    assert unicodedata.normalize("NFC", decomposed) != decomposed
    recorded = store.add_note(sm.CaseNote(
        case_id=fd.people[0].case_id, kind=sm.NoteKind.REVIEW, text=f"  {decomposed}\n",
        noted_on=day(fd.today, 0)))
    line = store.case_timeline(fd.people[0].case_id)
    note = next(e for e in line if e.event_id == recorded.event_id)
    assert note.summary == unicodedata.normalize("NFC", decomposed) == "\u00e9 རྩེད\u0f71 王"


def personal_data(fd):
    """Every piece of personal data the day holds, to look for in messages."""
    values = []
    for p in fd.people:
        values += [p.name, p.id_number, p.id_number[:17], p.id_number[6:14], p.address]
        if p.phone:
            values.append(p.phone)
    return [v for v in values if v]


def assert_no_personal_data(error, fd, *extra):
    text = " ".join([str(error), repr(error)] + [str(v) for v in vars(error).values()])
    for value in personal_data(fd) + list(extra):
        assert value not in text, f"{value!r} leaked into {text!r}"


def test_bad_input_raises_typed_errors_and_records_nothing(open_store):
    store = open_store()
    fd = record_field_day(store)
    before = (case_rows(store), store.status().head_seq, store.unacknowledged_count(),
              [timeline_rows(store, p.case_id) for p in fd.people])
    today = fd.today
    tashi = fd.people[0]

    # A new person whose ID number has a wrong check character.
    newcomer = fd.people[1].opening(today)
    newcomer.name = "ཚེ་རིང་ཆོས་སྒྲོན"
    good = newcomer.id_number
    newcomer.id_number = good[:17] + ("0" if good[17] != "0" else "1")
    with pytest.raises(sm.FieldError.InvalidInput) as bad_id:
        store.open_case(newcomer)
    assert bad_id.value.field == "case_opened.id_number"
    assert "check character" in bad_id.value.rule
    assert_no_personal_data(bad_id.value, fd, newcomer.name, good, newcomer.id_number, good[17])

    with pytest.raises(sm.FieldError.InvalidInput) as future:
        store.record_visit(sm.Visit(
            case_id=tashi.case_id, visit_date=day(today, 2), kind=sm.VisitKind.HOME,
            duration_minutes=20, notes=tashi.name, needs_found=[]))
    assert future.value.field == "visit_recorded.visit_date"
    assert future.value.rule == "must not be more than one day in the future"
    assert_no_personal_data(future.value, fd)

    with pytest.raises(sm.FieldError.UnknownCase) as unknown:
        store.record_visit(sm.Visit(
            case_id=sm.new_entry_id(), visit_date=day(today, 0), kind=sm.VisitKind.PHONE,
            duration_minutes=5, notes="", needs_found=[]))
    assert unknown.value.field == "visit_recorded.case_id"

    with pytest.raises(sm.FieldError.InvalidInput) as negative:
        store.link_resource(sm.Resource(
            case_id=tashi.case_id, linked_on=day(today, 0), kind=sm.ResourceKind.CASH,
            source="乃东区民政局", cash_fen=-100, in_kind_fen=0, description=tashi.address))
    assert negative.value.field == "resource_linked.cash_fen"
    assert negative.value.rule == "must not be negative"
    assert_no_personal_data(negative.value, fd)

    with pytest.raises(sm.FieldError.InvalidInput) as malformed:
        store.add_note(sm.CaseNote(case_id="not-a-case", kind=sm.NoteKind.PLAN, text="x",
                                   noted_on=day(today, 0)))
    assert malformed.value.field == "case_note_added.case_id"

    long_name = fd.people[1].opening(today)
    long_name.name = "བཀྲ་ཤིས་" * 10
    with pytest.raises(sm.FieldError.InvalidInput) as too_long:
        store.open_case(long_name)
    assert too_long.value.field == "case_opened.name"
    assert_no_personal_data(too_long.value, fd, long_name.name)

    wrong_gender = fd.people[2].opening(today)
    wrong_gender.gender = sm.Gender.FEMALE
    with pytest.raises(sm.FieldError.InvalidInput) as gender:
        store.open_case(wrong_gender)
    assert gender.value.field == "case_opened.gender"
    assert_no_personal_data(gender.value, fd)

    with pytest.raises(sm.FieldError.CaseAlreadyOpen):
        store.reopen_case(sm.CaseReopening(case_id=tashi.case_id, reason="x",
                                           reopened_on=day(today, 0)))
    # 一人一档: the same person again, under another name, is refused naming the open file.
    again = tashi.opening(today)
    again.name = "བཀྲ་ཤིས་བདེ་ལེགས"
    again.id_number = again.id_number.lower()
    with pytest.raises(sm.FieldError.PersonHasOpenFile) as second:
        store.open_case(again)
    assert second.value.field == "case_opened.id_number"
    assert second.value.case_id == tashi.case_id
    assert tashi.case_id in str(second.value)
    assert_no_personal_data(second.value, fd, again.name, again.id_number)
    with pytest.raises(sm.FieldError.UnknownEntry):
        store.void_entry(sm.Voiding(event_id=sm.new_entry_id(), reason="x"))
    with pytest.raises(sm.FieldError.InvalidInput) as twice:
        store.void_entry(sm.Voiding(event_id=fd.voided_visit, reason="again"))
    assert twice.value.field == "event_voided.voided_event_id"
    with pytest.raises(sm.FieldError.InvalidInput) as bad_key:
        store.record_training(sm.Training(held_on=day(today, 0), kind=sm.TrainingKind.TRAINING,
                                          title="t", trainees=1, minutes=60,
                                          entry_id="00000000-0000-4000-8000-000000000000"))
    assert bad_key.value.field == "entry_id"

    after = (case_rows(store), store.status().head_seq, store.unacknowledged_count(),
             [timeline_rows(store, p.case_id) for p in fd.people])
    assert after == before


def test_closed_cases_refuse_visits(open_store):
    store = open_store()
    fd = record_field_day(store)
    tsewang = fd.people[3]
    store.close_case(sm.CaseClosing(case_id=tsewang.case_id, reason="已故",
                                    closed_on=day(fd.today, 0)))
    with pytest.raises(sm.FieldError.CaseClosed) as closed:
        store.record_visit(sm.Visit(case_id=tsewang.case_id, visit_date=day(fd.today, 0),
                                    kind=sm.VisitKind.HOME, duration_minutes=10, notes="",
                                    needs_found=[]))
    assert closed.value.field == "visit_recorded.case_id"
    assert [f.name for f in store.due_follow_ups(0)] == []
    assert store.case(tsewang.case_id).next_due is None


def test_two_files_of_one_person_are_merged(open_store):
    store = open_store()
    fd = record_field_day(store)
    tsewang = fd.people[3]
    store.close_case(sm.CaseClosing(case_id=tsewang.case_id, reason="迁出",
                                    closed_on=day(fd.today, 0)))
    again = store.open_case(tsewang.opening(fd.today)).event_id
    store.merge_cases(sm.CaseMerging(survivor_case_id=again, absorbed_case_id=tsewang.case_id,
                                     reason="同一人两份档案", merged_on=day(fd.today, 0)))
    old = store.case(tsewang.case_id)
    assert old.merged_into == again and old.status == sm.CaseStatus.CLOSED
    assert store.case(again).merged_into is None
    kinds = [e.kind for e in store.case_timeline(again)]
    assert sm.EntryKind.CASES_MERGED in kinds and sm.EntryKind.CASE_CLOSED in kinds
    with pytest.raises(sm.FieldError.InvalidInput) as refused:
        store.merge_cases(sm.CaseMerging(survivor_case_id=again,
                                         absorbed_case_id=tsewang.case_id, reason="x",
                                         merged_on=day(fd.today, 0)))
    assert refused.value.field == "cases_merged.absorbed_case_id"
    store.dismiss_duplicate(sm.DuplicateDismissal(case_id=again,
                                                  duplicate_of_case_id=tsewang.case_id,
                                                  reason="核实", dismissed_on=day(fd.today, 0)))


def test_saving_the_same_entry_twice_records_it_once(open_store):
    store = open_store()
    fd = record_field_day(store)
    entry_id = sm.new_entry_id()
    visit = sm.Visit(case_id=fd.people[0].case_id, visit_date=day(fd.today, 0),
                     kind=sm.VisitKind.PHONE, duration_minutes=5, notes="电话回访",
                     needs_found=[], entry_id=entry_id)
    first = store.record_visit(visit)
    again = store.record_visit(visit)
    assert first.event_id == again.event_id == entry_id
    assert (first.duplicate, again.duplicate) == (False, True)
    assert again.origin_seq == first.origin_seq == store.status().head_seq
    assert store.case(fd.people[0].case_id).visits == 2


def test_closing_and_reopening_the_store_keeps_everything(open_store):
    store = open_store("phone")
    fd = record_field_day(store)
    cases = case_rows(store)
    timelines = [timeline_rows(store, p.case_id) for p in fd.people]
    recent = store.recent_entries(1000)
    origin = store.status().origin_id

    with pytest.raises(sm.FieldError.Storage) as busy:
        open_store("phone")
    assert "already open" in busy.value.reason

    del store
    gc.collect()
    store = open_store("phone")
    assert store.status().origin_id == origin
    assert case_rows(store) == cases
    assert [timeline_rows(store, p.case_id) for p in fd.people] == timelines
    assert store.recent_entries(1000) == recent
    check_field_day(store, fd)
    assert store.unacknowledged_count() == fd.entries

    del store
    gc.collect()
    with pytest.raises(sm.FieldError.WrongStore) as station:
        open_store("phone", station=OTHER_STATION)
    assert STATION in station.value.reason
    with pytest.raises(sm.FieldError.WrongStore) as worker:
        open_store("phone", worker="zd-02")
    assert "zd-01" not in worker.value.reason
    assert open_store("phone").status().head_seq == fd.entries


def test_bad_identity_is_refused_before_anything_is_created(open_store, tmp_path):
    with pytest.raises(sm.FieldError.InvalidInput) as station:
        open_store("new", station="54050")
    assert station.value.field == "station_code"
    with pytest.raises(sm.FieldError.InvalidInput) as worker:
        open_store("new", worker="  ")
    assert worker.value.field == "worker_id"
    assert not (tmp_path / "new").exists()


def test_one_store_is_shared_by_threads(open_store):
    store = open_store()
    case_id = store.open_case(people()[0].opening(datetime.date.today())).event_id
    errors = []

    def visits(n):
        try:
            for i in range(n):
                store.record_visit(sm.Visit(
                    case_id=case_id, visit_date=datetime.date.today().isoformat(),
                    kind=sm.VisitKind.HOME, duration_minutes=i, notes=f"第{i}次",
                    needs_found=[]))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=visits, args=(20,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.case(case_id).visits == 80
    assert store.status().head_seq == 81
    assert len(store.recent_entries(1000)) == 81
    assert store.case(case_id).community_code == COMMUNITY


def test_a_visit_that_found_nobody_is_shown_and_leaves_the_follow_up_due(open_store):
    store = open_store()
    fd = record_field_day(store)
    tsewang = fd.people[3]
    due_before = store.case(tsewang.case_id).next_due
    recorded = store.record_visit_attempt(sm.VisitAttempt(
        case_id=tsewang.case_id, attempted_on=day(fd.today, 0),
        reason=sm.AbsenceReason.AWAY, notes="邻居说去拉萨看病了 ལྷ་ས།"))
    assert not recorded.duplicate
    line = store.case_timeline(tsewang.case_id)[-1]
    assert line.kind == sm.EntryKind.VISIT_ATTEMPT
    assert line.event_id == recorded.event_id
    assert line.summary == "邻居说去拉萨看病了 ལྷ་ས།"
    assert store.case(tsewang.case_id).next_due == due_before

    head = store.status().head_seq
    with pytest.raises(sm.FieldError.InvalidInput) as future:
        store.record_visit_attempt(sm.VisitAttempt(
            case_id=tsewang.case_id, attempted_on=day(fd.today, 3),
            reason=sm.AbsenceReason.NOBODY_HOME, notes=""))
    assert future.value.field == "visit_attempted.attempted_on"
    assert store.status().head_seq == head
