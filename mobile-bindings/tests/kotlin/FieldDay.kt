// A day of field work at 泽当街道 (540502001), entered through the Kotlin
// bindings, and what the store must read back afterwards. Mirrors
// field_day.py of the Python suite.

package org.stationsync.mobile.tests

import java.time.LocalDate
import org.stationsync.mobile.ActivityKind
import org.stationsync.mobile.Assessment
import org.stationsync.mobile.CaseClosing
import org.stationsync.mobile.CaseNote
import org.stationsync.mobile.CaseOpening
import org.stationsync.mobile.CaseReopening
import org.stationsync.mobile.CaseSource
import org.stationsync.mobile.CaseStatus
import org.stationsync.mobile.Category
import org.stationsync.mobile.CommunityActivity
import org.stationsync.mobile.EntryKind
import org.stationsync.mobile.FieldStore
import org.stationsync.mobile.Gender
import org.stationsync.mobile.GroupSession
import org.stationsync.mobile.NoteKind
import org.stationsync.mobile.Recorded
import org.stationsync.mobile.Resource
import org.stationsync.mobile.ResourceKind
import org.stationsync.mobile.Tier
import org.stationsync.mobile.Training
import org.stationsync.mobile.TrainingKind
import org.stationsync.mobile.Verification
import org.stationsync.mobile.Visit
import org.stationsync.mobile.VisitKind
import org.stationsync.mobile.Voiding

const val COMMUNITY = "540502001001"
private val ID_WEIGHTS = listOf(7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)

/** A GB 11643 resident ID number of 乃东区 (540502) with its check character. */
fun idNumber(birth: LocalDate, serial: Int, male: Boolean): String {
    val digit = serial * 2 + if (male) 1 else 0
    val body = "540502" + birth.toString().replace("-", "") + "%03d".format(digit % 1000)
    val total = body.toList().zip(ID_WEIGHTS).sumOf { (d, w) -> (d - '0') * w }
    return body + "10X98765432"[total % 11]
}

fun day(today: LocalDate, days: Long): String = today.plusDays(days).toString()

class Person(
    val name: String,
    val birth: LocalDate,
    val male: Boolean,
    val serial: Int,
    var tier: Tier,
    var categories: List<Category>,
    val openedDaysAgo: Long,
    val address: String,
    val phone: String,
    val language: String,
) {
    var caseId: String = ""
    val idNumber: String get() = idNumber(birth, serial, male)

    fun opening(today: LocalDate) = CaseOpening(
        name = name,
        idNumber = idNumber,
        gender = if (male) Gender.MALE else Gender.FEMALE,
        birthDate = birth.toString(),
        communityCode = COMMUNITY,
        address = address,
        phone = phone,
        language = language,
        categories = categories,
        tier = tier,
        source = CaseSource.OUTREACH,
        openedOn = day(today, -openedDaysAgo),
    )
}

fun people() = listOf(
    Person("བཀྲ་ཤིས་ཆོས་སྒྲོན", LocalDate.of(1941, 3, 12), false, 101, Tier.HIGH_RISK,
        listOf(Category.DIBAO, Category.ELDERLY), 30, "泽当街道 རྩེད་ཐང 3组", "0893-7821234", "bo"),
    Person("王秀英", LocalDate.of(2013, 9, 1), false, 102, Tier.KEY,
        listOf(Category.LEFT_BEHIND_CHILD), 10, "乃东区泽当街道幸福路12号", "13908930001", "zh"),
    Person("ཚེ་རིང་དབང་འདུས", LocalDate.of(1975, 1, 30), true, 103, Tier.GENERAL,
        listOf(Category.DISABLED), 100, "སྣེ་གདོང 乃东", "", "bo"),
    Person("ཚེ་དབང་ལྷ་མོ", LocalDate.of(1950, 6, 15), false, 104, Tier.HIGH_RISK,
        listOf(Category.TEKUN), 20, "", "", "bo"),
)

/** What was entered, to check what reads back. */
class FieldDay(val today: LocalDate, val people: List<Person>) {
    var entries = 0
    val visitNotes = mutableMapOf<String, String>()
    var voidedVisit = ""
    var activityTitle = ""
    var trainingTitle = ""
    var groupName = ""
}

