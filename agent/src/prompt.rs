//! Asks for a store's passphrase on the terminal, without echo: what the
//! command lines do when a store is encrypted and neither a key file nor a
//! passphrase in the environment is given.
//!
//! Invariants: nothing is asked unless standard input is a terminal (a
//! service or a script gets the error saying which key is needed); the
//! terminal's echo is restored whatever happens; the passphrase is held in
//! memory that is zeroed when dropped, and never printed.

use std::io::{BufRead as _, IsTerminal as _, Write as _};

use rustix::termios::{self, LocalModes, OptionalActions};
use zeroize::Zeroizing;

/// Prints `prompt` on standard error and reads one line from the terminal
/// with echo off. `None` when standard input is not a terminal, or the line
/// is empty.
///
/// # Errors
/// The terminal cannot be set up or read.
pub fn passphrase(prompt: &str) -> std::io::Result<Option<Zeroizing<String>>> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Ok(None);
    }
    let saved = termios::tcgetattr(&stdin)?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    quiet.local_modes.insert(LocalModes::ECHONL);
    // Echo goes off before the prompt shows, so nothing typed after it is.
    termios::tcsetattr(&stdin, OptionalActions::Now, &quiet)?;
    let mut stderr = std::io::stderr();
    let asked = stderr
        .write_all(prompt.as_bytes())
        .and_then(|()| stderr.flush());
    let mut line = Zeroizing::new(String::new());
    let read = asked.and_then(|()| stdin.lock().read_line(&mut line));
    let restored = termios::tcsetattr(&stdin, OptionalActions::Now, &saved);
    read?;
    restored?;
    let text = line.trim_end_matches(['\n', '\r']);
    Ok((!text.is_empty()).then(|| Zeroizing::new(text.to_string())))
}
