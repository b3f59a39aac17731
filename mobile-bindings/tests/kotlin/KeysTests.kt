// Encryption at rest through the Kotlin bindings, as an Android app calls
// them: a store opened with the app's KeyProvider keeps no personal data in
// its files, a provider that cannot unwrap its key is refused and changes
// nothing, lock() drops the key and unlock() asks the provider again, and a
// device the hub orders wiped uploads its entries and then is wiped.
// Mirrors test_keys.py.

package org.stationsync.mobile.tests

import java.io.File
import org.stationsync.mobile.CaseNote
import org.stationsync.mobile.CaseOpening
import org.stationsync.mobile.CaseSource
import org.stationsync.mobile.Category
import org.stationsync.mobile.FieldException
import org.stationsync.mobile.FieldStore
import org.stationsync.mobile.Gender
import org.stationsync.mobile.KeyProvider
import org.stationsync.mobile.KeyProviderException
import org.stationsync.mobile.NoteKind
import org.stationsync.mobile.StoreOptions
import org.stationsync.mobile.Tier

/** Stands in for the Android Keystore: wraps the data key with a secret of
 * its own (a real app uses an AES-GCM Keystore key); refuses while
 * [refusing], as a key store whose user has not authenticated. */
private class XorProvider(private val secret: ByteArray) : KeyProvider {
    val calls = mutableListOf<String>()
    var refusing = false

    private fun xor(bytes: ByteArray) =
        ByteArray(bytes.size) { (bytes[it].toInt() xor secret[it % secret.size].toInt()).toByte() }

    override fun wrap(dataKey: ByteArray): ByteArray {
        calls.add("wrap")
        return xor(dataKey)
    }

    override fun unwrap(wrapped: ByteArray): ByteArray {
        if (refusing) throw KeyProviderException.Failed("user not authenticated")
        calls.add("unwrap")
        return xor(wrapped)
    }
}

private const val NAME = "次仁卓玛"
private const val ID_NUMBER = "11010519491231002X"
private const val PHONE = "13908930123"
private const val ADDRESS = "格桑路十二号"

private fun opening() = CaseOpening(
    name = NAME,
    idNumber = ID_NUMBER,
    gender = Gender.FEMALE,
    birthDate = "1949-12-31",
    communityCode = COMMUNITY,
    address = ADDRESS,
    phone = PHONE,
    language = "bo",
    categories = listOf(Category.ELDERLY),
    tier = Tier.HIGH_RISK,
    source = CaseSource.OUTREACH,
    openedOn = "2026-11-01",
)

private fun filesHolding(folder: File, text: String): List<String> {
    val needle = text.toByteArray()
    return folder.walkTopDown().filter { it.isFile }.filter { file ->
        val bytes = file.readBytes()
        (0..bytes.size - needle.size).any { at -> needle.indices.all { bytes[at + it] == needle[it] } }
    }.map { it.name }.toList()
}

private fun encrypted(dir: File, provider: KeyProvider, options: StoreOptions = StoreOptions()) =
    FieldStore.openWithOptions(dir.path, STATION, "zd-01", provider, options)

