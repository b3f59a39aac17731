// Transfers between stations through the Kotlin bindings against a real
// station-hub process: a request made at one station reaches the phones of
// the station asked when they sync, is accepted there offline, and then that
// station holds the file with its whole history while the sending station
// keeps a closed stub; a declined request leaves the file where it is.
// Mirrors test_transfer.py.

package org.stationsync.mobile.tests

import java.time.LocalDate
import org.stationsync.mobile.CaseOpening
import org.stationsync.mobile.CaseSource
import org.stationsync.mobile.CaseStatus
import org.stationsync.mobile.Category
import org.stationsync.mobile.EntryKind
import org.stationsync.mobile.Gender
import org.stationsync.mobile.Tier
import org.stationsync.mobile.TransferAcceptance
import org.stationsync.mobile.TransferDecline
import org.stationsync.mobile.TransferRequest
import org.stationsync.mobile.Visit
import org.stationsync.mobile.VisitKind

private const val TRANSFER_NAME = "次仁卓玛 ཚེ་རིང་སྒྲོལ་མ"

private fun transferOpening(today: LocalDate, serial: Int) = CaseOpening(
    name = TRANSFER_NAME,
    idNumber = idNumber(LocalDate.of(1948, 3, 1), serial, false),
    gender = Gender.FEMALE,
    birthDate = "1948-03-01",
    communityCode = OTHER_STATION + "201",
    address = "昌珠镇 ཁྲ་འབྲུག",
    phone = "",
    language = "bo",
    categories = listOf(Category.ELDERLY),
    tier = Tier.KEY,
    source = CaseSource.OUTREACH,
    openedOn = day(today, -20),
)

private fun asking(case: String, today: LocalDate, reason: String, daysAgo: Long) = TransferRequest(
    caseId = case,
    toStationCode = STATION,
    reason = reason,
    requestedOn = day(today, -daysAgo),
)

val transferTests = suite("transfer") {
    test("a transfer reaches the station asked and moves the file with its history") { ctx ->
        val hub = ctx.hub()
        val changzhuToken = hub.enroll("cz-phone", station = OTHER_STATION)
        val zedangToken = hub.enroll("zd-phone")
        val url = hub.start()
        val today = LocalDate.now()
        val changzhu = ctx.openStore("changzhu", worker = "cz-01", station = OTHER_STATION)
        val zedang = ctx.openStore("zedang", worker = "zd-01")
        changzhu.configure(url, changzhuToken)
        zedang.configure(url, zedangToken)

        val case = changzhu.openCase(transferOpening(today, 31)).eventId
        changzhu.recordVisit(
            Visit(
                caseId = case, visitDate = day(today, -10), kind = VisitKind.HOME,
                durationMinutes = 30, notes = "入户走访", needsFound = listOf(),
            ),
        )
        val kept = changzhu.openCase(transferOpening(today, 32)).eventId
        val request = changzhu.requestTransfer(asking(case, today, "全家迁居泽当", 2)).eventId
        changzhu.syncNow()

        assertEquals(0, zedang.incomingTransfers().size, "nothing before the sync")
        zedang.syncNow()
        val incoming = zedang.incomingTransfers()
        assertEquals(1, incoming.size, "requests to answer")
        val asked = incoming[0]
        assertEquals(Triple(request, case, OTHER_STATION), Triple(asked.requestId, asked.caseId, asked.fromStationCode), "request")
        assertEquals(TRANSFER_NAME to "全家迁居泽当", asked.name to asked.reason, "name, reason")
        assertEquals(2L, asked.ageDays, "age")
        ensure(asked.fileNumber.startsWith("昌珠-")) { "file number ${asked.fileNumber}" }
        assertEquals(0, zedang.cases().size, "only asked: no case of the station")

        zedang.acceptTransfer(
            TransferAcceptance(
                requestId = request, communityCode = STATION + "003",
                acceptedOn = day(today, -1), note = "已入户核实",
            ),
        )
        assertEquals(0, zedang.incomingTransfers().size, "answered")
        assertEquals(CaseStatus.OPEN, zedang.case(case).status, "held at once")

        assertEquals(1uL, zedang.syncNow().pushed, "the acceptance pushed")
        val held = zedang.case(case)
        assertEquals(1u to day(today, -10), held.visits to held.lastVisit, "the history")
        assertEquals(listOf(case), zedang.cases().map { it.caseId }, "cases")
        val kinds = zedang.caseTimeline(case).map { it.kind }
        ensure(EntryKind.VISIT in kinds && EntryKind.TRANSFER_ACCEPTED in kinds) { "$kinds" }

        changzhu.syncNow()
        val stub = changzhu.case(case)
        assertEquals(CaseStatus.CLOSED to STATION, stub.status to stub.transferredTo, "the stub")
        assertEquals(CaseStatus.OPEN, changzhu.case(kept).status, "the other file")
        changzhu.close()
        zedang.close()
    }

    test("a declined request leaves the file with its station") { ctx ->
        val hub = ctx.hub()
        val changzhuToken = hub.enroll("cz-phone", station = OTHER_STATION)
        val zedangToken = hub.enroll("zd-phone")
        val url = hub.start()
        val today = LocalDate.now()
        val changzhu = ctx.openStore("changzhu", worker = "cz-01", station = OTHER_STATION)
        val zedang = ctx.openStore("zedang", worker = "zd-01")
        changzhu.configure(url, changzhuToken)
        zedang.configure(url, zedangToken)
        val case = changzhu.openCase(transferOpening(today, 33)).eventId
        val request = changzhu.requestTransfer(asking(case, today, "全家迁居泽当", 2)).eventId
        changzhu.syncNow()
        zedang.syncNow()
        zedang.declineTransfer(
            TransferDecline(requestId = request, reason = "不在本站辖区", declinedOn = day(today, -1)),
        )
        assertEquals(0, zedang.incomingTransfers().size, "answered")
        zedang.syncNow()
        assertEquals(0, zedang.cases().size, "never held")
        changzhu.syncNow()
        val file = changzhu.case(case)
        assertEquals(CaseStatus.OPEN to null, file.status to file.transferredTo, "still here")
        val again = changzhu.requestTransfer(asking(case, today, "再次申请", 0)).eventId
        changzhu.syncNow()
        zedang.syncNow()
        assertEquals(listOf(again), zedang.incomingTransfers().map { it.requestId }, "the new request only")
        changzhu.close()
        zedang.close()
    }
}
