// The weaker duplicate check through the Kotlin bindings against a real
// station-hub process: a person without an ID number is opened by name,
// gender and birth date; once the directory reached it, another station's
// phone is told of a possible duplicate, offline, by station name only; the
// warning never refuses, and a person born another day is not named.
// Mirrors test_weak_duplicates.py.

package org.stationsync.mobile.tests

import java.time.LocalDate
import org.stationsync.mobile.CaseOpening
import org.stationsync.mobile.CaseSource
import org.stationsync.mobile.Category
import org.stationsync.mobile.Gender
import org.stationsync.mobile.Tier

private fun unnumbered(community: String, openedOn: String, name: String, birth: LocalDate, number: String = "") =
    CaseOpening(
        name = name,
        idNumber = number,
        gender = Gender.MALE,
        birthDate = birth.toString(),
        communityCode = community,
        address = "",
        phone = "",
        language = "bo",
        categories = listOf(Category.CHILD_IN_DIFFICULTY),
        tier = Tier.KEY,
        source = CaseSource.OUTREACH,
        openedOn = openedOn,
    )

val weakDuplicatesTests = suite("weak-duplicates") {
    test("a person without an ID number is a possible duplicate across stations, never refused") { ctx ->
        val hub = ctx.hub()
        val zedangToken = hub.enroll("zd-phone")
        val changzhuToken = hub.enroll("cz-phone", station = OTHER_STATION)
        val url = hub.start()
        val today = LocalDate.now()
        val zedang = ctx.openStore("zedang", worker = "zd-01")
        val changzhu = ctx.openStore("changzhu", worker = "cz-01", station = OTHER_STATION)
        zedang.configure(url, zedangToken)
        changzhu.configure(url, changzhuToken)
        val childBirth = LocalDate.of(2019, 6, 1)
        val elderBirth = LocalDate.of(1949, 12, 31)
        val number = idNumber(elderBirth, 417, true)

        zedang.openCase(unnumbered(STATION + "003", day(today, -3), "扎西·次仁", childBirth))
        zedang.openCase(unnumbered(STATION + "003", day(today, -3), "次仁", elderBirth, number))
        zedang.syncNow()
        changzhu.syncNow()

        val again = unnumbered(OTHER_STATION + "201", day(today, 0), "扎西 次仁", childBirth)
        assertEquals(listOf("泽当街道"), changzhu.possibleDuplicates(again), "the child, written another way")
        val opened = changzhu.openCase(again).eventId
        assertEquals(listOf(opened), changzhu.cases().map { it.caseId }, "recorded, not refused")
        assertEquals(
            listOf("泽当街道"),
            changzhu.possibleDuplicates(unnumbered(OTHER_STATION + "201", day(today, 0), "次仁", elderBirth)),
            "the elder without a card",
        )
        assertEquals(
            listOf<String>(),
            changzhu.possibleDuplicates(
                unnumbered(OTHER_STATION + "201", day(today, 0), "扎西次仁", LocalDate.of(2019, 6, 2)),
            ),
            "born another day",
        )
    }
}