val keysTests = suite("keys") {
    test("a store opened with a key provider is encrypted") { ctx ->
        val path = File(ctx.dir, "phone")
        val provider = XorProvider("platform-secret".toByteArray())
        val caseId = encrypted(path, provider).use { it.openCase(opening()).eventId }
        assertEquals(listOf("wrap"), provider.calls, "provider calls")
        for (text in listOf(NAME, ID_NUMBER, PHONE, ADDRESS)) {
            assertEquals(emptyList<String>(), filesHolding(path, text), text)
        }
        encrypted(path, provider).use { store ->
            assertEquals(listOf("wrap", "unwrap"), provider.calls, "provider calls")
            assertEquals(listOf(caseId), store.cases().map { it.caseId }, "cases")
        }
    }

    test("a wrong or refusing provider is refused and changes nothing") { ctx ->
        val path = File(ctx.dir, "phone")
        encrypted(path, XorProvider("right".toByteArray())).use { it.openCase(opening()) }
        val header = File(path, "seal.json").readBytes()
        val wrong = assertThrows<FieldException.Storage> {
            encrypted(path, XorProvider("wrong".toByteArray()))
        }
        ensure(wrong.reason.contains("wrong key")) { wrong.reason }
        val refusing = XorProvider("right".toByteArray()).apply { refusing = true }
        val refused = assertThrows<FieldException.Storage> { encrypted(path, refusing) }
        ensure(refused.reason.contains("user not authenticated")) { refused.reason }
        ensure(File(path, "seal.json").readBytes().contentEquals(header)) { "header changed" }
        encrypted(path, XorProvider("right".toByteArray())).use {
            assertEquals(1, it.cases().size, "cases")
        }
    }

    test("lock drops the key and unlock asks the provider again") { ctx ->
        val path = File(ctx.dir, "phone")
        val provider = XorProvider("platform-secret".toByteArray())
        encrypted(path, provider).use { store ->
            val caseId = store.openCase(opening()).eventId
            store.lock()
            ensure(store.isLocked()) { "locked" }
            assertThrows<FieldException.Locked> { store.cases() }
            assertThrows<FieldException.Locked> { store.status() }
            assertThrows<FieldException.Locked> { store.openCase(opening()) }
            // Its files are closed: the folder opens elsewhere meanwhile.
            encrypted(path, provider).use { other ->
                assertEquals(listOf(caseId), other.cases().map { it.caseId }, "cases")
            }
            provider.refusing = true
            val refused = assertThrows<FieldException.Storage> { store.unlock() }
            ensure(refused.reason.contains("user not authenticated")) { refused.reason }
            ensure(store.isLocked()) { "still locked" }
            provider.refusing = false
            val calls = provider.calls.size
            store.unlock()
            assertEquals(listOf("unwrap"), provider.calls.drop(calls), "provider asked again")
            assertEquals(listOf(caseId), store.cases().map { it.caseId }, "cases")
        }
    }

    test("a store locks itself after its idle time") { ctx ->
        val provider = XorProvider("platform-secret".toByteArray())
        val options = StoreOptions(lockAfterIdleSecs = 1u)
        encrypted(File(ctx.dir, "phone"), provider, options).use { store ->
            store.openCase(opening())
            val deadline = System.nanoTime() + 20_000_000_000L
            while (!store.isLocked()) {
                ensure(System.nanoTime() < deadline) { "the store did not lock itself" }
                Thread.sleep(100)
            }
            assertThrows<FieldException.Locked> { store.cases() }
            store.unlock()
            assertEquals(1, store.cases().size, "cases")
        }
    }

    test("a lost device uploads its entries then is wiped") { ctx ->
        val hub = ctx.hub()
        val token = hub.enroll("phone-1")
        val url = hub.start()
        val path = File(ctx.dir, "phone")
        val provider = XorProvider("platform-secret".toByteArray())
        encrypted(path, provider).use { store ->
            store.configure(url, token)
            val caseId = store.openCase(opening()).eventId
            assertEquals(1uL, store.syncNow().durableThrough, "durable through")
            store.addNote(CaseNote(caseId = caseId, kind = NoteKind.PLAN, text = "家访计划", notedOn = "2026-11-02"))

            ensure(hub.orderWipe(token).endsWith("wipe pending")) { "wipe ordered" }
            val report = store.syncNow()
            ensure(report.wiped) { "wiped" }
            assertEquals(Triple(1uL, 2uL, 0uL), Triple(report.pushed, report.durableThrough, report.backlog), "report")
            assertThrows<FieldException.Wiped> { store.cases() }
            assertThrows<FieldException.Wiped> { store.status() }
            assertThrows<FieldException.Wiped> { store.syncNow() }
        }
        for (text in listOf(NAME, ID_NUMBER, PHONE, ADDRESS, token)) {
            assertEquals(emptyList<String>(), filesHolding(path, text), text)
        }
        assertEquals(listOf("seal.json", "station.lock"), path.list()!!.sorted(), "files left")
        assertThrows<FieldException.Wiped> { encrypted(path, provider) }
    }
}
