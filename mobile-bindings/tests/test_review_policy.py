"""The district's review policy through the bindings and a real station-hub
process configured so that case plans and closures need a supervisor's
review: the phone learns it at its first sync, keeps it across a reopen,
and records each plan and closure with its review request, offline, which
the supervisor's queue then holds."""

import datetime
import subprocess

import station_mobile as sm
from field_day import COMMUNITY, day, id_number


def review_config(hub, tmp_path):
    default = subprocess.run(
        [hub.binary, "config", "--print-default"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    text = default.replace("case_plan = false\nclosure = false", "case_plan = true\nclosure = true")
    assert text != default
    path = tmp_path / "hub.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_hubs_review_policy_reaches_the_phone_which_asks_for_the_reviews_it_names(
        hub, open_store, tmp_path):
    token = hub.enroll("泽当-1")
    url = hub.start(config=review_config(hub, tmp_path))
    store = open_store()
    assert store.review_policy() == sm.ReviewPolicy(
        tier_change=False, case_plan=False, closure=False)
    store.configure(url, token)
    store.sync_now()
    told = sm.ReviewPolicy(tier_change=False, case_plan=True, closure=True)
    assert store.review_policy() == told
    del store
    store = open_store()
    assert store.review_policy() == told
    assert store.needs_review(sm.ReviewSubject.CLOSURE)
    assert not store.needs_review(sm.ReviewSubject.TIER_CHANGE)

    today = datetime.date.today()
    birth = datetime.date(1950, 6, 15)
    case_id = store.open_case(sm.CaseOpening(
        name="ཚེ་དབང་ལྷ་མོ", id_number=id_number(birth, 311, False), gender=sm.Gender.FEMALE,
        birth_date=birth.isoformat(), community_code=COMMUNITY, address="", phone="",
        language="bo", categories=[sm.Category.ELDERLY], tier=sm.Tier.KEY,
        source=sm.CaseSource.OUTREACH, opened_on=day(today, -5))).event_id
    tier = store.assess_case(sm.Assessment(
        case_id=case_id, tier=sm.Tier.HIGH_RISK, reason="独居", assessed_on=day(today, 0),
        last_seen_event_id=None))
    assert tier.review_request_id is None
    plan = store.add_note(sm.CaseNote(
        case_id=case_id, kind=sm.NoteKind.PLAN, text="每三天探访", noted_on=day(today, 0)))
    closure = store.close_case(sm.CaseClosing(
        case_id=case_id, reason="迁出", closed_on=day(today, 0)))
    assert plan.review_request_id and closure.review_request_id
    waiting = {r.request_id: (r.subject, r.state) for r in store.reviews(False)}
    assert waiting == {
        plan.review_request_id: (sm.ReviewSubject.CASE_PLAN, sm.ReviewState.PENDING),
        closure.review_request_id: (sm.ReviewSubject.CLOSURE, sm.ReviewState.PENDING),
    }
    assert store.sync_now().pushed == 6
    assert store.unacknowledged_count() == 0
