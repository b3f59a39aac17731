//! Encryption at rest: the sealing layer both the device's store and the hub's
//! store use for every value that can hold personal data.
//!
//! # Keys
//!
//! Each store has its own random *data key*, made once from the operating
//! system's randomness. It never reaches the disk in clear: it is *wrapped*
//! by a key from outside the store ([`KeySource`]): 32 bytes from a key file
//! (0600) or from the platform, a passphrase stretched with Argon2id, or an
//! app's [`KeyWrapper`] (Android Keystore, iOS Keychain). The wrapped key,
//! the algorithm and the key derivation's parameters are kept beside sled's
//! files in [`HEADER_FILE`] (JSON, 0600). Losing the outside key, or that
//! file, makes the store unreadable for good: nothing else can unwrap the
//! data key.
//!
//! # Sealed values
//!
//! | bytes | what |
//! | --- | --- |
//! | 1 | [`SEALED_VERSION`] |
//! | 1 | the algorithm: 1 XChaCha20-Poly1305, 2 SM4-GCM |
//! | 24 or 12 | a random nonce (192 bits, or 96 for SM4-GCM) |
//! | rest | ciphertext and its 16-byte tag |
//!
//! The associated data binds a value to its place: the store's kind (`agent`,
//! `hub`), the sled tree and the sled key. A sealed value copied to another
//! key, tree or kind of store fails to open, as does one altered by a single
//! bit.
//!
//! Invariants:
//! - the header is written whole or not at all (a temporary file, fsynced,
//!   renamed over the old one, and the directory fsynced); a rekey rewraps the
//!   same data key, so no sealed value changes;
//! - secret bytes (data key, wrapping key, passphrase) are zeroed when dropped;
//!   none is ever formatted into an error, a log line or status output;
//! - a wrong key is found by the unwrap's authentication tag, before anything
//!   is read or written.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

/// The file beside sled's files that holds the wrapped data key.
pub const HEADER_FILE: &str = "seal.json";

/// The first byte of every sealed value: the format of the layout above.
pub const SEALED_VERSION: u8 = 1;

/// The header format this code writes and reads.
const HEADER_VERSION: u32 = 1;

/// The place of the header's check value, and the text it seals.
const CHECK_PLACE: &str = "key-check";
const CHECK_TEXT: &[u8] = b"station-sync data key";

/// The length of a wrapping key and of a key file's secret, in bytes.
pub const WRAPPING_KEY_BYTES: usize = 32;

/// Argon2id's memory, in KiB, for new passphrase-protected stores (19 MiB,
/// two passes, one lane: OWASP's recommended minimum).
const ARGON2_M_KIB: u32 = 19 * 1024;
/// Argon2id's passes.
const ARGON2_T: u32 = 2;
/// Argon2id's lanes.
const ARGON2_P: u32 = 1;
/// The salt's length for Argon2id, in bytes.
const SALT_BYTES: usize = 16;

/// The AEAD sealing a store's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Algorithm {
    /// XChaCha20-Poly1305 with a random 192-bit nonce per value (the default).
    #[default]
    Xchacha20Poly1305,
    /// SM4-GCM (GB/T 32907 in GCM mode) with a random 96-bit nonce per value,
    /// for deployments that need a 商用密码 assessment.
    Sm4Gcm,
}

impl Algorithm {
    fn tag(self) -> u8 {
        match self {
            Algorithm::Xchacha20Poly1305 => 1,
            Algorithm::Sm4Gcm => 2,
        }
    }

    fn nonce_len(self) -> usize {
        match self {
            Algorithm::Xchacha20Poly1305 => 24,
            Algorithm::Sm4Gcm => 12,
        }
    }

    fn key_len(self) -> usize {
        match self {
            Algorithm::Xchacha20Poly1305 => 32,
            Algorithm::Sm4Gcm => 16,
        }
    }

    /// The name used in configuration: `xchacha20-poly1305` or `sm4-gcm`.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Xchacha20Poly1305 => "xchacha20-poly1305",
            Algorithm::Sm4Gcm => "sm4-gcm",
        }
    }
}

impl std::str::FromStr for Algorithm {
    type Err = SealError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "xchacha20-poly1305" => Ok(Algorithm::Xchacha20Poly1305),
            "sm4-gcm" => Ok(Algorithm::Sm4Gcm),
            other => Err(SealError::BadAlgorithm(other.chars().take(40).collect())),
        }
    }
}

/// Errors of the sealing layer. None carries a secret or a sealed value's
/// contents.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The key given does not unwrap this store's data key.
    #[error("wrong key: it does not open this store's data key (nothing was changed)")]
    WrongKey,
    /// The store is encrypted and no key was given.
    #[error(
        "this store is encrypted: give its key (a key file, a passphrase or the app's key provider)"
    )]
    KeyRequired,
    /// The kind of key given is not the kind the store was sealed with.
    #[error("this store's data key is wrapped by {expected}, but {given} was given")]
    WrongKeyKind {
        /// The kind the header names.
        expected: &'static str,
        /// The kind given.
        given: &'static str,
    },
    /// A key file that others may read, or that does not hold a key.
    #[error("key file {path}: {reason}")]
    BadKeyFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A value that does not open: altered, moved to another key, or sealed
    /// under another data key.
    #[error("a sealed value does not open (altered, moved, or of another store)")]
    Tampered,
    /// The header does not decode.
    #[error("key header {HEADER_FILE}: {0}")]
    BadHeader(String),
    /// An unknown algorithm name.
    #[error("unknown algorithm {0:?}: use xchacha20-poly1305 or sm4-gcm")]
    BadAlgorithm(String),
    /// The store's keys were destroyed by a wipe.
    #[error("this store was wiped: its data key was destroyed and its data cannot be read")]
    Wiped,
    /// The app's key provider failed.
    #[error("the key provider failed: {0}")]
    Provider(String),
    /// The operating system gave no randomness.
    #[error("no randomness from the operating system: {0}")]
    NoRandomness(String),
    /// Reading or writing the header or a key file failed.
    #[error("key storage: {0}")]
    Io(#[from] std::io::Error),
}

