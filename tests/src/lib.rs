//! station-tests: end-to-end tests of station-sync across real processes.
//!
//! Helpers shared by the tests in `tests/tests/`: locating the workspace's
//! binaries built by cargo.

use std::path::PathBuf;

/// The path of a binary of this workspace built in the same profile as the
/// running test (`target/debug/station-agent`, say).
pub fn workspace_binary(name: &str) -> PathBuf {
    let mut dir = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("."));
    // current_exe is target/<profile>/deps/<test>-<hash>.
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join(name)
}
