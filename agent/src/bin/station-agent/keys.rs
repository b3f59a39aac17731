//! Where the store's key comes from on the command line: `--key-file` (or
//! `STATION_AGENT_KEY_FILE`), the passphrase in `STATION_AGENT_PASSPHRASE`,
//! or the default key file `<data>.key` beside the data folder (see
//! [`station_agent::seal::choose_key`]); failing those, for an encrypted
//! store, a passphrase asked on the terminal (never when standard input is
//! not one).
//!
//! Invariants: a key file is created only for a new store or a store in
//! clear about to be encrypted, never over an existing file, and its path is
//! printed on stderr; a key file that others may read is refused; no key or
//! passphrase is ever printed.

use std::path::Path;

use anyhow::Context as _;
use station_agent::seal::{self, KeySource, WrappingKey};
use zeroize::Zeroizing;

/// The environment variable holding a passphrase that unlocks the store.
pub const PASSPHRASE_ENV: &str = "STATION_AGENT_PASSPHRASE";
/// The environment variable holding the new passphrase of `rekey`.
pub const NEW_PASSPHRASE_ENV: &str = "STATION_AGENT_NEW_PASSPHRASE";

/// A passphrase from `var`, when set and not empty.
fn passphrase(var: &str) -> Option<Zeroizing<String>> {
    std::env::var(var)
        .ok()
        .filter(|p| !p.is_empty())
        .map(Zeroizing::new)
}

/// The key to open the store in `data` with. `may_create`: the command may
/// make a store (`init`); a store in clear (of an earlier version) gets a
/// key file too, and is encrypted at this open.
///
/// # Errors
/// The key file given is missing, others may read it, or it holds no key;
/// the default key file cannot be created.
pub fn key_source(
    data: &Path,
    key_file: Option<&Path>,
    may_create: bool,
) -> anyhow::Result<Option<KeySource>> {
    let may_create = may_create || data.join("db").exists();
    let chosen = seal::choose_key(data, key_file, passphrase(PASSPHRASE_ENV), may_create)?;
    if let Some(path) = &chosen.created {
        eprintln!(
            "created the key file {}: the store is encrypted under it. Keep a copy \
             apart from the device; without it nobody can read the data.",
            path.display()
        );
    }
    if chosen.key.is_none()
        && seal::Vault::exists(data)
        && seal::Vault::wiped_at(data)?.is_none()
        && let Some(passphrase) = station_agent::prompt::passphrase(&format!(
            "passphrase of the store in {}: ",
            data.display()
        ))?
    {
        return Ok(Some(KeySource::Passphrase(passphrase)));
    }
    Ok(chosen.key)
}

/// The new key of `rekey`.
///
/// # Errors
/// Neither a new key file nor a new passphrase; the new key file cannot be
/// read or created.
pub fn new_key_source(
    new_key_file: Option<&Path>,
    new_passphrase: bool,
) -> anyhow::Result<KeySource> {
    if new_passphrase {
        if let Some(new) = passphrase(NEW_PASSPHRASE_ENV) {
            return Ok(KeySource::Passphrase(new));
        }
        let asked = station_agent::prompt::passphrase("new passphrase: ")?
            .with_context(|| format!("--new-passphrase: set {NEW_PASSPHRASE_ENV}"))?;
        let again = station_agent::prompt::passphrase("the new passphrase again: ")?;
        anyhow::ensure!(
            again.as_ref().map(|a| a.as_str()) == Some(asked.as_str()),
            "the two passphrases differ: nothing was changed"
        );
        return Ok(KeySource::Passphrase(asked));
    }
    let path = new_key_file.context("give --new-key-file PATH or --new-passphrase")?;
    if path.exists() {
        return Ok(KeySource::Key(WrappingKey::from_key_file(path)?));
    }
    let key = WrappingKey::create_key_file(path)
        .with_context(|| format!("cannot create the key file {}", path.display()))?;
    eprintln!("created the key file {}", path.display());
    Ok(KeySource::Key(key))
}