/// Wraps and unwraps a store's data key with a key the app holds (the
/// Android Keystore or the iOS Keychain), which never leaves the platform.
pub trait KeyWrapper: Send + Sync + fmt::Debug {
    /// Encrypts `data_key`; the result is stored in the header.
    ///
    /// # Errors
    /// The platform's failure, as text without secrets.
    fn wrap(&self, data_key: &[u8]) -> Result<Vec<u8>, String>;

    /// Decrypts what [`KeyWrapper::wrap`] returned.
    ///
    /// # Errors
    /// The platform's failure, or a blob it did not wrap.
    fn unwrap(&self, wrapped: &[u8]) -> Result<Vec<u8>, String>;
}

/// 32 secret bytes that wrap a store's data key. Zeroed when dropped.
#[derive(Clone)]
pub struct WrappingKey(Zeroizing<[u8; WRAPPING_KEY_BYTES]>);

impl fmt::Debug for WrappingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WrappingKey(..)")
    }
}

impl WrappingKey {
    /// A key from its bytes.
    pub fn from_bytes(bytes: [u8; WRAPPING_KEY_BYTES]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// A fresh key from the operating system's randomness.
    ///
    /// # Errors
    /// [`SealError::NoRandomness`].
    pub fn generate() -> Result<Self, SealError> {
        let mut bytes = Zeroizing::new([0u8; WRAPPING_KEY_BYTES]);
        random(&mut bytes[..])?;
        Ok(Self(bytes))
    }

    /// Reads a key file: 64 hexadecimal digits (a final newline allowed),
    /// readable and writable by its owner only.
    ///
    /// # Errors
    /// [`SealError::BadKeyFile`] when the file is missing, group- or
    /// world-accessible, or does not hold a key.
    pub fn from_key_file(path: &Path) -> Result<Self, SealError> {
        let bad = |reason: String| SealError::BadKeyFile {
            path: path.to_path_buf(),
            reason,
        };
        let meta = std::fs::metadata(path).map_err(|e| bad(e.to_string()))?;
        check_private(&meta).map_err(bad)?;
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?);
        let digits = text.trim_end_matches(['\n', '\r']);
        let mut bytes = Zeroizing::new([0u8; WRAPPING_KEY_BYTES]);
        if digits.len() != 2 * WRAPPING_KEY_BYTES || !decode_hex(digits, &mut bytes[..]) {
            return Err(bad(format!(
                "must hold {} hexadecimal digits",
                2 * WRAPPING_KEY_BYTES
            )));
        }
        Ok(Self(bytes))
    }

    /// Creates a key file holding a fresh key, 0600, failing if the file
    /// exists; the file and its directory entry are fsynced.
    ///
    /// # Errors
    /// The file exists or cannot be written; no randomness.
    pub fn create_key_file(path: &Path) -> Result<Self, SealError> {
        let key = Self::generate()?;
        let mut text = Zeroizing::new(String::with_capacity(2 * WRAPPING_KEY_BYTES + 1));
        encode_hex(&key.0[..], &mut text);
        text.push('\n');
        let mut file = private_file(path, true)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        sync_parent(path)?;
        Ok(key)
    }
}

/// Where a store's wrapping key comes from.
#[derive(Clone)]
pub enum KeySource {
    /// 32 bytes from a key file or the platform.
    Key(WrappingKey),
    /// A passphrase, stretched with Argon2id and the store's salt.
    Passphrase(Zeroizing<String>),
    /// The app's wrapper (Android Keystore, iOS Keychain).
    Provider(Arc<dyn KeyWrapper>),
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind())
    }
}

impl KeySource {
    /// What kind of key this is, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            KeySource::Key(_) => "a key file",
            KeySource::Passphrase(_) => "a passphrase",
            KeySource::Provider(_) => "the app's key provider",
        }
    }
}

/// How the data key is wrapped, as the header records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
enum Wrapping {
    /// By 32 bytes given as they are.
    Key,
    /// By Argon2id of a passphrase.
    Argon2id {
        /// Memory, KiB.
        m_kib: u32,
        /// Passes.
        t: u32,
        /// Lanes.
        p: u32,
        /// The salt, hexadecimal.
        salt: String,
    },
    /// By the app's key provider.
    Provider,
}

impl Wrapping {
    fn kind(&self) -> &'static str {
        match self {
            Wrapping::Key => "a key file",
            Wrapping::Argon2id { .. } => "a passphrase",
            Wrapping::Provider => "the app's key provider",
        }
    }
}