/** Enters a full day: four cases, every entry form, one mistake voided. */
fun recordFieldDay(store: FieldStore, today: LocalDate = LocalDate.now()): FieldDay {
    val fd = FieldDay(today, people())
    fun count(recorded: Recorded): Recorded {
        ensure(!recorded.duplicate) { "a first save is no duplicate" }
        fd.entries += 1
        return recorded
    }
    for (p in fd.people) {
        p.caseId = count(store.openCase(p.opening(today))).eventId
    }
    val (tashi, wang, tsering, _) = fd.people

    val notes = "ཨ་མ་ལགས། ཁྱེད་རང་སྐུ་གཟུགས་བདེ་པོ་ཡིན་པས། 老人身体尚可，需要取暖煤。"
    count(store.recordVisit(Visit(
        caseId = tashi.caseId, visitDate = day(today, 0), kind = VisitKind.HOME,
        durationMinutes = 45, notes = notes, needsFound = listOf("ལྟོ་ཆས། སྨན།", "取暖煤"))))
    fd.visitNotes[tashi.name] = notes

    val wrong = count(store.recordVisit(Visit(
        caseId = wang.caseId, visitDate = day(today, -4), kind = VisitKind.HOME,
        durationMinutes = 30, notes = "日期填错", needsFound = listOf())))
    fd.voidedVisit = wrong.eventId
    count(store.voidEntry(Voiding(eventId = wrong.eventId, reason = "走访日期填错，应为3天前")))
    val wangNotes = "孩子在校表现良好，奶奶照看。"
    count(store.recordVisit(Visit(
        caseId = wang.caseId, visitDate = day(today, -3), kind = VisitKind.FOLLOW_UP,
        durationMinutes = 30, notes = wangNotes, needsFound = listOf("课外辅导"))))
    fd.visitNotes[wang.name] = wangNotes
    count(store.assessCase(Assessment(
        caseId = wang.caseId, tier = Tier.HIGH_RISK, reason = "监护人住院，需每周探访",
        assessedOn = day(today, 0))))
    wang.tier = Tier.HIGH_RISK

    count(store.addNote(CaseNote(
        caseId = tashi.caseId, kind = NoteKind.PLAN,
        text = "冬季每周探访一次 དགུན་ཁ་གཟའ་འཁོར་རེར་ཐེངས་གཅིག", notedOn = day(today, 0))))
    count(store.linkResource(Resource(
        caseId = tashi.caseId, linkedOn = day(today, 0), kind = ResourceKind.CASH,
        source = "乃东区民政局临时救助", cashFen = 50_000, inKindFen = 0, description = "临时救助金")))
    count(store.linkResource(Resource(
        caseId = null, linkedOn = day(today, 0), kind = ResourceKind.IN_KIND,
        source = "爱心企业", cashFen = 0, inKindFen = 120_000, description = "棉被二十床")))

    count(store.verifyBeneficiary(Verification(
        caseId = tsering.caseId, verifiedOn = day(today, -1),
        categories = listOf(Category.DISABLED, Category.DIBAO), stillEligible = true,
        notes = "残疾证已核实")))
    tsering.categories = listOf(Category.DIBAO, Category.DISABLED)
    count(store.closeCase(CaseClosing(
        caseId = tsering.caseId, reason = "迁居拉萨", closedOn = day(today, -1))))
    count(store.reopenCase(CaseReopening(
        caseId = tsering.caseId, reason = "已迁回 རྩེད་ཐང", reopenedOn = day(today, 0),
        tier = Tier.KEY)))
    tsering.tier = Tier.KEY

    fd.activityTitle = "党建+公益：冬季送温暖 དགུན་དུས་དྲོད་འཇགས"
    count(store.recordActivity(CommunityActivity(
        heldOn = day(today, 0), communityCode = COMMUNITY, kind = ActivityKind.PARTY_PUBLIC_WELFARE,
        title = fd.activityTitle, participants = 35, personTimes = 40, volunteers = 6,
        volunteerMinutes = 720)))
    fd.groupName = "留守儿童成长小组"
    count(store.recordGroupSession(GroupSession(
        groupName = fd.groupName, sessionNumber = 3, heldOn = day(today, 0),
        communityCode = COMMUNITY, participants = 9, topic = "情绪认识")))
    fd.trainingTitle = "个案管理督导"
    count(store.recordTraining(Training(
        heldOn = day(today, -1), kind = TrainingKind.SUPERVISION, title = fd.trainingTitle,
        trainees = 2, minutes = 120)))
    return fd
}

