// Sync through the Kotlin bindings against a real station-hub process: the
// hub comes to hold every entry, stores of one station converge through it,
// a wrong token is refused with the auth error. Mirrors test_sync.py.

package org.stationsync.mobile.tests

import org.stationsync.mobile.FieldException
import org.stationsync.mobile.FieldStore

private fun allTimelines(store: FieldStore) =
    store.cases().associate { it.caseId to timelineRows(store, it.caseId) }

val syncTests = suite("sync") {
    test("stores of one station converge through the hub") { ctx ->
        val hub = ctx.hub()
        val tokens = (0 until 3).map { hub.enroll("phone-$it") }
        var url = hub.start()
        val zhuoma = ctx.openStore("zhuoma", worker = "zd-01")
        val dawa = ctx.openStore("dawa", worker = "zd-02")
        zhuoma.configure(url, tokens[0])
        dawa.configure(url, tokens[1])

        val fd = recordFieldDay(zhuoma)
        val report = zhuoma.syncNow()
        assertEquals(fd.entries.toULong() to 0uL, report.pushed to report.pulled, "pushed, pulled")
        assertEquals(report.headSeq, report.durableThrough, "durable through")
        assertEquals(0uL, report.backlog, "backlog")
        assertEquals(null, zhuoma.status().lastError, "last error")

        val pulled = dawa.syncNow()
        assertEquals(0uL to fd.entries.toULong(), pulled.pushed to pulled.pulled, "pushed, pulled")
        assertEquals(caseRows(zhuoma), caseRows(dawa), "cases")
        assertEquals(allTimelines(zhuoma), allTimelines(dawa), "timelines")
        checkFieldDay(dawa, fd)

        hub.stop()
        url = hub.start()
        ctx.openStore("third", worker = "zd-03").use { third ->
            third.configure(url, tokens[2])
            assertEquals(fd.entries.toULong(), third.syncNow().pulled, "pulled")
            assertEquals(caseRows(zhuoma), caseRows(third), "cases")
        }
        zhuoma.close()
        dawa.close()
    }

    test("a wrong token gives the auth error and keeps the backlog") { ctx ->
        val hub = ctx.hub()
        val otherStation = hub.enroll("chang-zhu", station = OTHER_STATION)
        val mine = hub.enroll("phone-1")
        val url = hub.start()
        ctx.openStore().use { store ->
            val fd = recordFieldDay(store)
            for (token in listOf("sst-not-a-token", otherStation)) {
                store.configure(url, token)
                val refused = assertThrows<FieldException.Auth> { store.syncNow() }
                ensure(refused.reason.isNotEmpty()) { "a reason" }
                assertEquals(fd.entries.toULong(), store.status().backlog, "backlog kept")
            }
            store.configure(url, mine)
            assertEquals(fd.entries.toULong(), store.syncNow().pushed, "pushed")
            assertEquals(null, store.status().lastError, "last error")
        }
    }

    test("an unreachable hub gives a network error within the bound") { ctx ->
        val port = java.net.ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress()).use { it.localPort }
        ctx.openStore(syncTimeoutSecs = 3u).use { store ->
            store.configure("http://127.0.0.1:$port", "sst-token")
            recordFieldDay(store)
            val started = System.nanoTime()
            assertThrows<FieldException.Network> { store.syncNow() }
            // A guard against hanging, not a performance figure: the bound is 3 s.
            ensure(System.nanoTime() - started < 30_000_000_000L) { "sync_now returned within its bound" }
            assertEquals(store.status().headSeq, store.unacknowledgedCount(), "nothing acknowledged")
        }
    }

    test("sync needs a hub and a usable token") { ctx ->
        ctx.openStore().use { store ->
            assertThrows<FieldException.NotConfigured> { store.syncNow() }
            for (url in listOf("", "127.0.0.1:7400", "ftp://hub", "http://")) {
                val bad = assertThrows<FieldException.InvalidInput> { store.configure(url, "token") }
                assertEquals("hub_url", bad.field, "field")
            }
            for (token in listOf("", "two words", "令牌")) {
                val bad = assertThrows<FieldException.InvalidInput> {
                    store.configure("http://127.0.0.1:7400", token)
                }
                assertEquals("token", bad.field, "field")
            }
            assertEquals(null, store.status().hubUrl, "hub url")
        }
    }
}
