// The Kotlin suite's entry: runs every suite (or those whose
// `suite::test` name contains the first argument) and exits non-zero when
// any test fails. Run by scripts/mobile-bindings.sh test.

package org.stationsync.mobile.tests

import kotlin.system.exitProcess

/** Every suite, in the order they run. */
val SUITES = listOf(fieldworkTests, syncTests, keysTests, transferTests, weakDuplicatesTests)

fun main(args: Array<String>) {
    val failed = run(SUITES, args.firstOrNull())
    exitProcess(if (failed == 0) 0 else 1)
}
