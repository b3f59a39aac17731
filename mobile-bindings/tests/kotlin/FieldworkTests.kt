// Field entry through the Kotlin bindings over the real library, as an
// Android app calls it: a day of work read back unchanged, refusals that
// record nothing and leak no personal data, a store closed and reopened,
// one store shared by threads. Mirrors test_fieldwork.py.

package org.stationsync.mobile.tests

import java.time.LocalDate
import org.stationsync.mobile.CaseClosing
import org.stationsync.mobile.CaseMerging
import org.stationsync.mobile.DuplicateDismissal
import org.stationsync.mobile.CaseNote
import org.stationsync.mobile.CaseReopening
import org.stationsync.mobile.EntryKind
import org.stationsync.mobile.FieldException
import org.stationsync.mobile.Gender
import org.stationsync.mobile.NoteKind
import org.stationsync.mobile.Resource
import org.stationsync.mobile.ResourceKind
import org.stationsync.mobile.Visit
import org.stationsync.mobile.VisitKind
import org.stationsync.mobile.Voiding
import org.stationsync.mobile.newEntryId

/** Every piece of personal data the day holds, to look for in messages. */
private fun personalData(fd: FieldDay): List<String> = fd.people
    .flatMap { listOf(it.name, it.idNumber, it.idNumber.take(17), it.idNumber.substring(6, 14), it.address, it.phone) }
    .filter { it.isNotEmpty() }

private fun assertNoPersonalData(error: FieldException, fd: FieldDay, vararg extra: String) {
    val text = "${error.message} $error"
    for (value in personalData(fd) + extra) {
        ensure(!text.contains(value)) { "'$value' leaked into '$text'" }
    }
}

