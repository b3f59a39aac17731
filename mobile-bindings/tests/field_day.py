"""A day of field work at 泽当街道 (540502001), entered through the bindings, and
what the store must read back afterwards. Shared by the local and the sync tests."""

import datetime
import unicodedata
from dataclasses import dataclass, field

import station_mobile as sm

COMMUNITY = "540502001001"
ID_WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]


def id_number(birth, serial, male):
    """A GB 11643 resident ID number of 乃东区 (540502) with its check character."""
    digit = serial * 2 + (1 if male else 0)
    body = f"540502{birth:%Y%m%d}{digit % 1000:03d}"
    total = sum(int(d) * w for d, w in zip(body, ID_WEIGHTS))
    return body + "10X98765432"[total % 11]


def day(today, days):
    return (today + datetime.timedelta(days=days)).isoformat()


@dataclass
class Person:
    name: str
    birth: datetime.date
    male: bool
    serial: int
    tier: "sm.Tier"
    categories: list
    opened_days_ago: int
    address: str
    phone: str
    language: str
    case_id: str = ""

    @property
    def id_number(self):
        return id_number(self.birth, self.serial, self.male)

    def opening(self, today):
        return sm.CaseOpening(
            name=self.name,
            id_number=self.id_number,
            gender=sm.Gender.MALE if self.male else sm.Gender.FEMALE,
            birth_date=self.birth.isoformat(),
            community_code=COMMUNITY,
            address=self.address,
            phone=self.phone,
            language=self.language,
            categories=self.categories,
            tier=self.tier,
            source=sm.CaseSource.OUTREACH,
            opened_on=day(today, -self.opened_days_ago),
        )


def people():
    return [
        Person("བཀྲ་ཤིས་ཆོས་སྒྲོན", datetime.date(1941, 3, 12), False, 101, sm.Tier.HIGH_RISK,
               [sm.Category.DIBAO, sm.Category.ELDERLY], 30, "泽当街道 རྩེད་ཐང 3组", "0893-7821234", "bo"),
        Person("王秀英", datetime.date(2013, 9, 1), False, 102, sm.Tier.KEY,
               [sm.Category.LEFT_BEHIND_CHILD], 10, "乃东区泽当街道幸福路12号", "13908930001", "zh"),
        Person("ཚེ་རིང་དབང་འདུས", datetime.date(1975, 1, 30), True, 103, sm.Tier.GENERAL,
               [sm.Category.DISABLED], 100, "སྣེ་གདོང 乃东", "", "bo"),
        Person("ཚེ་དབང་ལྷ་མོ", datetime.date(1950, 6, 15), False, 104, sm.Tier.HIGH_RISK,
               [sm.Category.TEKUN], 20, "", "", "bo"),
    ]


@dataclass
class FieldDay:
    """What was entered, to check what reads back."""
    today: datetime.date
    people: list
    entries: int = 0
    visit_notes: dict = field(default_factory=dict)
    voided_visit: str = ""
    activity_title: str = ""
    training_title: str = ""
    group_name: str = ""

    def by_name(self, name):
        return next(p for p in self.people if p.name == name)