/// The header file's contents.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    /// [`HEADER_VERSION`].
    version: u32,
    /// The kind of store (`agent`, `hub`): part of every value's binding.
    store: String,
    /// The values' AEAD.
    algorithm: Algorithm,
    /// How the data key is wrapped.
    wrapping: Wrapping,
    /// The wrapped data key, hexadecimal.
    wrapped_key: String,
    /// A fixed text sealed under the data key, hexadecimal: an unwrapped key
    /// that does not open it is the wrong key (an app's provider may hand
    /// back wrong bytes without noticing).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    check: String,
    /// Set by a wipe, when the wrapped key was destroyed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    wiped_at_ms: Option<i64>,
}

/// The cipher of one store, keyed by its data key.
enum Cipher {
    XChaCha(Box<chacha20poly1305::XChaCha20Poly1305>),
    Sm4(Box<Sm4Gcm>),
}

type Sm4Gcm = aes_gcm::AesGcm<sm4::Sm4, aes_gcm::aead::consts::U12>;

impl Cipher {
    fn new(algorithm: Algorithm, key: &[u8]) -> Result<Self, SealError> {
        let bad = || SealError::BadHeader("data key of the wrong length".into());
        Ok(match algorithm {
            Algorithm::Xchacha20Poly1305 => Cipher::XChaCha(Box::new(
                chacha20poly1305::XChaCha20Poly1305::new_from_slice(key).map_err(|_| bad())?,
            )),
            Algorithm::Sm4Gcm => {
                Cipher::Sm4(Box::new(Sm4Gcm::new_from_slice(key).map_err(|_| bad())?))
            }
        })
    }

    fn algorithm(&self) -> Algorithm {
        match self {
            Cipher::XChaCha(_) => Algorithm::Xchacha20Poly1305,
            Cipher::Sm4(_) => Algorithm::Sm4Gcm,
        }
    }

    fn encrypt(&self, nonce: &[u8], msg: &[u8], aad: &[u8]) -> Vec<u8> {
        let payload = Payload { msg, aad };
        let sealed = match self {
            Cipher::XChaCha(c) => c.encrypt(nonce.into(), payload),
            Cipher::Sm4(c) => c.encrypt(nonce.into(), payload),
        };
        // Encryption fails only for a message above the AEAD's limit (2^38
        // bytes for both), far beyond any sled value.
        sealed.unwrap_or_default()
    }

    fn decrypt(&self, nonce: &[u8], msg: &[u8], aad: &[u8]) -> Result<Vec<u8>, SealError> {
        let payload = Payload { msg, aad };
        match self {
            Cipher::XChaCha(c) => c.decrypt(nonce.into(), payload),
            Cipher::Sm4(c) => c.decrypt(nonce.into(), payload),
        }
        .map_err(|_| SealError::Tampered)
    }
}

/// A store's opened data key: seals and opens its values. The key is zeroed
/// when the vault is dropped.
pub struct Vault {
    /// The kind of store, bound into every value.
    store: String,
    /// The AEAD under the data key.
    cipher: Cipher,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault")
            .field("store", &self.store)
            .field("algorithm", &self.cipher.algorithm())
            .finish_non_exhaustive()
    }
}

impl Vault {
    /// The values' AEAD.
    pub fn algorithm(&self) -> Algorithm {
        self.cipher.algorithm()
    }