val fieldworkTests = suite("fieldwork") {
    test("a day of field work reads back unchanged") { ctx ->
        ctx.openStore().use { store ->
            val fd = recordFieldDay(store)
            checkFieldDay(store, fd)
            val recent = store.recentEntries(100u)
            assertEquals(fd.entries, recent.size, "recent entries")
            assertEquals(EntryKind.TRAINING, recent[0].kind, "latest entry")
            assertEquals(fd.trainingTitle, recent[0].summary, "its summary")
            assertEquals(listOf(fd.voidedVisit), recent.filter { it.voided }.map { it.eventId }, "voided")
            ensure(recent.all { it.author == "zd-01" }) { "every entry by zd-01" }
            val status = store.status()
            assertEquals(STATION, status.stationCode, "station")
            assertEquals(fd.entries.toULong(), status.headSeq, "head seq")
            assertEquals(status.backlog, store.unacknowledgedCount(), "backlog")
            assertEquals(null, status.hubUrl, "hub url")
            ensure(!status.hasToken) { "no token yet" }
        }
    }

    test("text is stored NFC") { ctx ->
        ctx.openStore().use { store ->
            val fd = recordFieldDay(store)
            val decomposed = "e\u0301 རྩེད\u0f71 王"
            ensure(java.text.Normalizer.normalize(decomposed, java.text.Normalizer.Form.NFC) != decomposed) {
                "the text is decomposed"
            }
            val recorded = store.addNote(CaseNote(caseId = fd.people[0].caseId, kind = NoteKind.REVIEW,
                text = "  $decomposed\n", notedOn = day(fd.today, 0)))
            val note = store.caseTimeline(fd.people[0].caseId).first { it.eventId == recorded.eventId }
            assertEquals("\u00e9 རྩེད\u0f71 王", note.summary, "summary")
        }
    }

    test("bad input raises typed errors and records nothing") { ctx ->
        ctx.openStore().use { store ->
            val fd = recordFieldDay(store)
            val before = Triple(caseRows(store), store.status().headSeq,
                fd.people.map { timelineRows(store, it.caseId) })
            val today = fd.today
            val tashi = fd.people[0]

            val newcomer = fd.people[1].opening(today)
            newcomer.name = "ཚེ་རིང་ཆོས་སྒྲོན"
            val good = newcomer.idNumber
            newcomer.idNumber = good.take(17) + if (good[17] != '0') "0" else "1"
            val badId = assertThrows<FieldException.InvalidInput> { store.openCase(newcomer) }
            assertEquals("case_opened.id_number", badId.field, "field")
            ensure(badId.rule.contains("check character")) { badId.rule }
            assertNoPersonalData(badId, fd, newcomer.name, good, newcomer.idNumber)

            val future = assertThrows<FieldException.InvalidInput> {
                store.recordVisit(Visit(
                    caseId = tashi.caseId, visitDate = day(today, 2), kind = VisitKind.HOME,
                    durationMinutes = 20, notes = tashi.name, needsFound = listOf()))
            }
            assertEquals("visit_recorded.visit_date", future.field, "field")
            assertEquals("must not be more than one day in the future", future.rule, "rule")
            assertNoPersonalData(future, fd)

            val unknown = assertThrows<FieldException.UnknownCase> {
                store.recordVisit(Visit(
                    caseId = newEntryId(), visitDate = day(today, 0), kind = VisitKind.PHONE,
                    durationMinutes = 5, notes = "", needsFound = listOf()))
            }
            assertEquals("visit_recorded.case_id", unknown.field, "field")

            val negative = assertThrows<FieldException.InvalidInput> {
                store.linkResource(Resource(
                    caseId = tashi.caseId, linkedOn = day(today, 0), kind = ResourceKind.CASH,
                    source = "乃东区民政局", cashFen = -100, inKindFen = 0, description = tashi.address))
            }
            assertEquals("resource_linked.cash_fen", negative.field, "field")
            assertNoPersonalData(negative, fd)

            val wrongGender = fd.people[2].opening(today)
            wrongGender.gender = Gender.FEMALE
            val gender = assertThrows<FieldException.InvalidInput> { store.openCase(wrongGender) }
            assertEquals("case_opened.gender", gender.field, "field")
            assertNoPersonalData(gender, fd)

            assertThrows<FieldException.CaseAlreadyOpen> {
                store.reopenCase(CaseReopening(caseId = tashi.caseId, reason = "x",
                    reopenedOn = day(today, 0)))
            }
            assertThrows<FieldException.UnknownEntry> {
                store.voidEntry(Voiding(eventId = newEntryId(), reason = "x"))
            }
            val after = Triple(caseRows(store), store.status().headSeq,
                fd.people.map { timelineRows(store, it.caseId) })
            assertEquals(before, after, "nothing recorded")
        }
    }

    test("closed cases refuse visits") { ctx ->
        ctx.openStore().use { store ->
            val fd = recordFieldDay(store)
            val tsewang = fd.people[3]
            store.closeCase(CaseClosing(caseId = tsewang.caseId, reason = "已故",
                closedOn = day(fd.today, 0)))
            val closed = assertThrows<FieldException.CaseClosed> {
                store.recordVisit(Visit(caseId = tsewang.caseId, visitDate = day(fd.today, 0),
                    kind = VisitKind.HOME, durationMinutes = 10, notes = "", needsFound = listOf()))
            }
            assertEquals("visit_recorded.case_id", closed.field, "field")
            assertEquals(listOf<String>(), store.dueFollowUps(0u).map { it.name }, "nothing due")
            assertEquals(null, store.case(tsewang.caseId).nextDue, "no next visit")
        }
    }

    test("two files of one person are merged") { ctx ->
        ctx.openStore().use { store ->
            val fd = recordFieldDay(store)
            val tsewang = fd.people[3]
            store.closeCase(CaseClosing(caseId = tsewang.caseId, reason = "迁出",
                closedOn = day(fd.today, 0)))
            val again = store.openCase(tsewang.opening(fd.today)).eventId
            store.mergeCases(CaseMerging(survivorCaseId = again, absorbedCaseId = tsewang.caseId,
                reason = "同一人两份档案", mergedOn = day(fd.today, 0)))
            assertEquals(again, store.case(tsewang.caseId).mergedInto, "merged into the new file")
            val kinds = store.caseTimeline(again).map { it.kind }
            assertEquals(true, EntryKind.CASES_MERGED in kinds, "the merge in the timeline")
            val refused = assertThrows<FieldException.InvalidInput> {
                store.mergeCases(CaseMerging(survivorCaseId = again, absorbedCaseId = tsewang.caseId,
                    reason = "x", mergedOn = day(fd.today, 0)))
            }
            assertEquals("cases_merged.absorbed_case_id", refused.field, "field")
            store.dismissDuplicate(DuplicateDismissal(caseId = again,
                duplicateOfCaseId = tsewang.caseId, reason = "核实", dismissedOn = day(fd.today, 0)))
        }
    }

    test("saving the same entry twice records it once") { ctx ->
        ctx.openStore().use { store ->
            val fd = recordFieldDay(store)
            val entryId = newEntryId()
            val visit = Visit(caseId = fd.people[0].caseId, visitDate = day(fd.today, 0),
                kind = VisitKind.PHONE, durationMinutes = 5, notes = "电话回访",
                needsFound = listOf(), entryId = entryId)
            val first = store.recordVisit(visit)
            val again = store.recordVisit(visit)
            assertEquals(entryId, first.eventId, "event id")
            assertEquals(entryId, again.eventId, "event id")
            assertEquals(false to true, first.duplicate to again.duplicate, "duplicate")
            assertEquals(2u, store.case(fd.people[0].caseId).visits, "visits")
        }
    }

    test("closing and reopening the store keeps everything") { ctx ->
        val store = ctx.openStore("phone")
        val fd = recordFieldDay(store)
        val cases = caseRows(store)
        val origin = store.status().originId
        val busy = assertThrows<FieldException.Storage> { ctx.openStore("phone") }
        ensure(busy.reason.contains("already open")) { busy.reason }
        store.close()

        ctx.openStore("phone").use { reopened ->
            assertEquals(origin, reopened.status().originId, "origin")
            assertEquals(cases, caseRows(reopened), "cases")
            checkFieldDay(reopened, fd)
            assertEquals(fd.entries.toULong(), reopened.unacknowledgedCount(), "backlog")
        }
        val station = assertThrows<FieldException.WrongStore> {
            ctx.openStore("phone", station = OTHER_STATION)
        }
        ensure(station.reason.contains(STATION)) { station.reason }
    }

    test("bad identity is refused before anything is created") { ctx ->
        val station = assertThrows<FieldException.InvalidInput> { ctx.openStore("new", station = "54050") }
        assertEquals("station_code", station.field, "field")
        val worker = assertThrows<FieldException.InvalidInput> { ctx.openStore("new", worker = "  ") }
        assertEquals("worker_id", worker.field, "field")
        ensure(!java.io.File(ctx.dir, "new").exists()) { "nothing created" }
    }

    test("one store is shared by threads") { ctx ->
        ctx.openStore().use { store ->
            val caseId = store.openCase(people()[0].opening(LocalDate.now())).eventId
            val errors = java.util.Collections.synchronizedList(mutableListOf<Throwable>())
            val threads = (0 until 4).map {
                Thread {
                    try {
                        for (i in 0 until 20) {
                            store.recordVisit(Visit(caseId = caseId,
                                visitDate = LocalDate.now().toString(), kind = VisitKind.HOME,
                                durationMinutes = i, notes = "第${i}次", needsFound = listOf()))
                        }
                    } catch (e: Throwable) {
                        errors.add(e)
                    }
                }
            }
            threads.forEach { it.start() }
            threads.forEach { it.join() }
            assertEquals(listOf<Throwable>(), errors.toList(), "errors")
            assertEquals(80u, store.case(caseId).visits, "visits")
            assertEquals(81uL, store.status().headSeq, "head seq")
        }
    }
}