def record_field_day(store, today=None):
    """Enters a full day: four cases, every entry form, one mistake voided."""
    today = today or datetime.date.today()
    fd = FieldDay(today=today, people=people())
    for text in [p.name for p in fd.people] + [p.address for p in fd.people]:
        assert unicodedata.normalize("NFC", text) == text

    def count(recorded):
        assert not recorded.duplicate
        fd.entries += 1
        return recorded

    for p in fd.people:
        p.case_id = count(store.open_case(p.opening(today))).event_id
    tashi, wang, tsering, tsewang = fd.people

    notes = "ཨ་མ་ལགས། ཁྱེད་རང་སྐུ་གཟུགས་བདེ་པོ་ཡིན་པས། 老人身体尚可，需要取暖煤。"
    count(store.record_visit(sm.Visit(
        case_id=tashi.case_id, visit_date=day(today, 0), kind=sm.VisitKind.HOME,
        duration_minutes=45, notes=notes, needs_found=["ལྟོ་ཆས། སྨན།", "取暖煤"])))
    fd.visit_notes[tashi.name] = notes

    wrong = count(store.record_visit(sm.Visit(
        case_id=wang.case_id, visit_date=day(today, -4), kind=sm.VisitKind.HOME,
        duration_minutes=30, notes="日期填错", needs_found=[])))
    fd.voided_visit = wrong.event_id
    count(store.void_entry(sm.Voiding(event_id=wrong.event_id, reason="走访日期填错，应为3天前")))
    wang_notes = "孩子在校表现良好，奶奶照看。"
    count(store.record_visit(sm.Visit(
        case_id=wang.case_id, visit_date=day(today, -3), kind=sm.VisitKind.FOLLOW_UP,
        duration_minutes=30, notes=wang_notes, needs_found=["课外辅导"])))
    fd.visit_notes[wang.name] = wang_notes
    count(store.assess_case(sm.Assessment(
        case_id=wang.case_id, tier=sm.Tier.HIGH_RISK, reason="监护人住院，需每周探访",
        assessed_on=day(today, 0))))
    wang.tier = sm.Tier.HIGH_RISK

    count(store.add_note(sm.CaseNote(
        case_id=tashi.case_id, kind=sm.NoteKind.PLAN,
        text="冬季每周探访一次 དགུན་ཁ་གཟའ་འཁོར་རེར་ཐེངས་གཅིག", noted_on=day(today, 0))))
    count(store.link_resource(sm.Resource(
        case_id=tashi.case_id, linked_on=day(today, 0), kind=sm.ResourceKind.CASH,
        source="乃东区民政局临时救助", cash_fen=50_000, in_kind_fen=0, description="临时救助金")))
    count(store.link_resource(sm.Resource(
        case_id=None, linked_on=day(today, 0), kind=sm.ResourceKind.IN_KIND,
        source="爱心企业", cash_fen=0, in_kind_fen=120_000, description="棉被二十床")))

    count(store.verify_beneficiary(sm.Verification(
        case_id=tsering.case_id, verified_on=day(today, -1),
        categories=[sm.Category.DISABLED, sm.Category.DIBAO], still_eligible=True,
        notes="残疾证已核实")))
    tsering.categories = [sm.Category.DIBAO, sm.Category.DISABLED]
    count(store.close_case(sm.CaseClosing(
        case_id=tsering.case_id, reason="迁居拉萨", closed_on=day(today, -1))))
    count(store.reopen_case(sm.CaseReopening(
        case_id=tsering.case_id, reason="已迁回 རྩེད་ཐང", reopened_on=day(today, 0),
        tier=sm.Tier.KEY)))
    tsering.tier = sm.Tier.KEY

    fd.activity_title = "党建+公益：冬季送温暖 དགུན་དུས་དྲོད་འཇགས"
    count(store.record_activity(sm.CommunityActivity(
        held_on=day(today, 0), community_code=COMMUNITY, kind=sm.ActivityKind.PARTY_PUBLIC_WELFARE,
        title=fd.activity_title, participants=35, person_times=40, volunteers=6,
        volunteer_minutes=720)))
    fd.group_name = "留守儿童成长小组"
    count(store.record_group_session(sm.GroupSession(
        group_name=fd.group_name, session_number=3, held_on=day(today, 0),
        community_code=COMMUNITY, participants=9, topic="情绪认识")))
    fd.training_title = "个案管理督导"
    count(store.record_training(sm.Training(
        held_on=day(today, -1), kind=sm.TrainingKind.SUPERVISION, title=fd.training_title,
        trainees=2, minutes=120)))
    return fd


def case_rows(store):
    """The cases as comparable tuples."""
    return sorted(
        (c.case_id, c.name, c.community_code, tuple(c.categories), c.tier, c.status,
         c.opened_on, c.reopened_on, c.last_visit, c.visits, c.next_due, c.last_event_id)
        for c in store.cases()
    )


def timeline_rows(store, case_id):
    return [(e.event_id, e.kind, e.date, e.summary, e.tier, e.author)
            for e in store.case_timeline(case_id)]


def check_field_day(store, fd):
    """Asserts that everything of the day reads back unchanged."""
    today = fd.today
    cases = {c.name: c for c in store.cases()}
    assert sorted(cases) == sorted(p.name for p in fd.people)
    for p in fd.people:
        c = cases[p.name]
        assert c.case_id == p.case_id
        assert c.community_code == COMMUNITY
        assert c.tier == p.tier
        assert c.categories == p.categories
        assert c.status == sm.CaseStatus.OPEN
        assert c.opened_on == day(today, -p.opened_days_ago)
    tashi, wang, tsering, tsewang = fd.people
    assert cases[tashi.name].last_visit == day(today, 0)
    assert cases[tashi.name].next_due == day(today, 7)
    assert cases[wang.name].visits == 1, "the voided visit does not count"
    assert cases[wang.name].next_due == day(today, 4)
    assert cases[tsering.name].reopened_on == day(today, 0)
    assert cases[tsering.name].next_due == day(today, 30)
    assert cases[tsewang.name].next_due == day(today, -13)

    overdue = store.due_follow_ups(0)
    assert [(f.name, f.overdue, f.days_overdue) for f in overdue] == [(tsewang.name, True, 13)]
    week = store.due_follow_ups(7)
    assert [f.name for f in week] == [tsewang.name, wang.name, tashi.name]

    tashi_line = store.case_timeline(tashi.case_id)
    assert [e.kind for e in tashi_line] == [
        sm.EntryKind.CASE_OPENED, sm.EntryKind.VISIT, sm.EntryKind.NOTE_ADDED,
        sm.EntryKind.RESOURCE]
    assert tashi_line[0].summary == tashi.name
    assert tashi_line[1].summary == fd.visit_notes[tashi.name]
    assert tashi_line[2].summary == "冬季每周探访一次 དགུན་ཁ་གཟའ་འཁོར་རེར་ཐེངས་གཅིག"
    wang_line = store.case_timeline(wang.case_id)
    assert fd.voided_visit not in [e.event_id for e in wang_line]
    assert [e.kind for e in wang_line] == [
        sm.EntryKind.CASE_OPENED, sm.EntryKind.VISIT, sm.EntryKind.CASE_ASSESSED]
    assert wang_line[2].tier == sm.Tier.HIGH_RISK
    tsering_line = store.case_timeline(tsering.case_id)
    assert [e.kind for e in tsering_line][-2:] == [
        sm.EntryKind.CASE_CLOSED, sm.EntryKind.CASE_REOPENED]
    assert tsering_line[-1].summary == "已迁回 རྩེད་ཐང"