    /// Seals `plaintext` for the place (`tree`, `key`) of this store.
    ///
    /// # Errors
    /// [`SealError::NoRandomness`]: no nonce could be drawn, and nothing is
    /// sealed rather than risk a repeated nonce.
    pub fn seal(&self, tree: &str, key: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let algorithm = self.cipher.algorithm();
        let mut nonce = [0u8; 24];
        let nonce = &mut nonce[..algorithm.nonce_len()];
        random(nonce)?;
        let aad = place(&self.store, tree, key);
        let body = self.cipher.encrypt(nonce, plaintext, &aad);
        let mut out = Vec::with_capacity(2 + nonce.len() + body.len());
        out.push(SEALED_VERSION);
        out.push(algorithm.tag());
        out.extend_from_slice(nonce);
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Opens a value sealed by [`Vault::seal`] for the same place.
    ///
    /// # Errors
    /// [`SealError::Tampered`] for a value altered, moved to another place or
    /// sealed under another key; [`SealError::BadHeader`] for an unknown
    /// version or algorithm.
    pub fn open(&self, tree: &str, key: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        let algorithm = self.cipher.algorithm();
        let (&[version, tag], rest) = sealed.split_first_chunk::<2>().ok_or(SealError::Tampered)?;
        if version != SEALED_VERSION {
            return Err(SealError::BadHeader(format!(
                "sealed value of version {version}: this build reads {SEALED_VERSION}"
            )));
        }
        if tag != algorithm.tag() {
            return Err(SealError::Tampered);
        }
        if rest.len() < algorithm.nonce_len() + 16 {
            return Err(SealError::Tampered);
        }
        let (nonce, body) = rest.split_at(algorithm.nonce_len());
        self.cipher
            .decrypt(nonce, body, &place(&self.store, tree, key))
    }

    /// Whether `dir` holds a key header (live or wiped).
    pub fn exists(dir: &Path) -> bool {
        dir.join(HEADER_FILE).exists()
    }

    /// Creates a new data key for the store of kind `store` in `dir`, wraps it
    /// with `source` and writes the header.
    ///
    /// # Errors
    /// No randomness; the provider fails; the header cannot be written.
    pub fn create(
        dir: &Path,
        store: &str,
        algorithm: Algorithm,
        source: &KeySource,
    ) -> Result<Self, SealError> {
        let mut data_key = Zeroizing::new(vec![0u8; algorithm.key_len()]);
        random(&mut data_key)?;
        let mut header = wrap(store, algorithm, &data_key, source)?;
        let vault = Self {
            store: store.to_string(),
            cipher: Cipher::new(algorithm, &data_key)?,
        };
        encode_hex(
            &vault.seal(CHECK_PLACE, &[], CHECK_TEXT)?,
            &mut header.check,
        );
        write_header(dir, &header)?;
        Ok(vault)
    }

    /// Opens the data key of the store in `dir` with `source`.
    ///
    /// # Errors
    /// [`SealError::WrongKey`], [`SealError::WrongKeyKind`],
    /// [`SealError::Wiped`], or a header that cannot be read.
    pub fn unlock(dir: &Path, store: &str, source: &KeySource) -> Result<Self, SealError> {
        let header = read_header(dir)?;
        if header.store != store {
            return Err(SealError::BadHeader(format!(
                "the key belongs to a {} store, not a {store} store",
                header.store
            )));
        }
        let data_key = unwrap(&header, source)?;
        let vault = Self {
            store: header.store,
            cipher: Cipher::new(header.algorithm, &data_key)?,
        };
        let mut check = vec![0u8; header.check.len() / 2];
        if !decode_hex(&header.check, &mut check) {
            return Err(SealError::BadHeader("check".into()));
        }
        match vault.open(CHECK_PLACE, &[], &check) {
            Ok(text) if text == CHECK_TEXT => Ok(vault),
            _ => Err(SealError::WrongKey),
        }
    }

    /// Rewraps the data key of the store in `dir`, opened with `old`, under
    /// `new` (which may be of another kind), replacing the header atomically.
    /// No sealed value changes.
    ///
    /// # Errors
    /// As [`Vault::unlock`] for `old`; the new header cannot be written (the
    /// old one then stays in force).
    pub fn rekey(dir: &Path, old: &KeySource, new: &KeySource) -> Result<(), SealError> {
        let header = read_header(dir)?;
        Self::unlock(dir, &header.store, old)?;
        let data_key = unwrap(&header, old)?;
        let mut rewrapped = wrap(&header.store, header.algorithm, &data_key, new)?;
        rewrapped.check = header.check;
        write_header(dir, &rewrapped)
    }

    /// Destroys the wrapped data key of the store in `dir`: the header keeps
    /// only that the store was wiped, and when. Every sealed value of the
    /// store becomes unreadable for good.
    ///
    /// # Errors
    /// The header cannot be rewritten.
    pub fn destroy(dir: &Path, now_ms: i64) -> Result<(), SealError> {
        let mut header = read_header(dir)?;
        header.wrapped_key.zeroize();
        header.wrapped_key = String::new();
        header.check = String::new();
        header.wrapping = Wrapping::Key;
        header.wiped_at_ms = Some(now_ms);
        write_header(dir, &header)
    }

    /// Wipes the store of kind `store` in `dir`: destroys its wrapped data
    /// key as [`Vault::destroy`] does, or, for a store in clear (no header),
    /// writes a header that only says the store was wiped, and when. Either
    /// way the header is replaced atomically and fsynced before this
    /// returns; wiping a wiped store keeps its first time.
    ///
    /// # Errors
    /// The header cannot be read or written.
    pub fn wipe(dir: &Path, store: &str, now_ms: i64) -> Result<(), SealError> {
        if Self::exists(dir) {
            if Self::wiped_at(dir)?.is_some() {
                return Ok(());
            }
            return Self::destroy(dir, now_ms);
        }
        let header = Header {
            version: HEADER_VERSION,
            store: store.to_string(),
            algorithm: Algorithm::default(),
            wrapping: Wrapping::Key,
            wrapped_key: String::new(),
            check: String::new(),
            wiped_at_ms: Some(now_ms),
        };
        write_header(dir, &header)
    }

    /// When the store in `dir` was wiped, if it was.
    ///
    /// # Errors
    /// A header that exists and cannot be read.
    pub fn wiped_at(dir: &Path) -> Result<Option<i64>, SealError> {
        if !Self::exists(dir) {
            return Ok(None);
        }
        Ok(read_header(dir)?.wiped_at_ms)
    }
}

/// The default key file of the store in `data`: `<data>.key` beside the
/// folder, so that a copy of the folder alone reads nothing.
///
/// # Errors
/// [`SealError::BadKeyFile`] when `data` has no folder name (`.`, `/`).
pub fn default_key_file(data: &Path) -> Result<PathBuf, SealError> {
    let name = data.file_name().ok_or_else(|| SealError::BadKeyFile {
        path: data.to_path_buf(),
        reason: "has no folder name to put a key file beside: name a key file".into(),
    })?;
    let mut file = name.to_os_string();
    file.push(".key");
    Ok(data.with_file_name(file))
}

/// The key a command line opens the store in `data` with, and the key file
/// it created for it, if it did.
#[derive(Debug)]
pub struct ChosenKey {
    /// The key; `None` when none was found for an encrypted store (its open
    /// then says a key is required) or for a store that does not exist.
    pub key: Option<KeySource>,
    /// The default key file made for a new store, or for a store in clear
    /// about to be encrypted: tell the operator where it is.
    pub created: Option<PathBuf>,
}

/// Chooses the key of the store in `data`, in this order: `key_file` when
/// given; `passphrase` when given; the default key file beside the folder
/// ([`default_key_file`]) when it exists; else, when `may_create` and the
/// store is not encrypted already, a new default key file, created 0600
/// (with the folders above it): the command is about to make the store, or
/// to encrypt a store in clear.
///
/// # Errors
/// A key file that is missing, that others may read, or that holds no key;
/// the default key file cannot be created.
pub fn choose_key(
    data: &Path,
    key_file: Option<&Path>,
    passphrase: Option<Zeroizing<String>>,
    may_create: bool,
) -> Result<ChosenKey, SealError> {
    let chosen = |key| ChosenKey {
        key: Some(key),
        created: None,
    };
    if let Some(path) = key_file {
        return Ok(chosen(KeySource::Key(WrappingKey::from_key_file(path)?)));
    }
    if let Some(passphrase) = passphrase.filter(|p| !p.is_empty()) {
        return Ok(chosen(KeySource::Passphrase(passphrase)));
    }
    let path = default_key_file(data)?;
    if path.exists() {
        return Ok(chosen(KeySource::Key(WrappingKey::from_key_file(&path)?)));
    }
    if Vault::exists(data) || !may_create {
        return Ok(ChosenKey {
            key: None,
            created: None,
        });
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let key = WrappingKey::create_key_file(&path)?;
    Ok(ChosenKey {
        key: Some(KeySource::Key(key)),
        created: Some(path),
    })
}

/// What [`prepare`] found for a store about to open.
#[derive(Debug)]
pub enum Prepared {
    /// No key given and no key header: the store is in clear (a store of an
    /// earlier version, or opened on purpose without encryption).
    Plain,
    /// Every sealed key space is sealed under this vault.
    Sealed(Vault),
    /// The vault is ready but the store's values are (partly) in clear: run
    /// [`SealedTree::seal_in_place`] on each of its trees, then mark it sealed.
    NeedsSealing(Vault),
}

/// Decides how a store of kind `store` in `dir` opens: unlocks its data key
/// with `key`, or makes one when the store has none yet (a new store, or a
/// store in clear opened with a key for the first time). `marked_sealed` is
/// whether the store records that all its values are sealed.
///
/// # Errors
/// [`SealError::KeyRequired`] for an encrypted store opened without a key;
/// [`SealError::WrongKey`], [`SealError::WrongKeyKind`], [`SealError::Wiped`];
/// [`SealError::BadHeader`] when a sealed store lost its header (its data
/// cannot be read). Nothing in the store is changed by a refusal.
pub fn prepare(
    dir: &Path,
    store: &str,
    key: Option<&KeySource>,
    algorithm: Algorithm,
    marked_sealed: bool,
) -> Result<Prepared, SealError> {
    if Vault::exists(dir) {
        let Some(key) = key else {
            return Err(match Vault::wiped_at(dir)? {
                Some(_) => SealError::Wiped,
                None => SealError::KeyRequired,
            });
        };
        let vault = Vault::unlock(dir, store, key)?;
        return Ok(if marked_sealed {
            Prepared::Sealed(vault)
        } else {
            Prepared::NeedsSealing(vault)
        });
    }
    if marked_sealed {
        return Err(SealError::BadHeader(
            "missing: the store is encrypted and its wrapped data key is gone, \
             so its data cannot be read"
                .into(),
        ));
    }
    match key {
        None => Ok(Prepared::Plain),
        Some(key) => Ok(Prepared::NeedsSealing(Vault::create(
            dir, store, algorithm, key,
        )?)),
    }
}

/// How [`SealedTree::seal_in_place`] proceeds.
#[derive(Clone)]
pub struct SealingOptions {
    /// Values per atomic step.
    pub chunk_values: usize,
    /// Called after each step is applied and flushed, with the number of
    /// steps done (a test's crash point).
    pub after_step: Option<Arc<dyn Fn(usize) + Send + Sync>>,
}

impl Default for SealingOptions {
    fn default() -> Self {
        Self {
            chunk_values: 2048,
            after_step: None,
        }
    }
}

impl fmt::Debug for SealingOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealingOptions")
            .field("chunk_values", &self.chunk_values)
            .finish_non_exhaustive()
    }
}