/** The cases as comparable rows, sorted by case id. */
fun caseRows(store: FieldStore): List<String> = store.cases()
    .map { c ->
        listOf(c.caseId, c.name, c.communityCode, c.categories, c.tier, c.status, c.openedOn,
            c.reopenedOn, c.lastVisit, c.visits, c.nextDue, c.lastEventId).joinToString("|")
    }
    .sorted()

fun timelineRows(store: FieldStore, caseId: String): List<String> =
    store.caseTimeline(caseId).map { e ->
        listOf(e.eventId, e.kind, e.date, e.summary, e.tier, e.author).joinToString("|")
    }

/** Asserts that everything of the day reads back unchanged. */
fun checkFieldDay(store: FieldStore, fd: FieldDay) {
    val today = fd.today
    val cases = store.cases().associateBy { it.name }
    assertEquals(fd.people.map { it.name }.sorted(), cases.keys.sorted(), "case names")
    for (p in fd.people) {
        val c = cases.getValue(p.name)
        assertEquals(p.caseId, c.caseId, "case id")
        assertEquals(COMMUNITY, c.communityCode, "community")
        assertEquals(p.tier, c.tier, "tier of ${p.caseId}")
        assertEquals(p.categories, c.categories, "categories")
        assertEquals(CaseStatus.OPEN, c.status, "status")
        assertEquals(day(today, -p.openedDaysAgo), c.openedOn, "opened on")
    }
    val (tashi, wang, tsering, tsewang) = fd.people
    assertEquals(day(today, 0), cases.getValue(tashi.name).lastVisit, "last visit")
    assertEquals(day(today, 7), cases.getValue(tashi.name).nextDue, "next due")
    assertEquals(1u, cases.getValue(wang.name).visits, "the voided visit does not count")
    assertEquals(day(today, 4), cases.getValue(wang.name).nextDue, "next due")
    assertEquals(day(today, 0), cases.getValue(tsering.name).reopenedOn, "reopened on")
    assertEquals(day(today, 30), cases.getValue(tsering.name).nextDue, "next due")
    assertEquals(day(today, -13), cases.getValue(tsewang.name).nextDue, "next due")

    val overdue = store.dueFollowUps(0u)
    assertEquals(listOf(Triple(tsewang.name, true, 13L)),
        overdue.map { Triple(it.name, it.overdue, it.daysOverdue) }, "overdue")
    assertEquals(listOf(tsewang.name, wang.name, tashi.name),
        store.dueFollowUps(7u).map { it.name }, "due within a week")

    val tashiLine = store.caseTimeline(tashi.caseId)
    assertEquals(listOf(EntryKind.CASE_OPENED, EntryKind.VISIT, EntryKind.NOTE_ADDED,
        EntryKind.RESOURCE), tashiLine.map { it.kind }, "timeline")
    assertEquals(tashi.name, tashiLine[0].summary, "summary")
    assertEquals(fd.visitNotes[tashi.name], tashiLine[1].summary, "visit notes")
    val wangLine = store.caseTimeline(wang.caseId)
    ensure(fd.voidedVisit !in wangLine.map { it.eventId }) { "the voided visit is gone" }
    assertEquals(listOf(EntryKind.CASE_OPENED, EntryKind.VISIT, EntryKind.CASE_ASSESSED),
        wangLine.map { it.kind }, "timeline")
    assertEquals(Tier.HIGH_RISK, wangLine[2].tier, "assessed tier")
    val tseringLine = store.caseTimeline(tsering.caseId)
    assertEquals(listOf(EntryKind.CASE_CLOSED, EntryKind.CASE_REOPENED),
        tseringLine.map { it.kind }.takeLast(2), "closed and reopened")
    assertEquals("已迁回 རྩེད་ཐང", tseringLine.last().summary, "reopening reason")
}
