// The Kotlin suite's harness: named tests grouped in suites, run one after
// the other on the JVM against the real library through the generated
// bindings (JNA), each with its own temporary folder; a station-hub process
// for the sync tests. Mirrors conftest.py of the Python suite.
//
// A new suite is a file with a `val xxxTests = suite("xxx") { test("...") { ... } }`
// listed in Main.kt's SUITES.

package org.stationsync.mobile.tests

import java.io.BufferedReader
import java.io.File
import java.io.InputStreamReader
import java.nio.file.Files
import java.util.concurrent.TimeUnit

/** One named test: [body] gets a fresh temporary folder. */
class Test(val name: String, val body: (Context) -> Unit)

/** A named group of tests. */
class Suite(val name: String) {
    val tests = mutableListOf<Test>()

    fun test(name: String, body: (Context) -> Unit) {
        tests.add(Test(name, body))
    }
}

fun suite(name: String, build: Suite.() -> Unit): Suite = Suite(name).apply(build)

/** What a test gets: its folder, stores opened in it, and a hub when it asks. */
class Context(val dir: File) {
    private val hubs = mutableListOf<Hub>()

    /** Opens (or reopens) the store named [name] in the test's folder. */
    fun openStore(
        name: String = "phone",
        worker: String = "zd-01",
        station: String = STATION,
        syncTimeoutSecs: UInt? = null,
    ): org.stationsync.mobile.FieldStore {
        val path = File(dir, name).path
        return if (syncTimeoutSecs == null) {
            org.stationsync.mobile.FieldStore.open(path, station, worker, TestKeyProvider())
        } else {
            val options = org.stationsync.mobile.StoreOptions(syncTimeoutSecs = syncTimeoutSecs)
            org.stationsync.mobile.FieldStore.openWithOptions(path, station, worker, TestKeyProvider(), options)
        }
    }

    /** A station-hub over a data folder of this test, stopped at the test's end. */
    fun hub(): Hub = Hub(File(dir, "hub-data"), File(dir, "hub.log")).also { hubs.add(it) }

    fun close() {
        hubs.forEach { it.stop() }
    }
}

/** Stands in for the Android Keystore: wraps the data key with a fixed mask
 * (an app uses an AES-GCM Keystore key, see the bindings' README). */
class TestKeyProvider : org.stationsync.mobile.KeyProvider {
    override fun wrap(dataKey: ByteArray) = ByteArray(dataKey.size) { (dataKey[it].toInt() xor 0x5a).toByte() }
    override fun unwrap(wrapped: ByteArray) = ByteArray(wrapped.size) { (wrapped[it].toInt() xor 0x5a).toByte() }
}

const val STATION = "540502001" // 泽当街道
const val OTHER_STATION = "540502101" // 昌珠镇

class AssertionFailed(message: String) : AssertionError(message)

fun ensure(condition: Boolean, message: () -> String = { "check failed" }) {
    if (!condition) throw AssertionFailed(message())
}

fun <T> assertEquals(expected: T, actual: T, what: String = "") {
    if (expected != actual) {
        throw AssertionFailed("$what: expected <$expected>, got <$actual>")
    }
}

/** Runs [block], which must throw a [T]; returns it. */
inline fun <reified T : Throwable> assertThrows(block: () -> Unit): T {
    try {
        block()
    } catch (e: Throwable) {
        if (e is T) return e
        throw AssertionFailed("expected ${T::class.simpleName}, got $e")
    }
    throw AssertionFailed("expected ${T::class.simpleName}, nothing was thrown")
}

/**
 * A station-hub process over [data]: tokens are enrolled while it is stopped,
 * then it serves on an ephemeral loopback port. The binary is named by
 * STATION_HUB_BIN.
 */
class Hub(private val data: File, private val log: File) {
    private val binary: String = System.getenv("STATION_HUB_BIN")
        ?: error("STATION_HUB_BIN must name the station-hub binary")
    private var process: Process? = null
    var url: String? = null
        private set

    fun enroll(device: String, station: String = STATION): String {
        ensure(process == null) { "the hub must not run while enrolling" }
        val enroll = ProcessBuilder(
            binary, "enroll", "--data", data.path, "--station", station, "--device", device,
        ).redirectErrorStream(false).start()
        val token = enroll.inputStream.bufferedReader().readText().trim()
        ensure(enroll.waitFor(60, TimeUnit.SECONDS) && enroll.exitValue() == 0) {
            "enroll failed: " + enroll.errorStream.bufferedReader().readText()
        }
        return token
    }

    /** `station-hub revoke --wipe` for the device holding [token], through the
     * running hub's administration socket. */
    fun orderWipe(token: String): String {
        val revoke = ProcessBuilder(
            binary, "revoke", "--data", data.path, "--token-id", token.substringBefore('.'), "--wipe",
        ).redirectErrorStream(false).start()
        val line = revoke.inputStream.bufferedReader().readText().trim()
        ensure(revoke.waitFor(60, TimeUnit.SECONDS) && revoke.exitValue() == 0) {
            "revoke --wipe failed: " + revoke.errorStream.bufferedReader().readText()
        }
        return line
    }

    fun start(): String {
        val builder = ProcessBuilder(
            binary, "serve", "--data", data.path, "--listen", "127.0.0.1:0",
            "--cache-capacity", (16 * 1024 * 1024).toString(), "--shutdown-grace-secs", "1",
        ).redirectError(ProcessBuilder.Redirect.appendTo(log))
        builder.environment().putIfAbsent("RUST_LOG", "warn")
        val started = builder.start()
        process = started
        val reader = BufferedReader(InputStreamReader(started.inputStream))
        val line = reader.readLine() ?: ""
        if (!line.startsWith("listening on ")) {
            stop()
            error("station-hub did not start: '$line'\n" + log.readText())
        }
        url = "http://" + line.split(" ").last()
        return url!!
    }

    fun stop() {
        val running = process ?: return
        running.destroy()
        if (!running.waitFor(20, TimeUnit.SECONDS)) {
            running.destroyForcibly()
            running.waitFor(20, TimeUnit.SECONDS)
        }
        process = null
        url = null
    }
}

/** Runs every test of [suites] whose name contains [filter]; answers how many failed. */
fun run(suites: List<Suite>, filter: String?): Int {
    var passed = 0
    val failed = mutableListOf<String>()
    for (suite in suites) {
        for (test in suite.tests) {
            val name = "${suite.name}::${test.name}"
            if (filter != null && !name.contains(filter)) continue
            val dir = Files.createTempDirectory("station-mobile-kt").toFile()
            val context = Context(dir)
            try {
                test.body(context)
                passed += 1
                println("PASS $name")
            } catch (e: Throwable) {
                failed.add(name)
                println("FAIL $name")
                e.printStackTrace(System.out)
            } finally {
                context.close()
                System.gc()
                dir.deleteRecursively()
            }
        }
    }
    println("${passed} passed, ${failed.size} failed")
    failed.forEach { println("  failed: $it") }
    return failed.size
}