/// The sealed key spaces of one sled tree: every value whose key starts with
/// one of `spaces` is sealed for its place; other values are stored as they
/// are. A new key space that can hold personal data is sealed by adding its
/// prefix to the list given here.
pub struct SealedTree {
    /// The store's vault; `None` for a store in clear.
    vault: Option<Arc<Vault>>,
    /// The tree's name, bound into each value.
    tree: String,
    /// The prefixes of the sealed key spaces.
    spaces: &'static [&'static [u8]],
}

impl fmt::Debug for SealedTree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedTree")
            .field("tree", &self.tree)
            .field("sealed", &self.vault.is_some())
            .finish_non_exhaustive()
    }
}

impl SealedTree {
    /// The sealed spaces of `tree` under `vault` (`None`: in clear).
    pub fn new(vault: Option<Arc<Vault>>, tree: &str, spaces: &'static [&'static [u8]]) -> Self {
        Self {
            vault,
            tree: tree.to_string(),
            spaces,
        }
    }

    /// The vault, when the store is encrypted.
    pub fn vault(&self) -> Option<&Arc<Vault>> {
        self.vault.as_ref()
    }

    /// Whether the value at `key` is (to be) sealed.
    pub fn is_sealed(&self, key: &[u8]) -> bool {
        self.vault.is_some() && self.spaces.iter().any(|space| key.starts_with(space))
    }

    /// The stored form of `value` at `key`.
    ///
    /// # Errors
    /// [`SealError::NoRandomness`].
    pub fn seal(&self, key: &[u8], value: Vec<u8>) -> Result<Vec<u8>, SealError> {
        match &self.vault {
            Some(vault) if self.is_sealed(key) => vault.seal(&self.tree, key, &value),
            _ => Ok(value),
        }
    }

    /// The value stored as `stored` at `key`.
    ///
    /// # Errors
    /// [`SealError::Tampered`] for a sealed value that does not open.
    pub fn open(&self, key: &[u8], stored: &[u8]) -> Result<Vec<u8>, SealError> {
        match &self.vault {
            Some(vault) if self.is_sealed(key) => vault.open(&self.tree, key, stored),
            _ => Ok(stored.to_vec()),
        }
    }

    /// Seals, in place, every value of `tree` in a sealed space that is still
    /// in clear, crash-safely: in atomic, flushed steps of
    /// [`SealingOptions::chunk_values`] keys in key order, each recording the
    /// last key it covered under `progress_key` (a key outside the sealed
    /// spaces). Values at or before that key are sealed, values after it are
    /// not, so a reopen after a crash resumes after it. The caller then marks
    /// the store sealed and removes `progress_key` in one batch.
    ///
    /// # Errors
    /// Storage errors, or no randomness; what was sealed stays sealed and a
    /// later open resumes.
    pub fn seal_in_place(
        &self,
        tree: &sled::Tree,
        progress_key: &[u8],
        options: &SealingOptions,
    ) -> Result<usize, SealInPlaceError> {
        let mut after: Option<Vec<u8>> = tree.get(progress_key)?.map(|v| v.to_vec());
        let mut steps = 0;
        let mut sealed = 0;
        loop {
            let range = match &after {
                Some(k) => tree.range::<&[u8], _>((
                    std::ops::Bound::Excluded(k.as_slice()),
                    std::ops::Bound::Unbounded,
                )),
                None => tree.iter(),
            };
            let mut batch = sled::Batch::default();
            let mut last = None;
            for item in range.take(options.chunk_values.max(1)) {
                let (k, v) = item?;
                if k.as_ref() != progress_key && self.is_sealed(&k) {
                    batch.insert(k.as_ref(), self.seal(&k, v.to_vec())?);
                    sealed += 1;
                }
                last = Some(k.to_vec());
            }
            let Some(last) = last else {
                return Ok(sealed);
            };
            batch.insert(progress_key, last.as_slice());
            tree.apply_batch(batch)?;
            tree.flush()?;
            steps += 1;
            if let Some(after_step) = &options.after_step {
                after_step(steps);
            }
            after = Some(last);
        }
    }
}

/// Why [`SealedTree::seal_in_place`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum SealInPlaceError {
    /// sled failed.
    #[error(transparent)]
    Sled(#[from] sled::Error),
    /// Sealing failed.
    #[error(transparent)]
    Seal(#[from] SealError),
}

/// The associated data of a value: store kind, tree and key, each
/// length-prefixed so no two places share bytes.
fn place(store: &str, tree: &str, key: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(16 + store.len() + tree.len() + key.len());
    aad.extend_from_slice(b"station-seal\x01");
    for part in [store.as_bytes(), tree.as_bytes(), key] {
        // sled keys and names are far below 4 GiB.
        aad.extend_from_slice(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
        aad.extend_from_slice(part);
    }
    aad
}

/// The associated data of a wrapped data key.
fn wrap_place(store: &str, algorithm: Algorithm) -> Vec<u8> {
    place(store, "data-key", algorithm.name().as_bytes())
}

/// The key that wraps the data key, from a key or a passphrase.
fn wrapping_cipher(
    algorithm: Algorithm,
    source: &KeySource,
    wrapping: &Wrapping,
) -> Result<Cipher, SealError> {
    let mut kek = Zeroizing::new([0u8; WRAPPING_KEY_BYTES]);
    match (source, wrapping) {
        (KeySource::Key(key), Wrapping::Key) => kek.copy_from_slice(&key.0[..]),
        (KeySource::Passphrase(passphrase), Wrapping::Argon2id { m_kib, t, p, salt }) => {
            let mut salt_bytes = [0u8; SALT_BYTES];
            if salt.len() != 2 * SALT_BYTES || !decode_hex(salt, &mut salt_bytes) {
                return Err(SealError::BadHeader("salt".into()));
            }
            let params = argon2::Params::new(*m_kib, *t, *p, Some(WRAPPING_KEY_BYTES))
                .map_err(|e| SealError::BadHeader(format!("Argon2id parameters: {e}")))?;
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
                .hash_password_into(passphrase.as_bytes(), &salt_bytes, &mut kek[..])
                .map_err(|e| SealError::BadHeader(format!("Argon2id: {e}")))?;
        }
        (given, expected) => {
            return Err(SealError::WrongKeyKind {
                expected: expected.kind(),
                given: given.kind(),
            });
        }
    }
    Cipher::new(algorithm, &kek[..algorithm.key_len()])
}

fn wrap(
    store: &str,
    algorithm: Algorithm,
    data_key: &[u8],
    source: &KeySource,
) -> Result<Header, SealError> {
    let (wrapping, wrapped) = match source {
        KeySource::Provider(provider) => (
            Wrapping::Provider,
            provider.wrap(data_key).map_err(SealError::Provider)?,
        ),
        KeySource::Key(_) | KeySource::Passphrase(_) => {
            let wrapping = match source {
                KeySource::Passphrase(_) => {
                    let mut salt = [0u8; SALT_BYTES];
                    random(&mut salt)?;
                    let mut hex = String::new();
                    encode_hex(&salt, &mut hex);
                    Wrapping::Argon2id {
                        m_kib: ARGON2_M_KIB,
                        t: ARGON2_T,
                        p: ARGON2_P,
                        salt: hex,
                    }
                }
                _ => Wrapping::Key,
            };
            let cipher = wrapping_cipher(algorithm, source, &wrapping)?;
            let mut nonce = [0u8; 24];
            let nonce = &mut nonce[..algorithm.nonce_len()];
            random(nonce)?;
            let mut wrapped = nonce.to_vec();
            wrapped.extend(cipher.encrypt(nonce, data_key, &wrap_place(store, algorithm)));
            (wrapping, wrapped)
        }
    };
    let mut wrapped_key = String::new();
    encode_hex(&wrapped, &mut wrapped_key);
    Ok(Header {
        version: HEADER_VERSION,
        store: store.to_string(),
        algorithm,
        wrapping,
        wrapped_key,
        check: String::new(),
        wiped_at_ms: None,
    })
}

fn unwrap(header: &Header, source: &KeySource) -> Result<Zeroizing<Vec<u8>>, SealError> {
    if header.wiped_at_ms.is_some() {
        return Err(SealError::Wiped);
    }
    let mut wrapped = vec![0u8; header.wrapped_key.len() / 2];
    if !header.wrapped_key.len().is_multiple_of(2) || !decode_hex(&header.wrapped_key, &mut wrapped)
    {
        return Err(SealError::BadHeader("wrapped key".into()));
    }
    let algorithm = header.algorithm;
    let data_key = match (source, &header.wrapping) {
        (KeySource::Provider(provider), Wrapping::Provider) => {
            Zeroizing::new(provider.unwrap(&wrapped).map_err(SealError::Provider)?)
        }
        (KeySource::Provider(_), expected) => {
            return Err(SealError::WrongKeyKind {
                expected: expected.kind(),
                given: source.kind(),
            });
        }
        (_, wrapping) => {
            let cipher = wrapping_cipher(algorithm, source, wrapping)?;
            if wrapped.len() < algorithm.nonce_len() {
                return Err(SealError::BadHeader("wrapped key".into()));
            }
            let (nonce, body) = wrapped.split_at(algorithm.nonce_len());
            Zeroizing::new(
                cipher
                    .decrypt(nonce, body, &wrap_place(&header.store, algorithm))
                    .map_err(|_| SealError::WrongKey)?,
            )
        }
    };
    if data_key.len() != algorithm.key_len() {
        return Err(SealError::WrongKey);
    }
    Ok(data_key)
}

fn read_header(dir: &Path) -> Result<Header, SealError> {
    let bytes = match std::fs::read(dir.join(HEADER_FILE)) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(SealError::KeyRequired),
        Err(e) => return Err(e.into()),
    };
    let header: Header =
        serde_json::from_slice(&bytes).map_err(|e| SealError::BadHeader(e.to_string()))?;
    if header.version != HEADER_VERSION {
        return Err(SealError::BadHeader(format!(
            "version {} (this build reads {HEADER_VERSION})",
            header.version
        )));
    }
    Ok(header)
}

/// Writes the header whole or not at all.
fn write_header(dir: &Path, header: &Header) -> Result<(), SealError> {
    let json = serde_json::to_vec_pretty(header)
        .map_err(|e| SealError::BadHeader(format!("cannot encode: {e}")))?;
    let tmp = dir.join(format!("{HEADER_FILE}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    let mut file = private_file(&tmp, true)?;
    file.write_all(&json)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, dir.join(HEADER_FILE))?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// Opens a new file readable and writable by its owner only, whatever the
/// umask.
fn private_file(path: &Path, create_new: bool) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if create_new {
        options.create_new(true);
    } else {
        options.create(true).truncate(true);
    }
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(path)?;
    #[cfg(unix)]
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    Ok(file)
}

fn sync_parent(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => std::fs::File::open(parent)?.sync_all(),
        _ => std::fs::File::open(".")?.sync_all(),
    }
}

/// Refuses a key file that its group or others may read or write.
fn check_private(meta: &std::fs::Metadata) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(format!(
                "has mode {mode:04o}: a key file must be readable by its owner only \
                 (chmod 600 it, or make a new one)"
            ));
        }
    }
    if !meta.is_file() {
        return Err("is not a regular file".into());
    }
    Ok(())
}

fn random(out: &mut [u8]) -> Result<(), SealError> {
    getrandom::fill(out).map_err(|e| SealError::NoRandomness(e.to_string()))
}

fn encode_hex(bytes: &[u8], out: &mut String) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
}

/// Decodes `2 * out.len()` hexadecimal digits into `out`.
fn decode_hex(digits: &str, out: &mut [u8]) -> bool {
    let digits = digits.as_bytes();
    if digits.len() != 2 * out.len() {
        return false;
    }
    let nibble = |c: u8| {
        char::from(c)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    for (i, pair) in digits.chunks_exact(2).enumerate() {
        match (nibble(pair[0]), nibble(pair[1])) {
            (Some(hi), Some(lo)) => out[i] = hi << 4 | lo,
            _ => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn key() -> KeySource {
        KeySource::Key(WrappingKey::generate().unwrap())
    }

    #[test]
    fn a_value_opens_only_at_its_place_under_its_key() {
        for algorithm in [Algorithm::Xchacha20Poly1305, Algorithm::Sm4Gcm] {
            let dir = tempfile::tempdir().unwrap();
            let source = key();
            let vault = Vault::create(dir.path(), "agent", algorithm, &source).unwrap();
            let sealed = vault.seal("station", b"o:1", b"secret case").unwrap();
            assert_eq!(sealed[0], SEALED_VERSION);
            assert!(!sealed.windows(6).any(|w| w == b"secret"));
            assert_eq!(
                vault.open("station", b"o:1", &sealed).unwrap(),
                b"secret case"
            );
            assert!(matches!(
                vault.open("station", b"o:2", &sealed),
                Err(SealError::Tampered)
            ));
            assert!(matches!(
                vault.open("other", b"o:1", &sealed),
                Err(SealError::Tampered)
            ));
            let mut flipped = sealed.clone();
            *flipped.last_mut().unwrap() ^= 1;
            assert!(vault.open("station", b"o:1", &flipped).is_err());
            let again = Vault::unlock(dir.path(), "agent", &source).unwrap();
            assert_eq!(again.algorithm(), algorithm);
            assert_eq!(
                again.open("station", b"o:1", &sealed).unwrap(),
                b"secret case"
            );
            assert!(matches!(
                Vault::unlock(dir.path(), "agent", &key()),
                Err(SealError::WrongKey)
            ));
            assert!(Vault::unlock(dir.path(), "hub", &source).is_err());
        }
    }

    #[test]
    fn a_passphrase_store_rekeys_to_a_key_file_and_wipes() {
        let dir = tempfile::tempdir().unwrap();
        let pass = KeySource::Passphrase(Zeroizing::new("ri-ka-tse 2026".into()));
        let vault = Vault::create(dir.path(), "hub", Algorithm::default(), &pass).unwrap();
        let sealed = vault.seal("hub", b"l:1", b"event").unwrap();
        let wrong = KeySource::Passphrase(Zeroizing::new("guess".into()));
        assert!(matches!(
            Vault::unlock(dir.path(), "hub", &wrong),
            Err(SealError::WrongKey)
        ));
        assert!(matches!(
            Vault::unlock(dir.path(), "hub", &key()),
            Err(SealError::WrongKeyKind { .. })
        ));
        let new = key();
        assert!(Vault::rekey(dir.path(), &wrong, &new).is_err());
        Vault::rekey(dir.path(), &pass, &new).unwrap();
        assert!(Vault::unlock(dir.path(), "hub", &pass).is_err());
        let vault = Vault::unlock(dir.path(), "hub", &new).unwrap();
        assert_eq!(vault.open("hub", b"l:1", &sealed).unwrap(), b"event");
        Vault::destroy(dir.path(), 7).unwrap();
        assert!(matches!(
            Vault::unlock(dir.path(), "hub", &new),
            Err(SealError::Wiped)
        ));
        assert_eq!(Vault::wiped_at(dir.path()).unwrap(), Some(7));
    }

    /// An app's provider that keeps nothing secret: it flips every bit.
    #[derive(Debug)]
    struct Flipping(u8);

    impl KeyWrapper for Flipping {
        fn wrap(&self, data_key: &[u8]) -> Result<Vec<u8>, String> {
            Ok(data_key.iter().map(|b| b ^ self.0).collect())
        }

        fn unwrap(&self, wrapped: &[u8]) -> Result<Vec<u8>, String> {
            Ok(wrapped.iter().map(|b| b ^ self.0).collect())
        }
    }

    #[test]
    fn a_provider_that_unwraps_wrong_bytes_is_a_wrong_key() {
        let dir = tempfile::tempdir().unwrap();
        let right = KeySource::Provider(Arc::new(Flipping(0xff)));
        Vault::create(dir.path(), "agent", Algorithm::default(), &right).unwrap();
        let wrong = KeySource::Provider(Arc::new(Flipping(0x0f)));
        assert!(matches!(
            Vault::unlock(dir.path(), "agent", &wrong),
            Err(SealError::WrongKey)
        ));
        assert!(Vault::unlock(dir.path(), "agent", &right).is_ok());
    }

    #[test]
    fn key_files_are_private_and_hold_a_key() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.key");
        let made = WrappingKey::create_key_file(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let read = WrappingKey::from_key_file(&path).unwrap();
        assert_eq!(made.0[..], read.0[..]);
        assert!(WrappingKey::create_key_file(&path).is_err());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let refused = WrappingKey::from_key_file(&path).unwrap_err().to_string();
        assert!(refused.contains("0644"), "{refused}");
        std::fs::write(dir.path().join("short.key"), "abcd\n").unwrap();
        std::fs::set_permissions(
            dir.path().join("short.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        assert!(WrappingKey::from_key_file(&dir.path().join("short.key")).is_err());
    }
}
