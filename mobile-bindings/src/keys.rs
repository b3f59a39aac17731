//! [`KeyProvider`]: how the app protects the store's data key with the
//! platform's key store (Android Keystore, iOS Keychain / Secure Enclave).
//!
//! The library makes one random data key per store and seals every value
//! that can hold personal data under it. It never writes that key in clear:
//! it hands it to the app's [`KeyProvider::wrap`] once, when the store is
//! created, keeps what comes back in the store's key header, and asks
//! [`KeyProvider::unwrap`] for the key at every open. The platform key that
//! wraps it never leaves the platform.
//!
//! Invariants: a provider that fails or answers a wrong key refuses the open
//! and changes nothing; the data key the provider returns is zeroed once the
//! store's cipher is made (see [`station_agent::seal`]); no error carries
//! key bytes.

use std::sync::Arc;

use station_agent::seal::KeyWrapper;

/// The app's key store, as the library sees it. Implement it in Kotlin with
/// an Android Keystore AES-GCM key, in Swift with a Keychain or Secure
/// Enclave key (see the bindings' README).
#[uniffi::export(with_foreign)]
pub trait KeyProvider: Send + Sync + std::fmt::Debug {
    /// Encrypts the store's new 32-byte data key with the platform's key;
    /// called once, when the store is created. Return everything `unwrap`
    /// needs (an IV with the ciphertext, say).
    ///
    /// # Errors
    /// [`KeyProviderError`] when the platform refuses (the store is then
    /// not created).
    fn wrap(&self, data_key: Vec<u8>) -> Result<Vec<u8>, KeyProviderError>;

    /// Decrypts what `wrap` returned; called at every open.
    ///
    /// # Errors
    /// [`KeyProviderError`] when the platform refuses (the user is not
    /// authenticated, the key was removed): the open fails, nothing changes.
    fn unwrap(&self, wrapped: Vec<u8>) -> Result<Vec<u8>, KeyProviderError>;
}

/// Why the app's key provider could not wrap or unwrap the data key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Error)]
pub enum KeyProviderError {
    /// The platform's key store refused; `reason` is shown in the open's
    /// error (never put key bytes in it).
    #[error("{reason}")]
    Failed {
        /// What the platform said.
        reason: String,
    },
}

impl From<uniffi::UnexpectedUniFFICallbackError> for KeyProviderError {
    fn from(error: uniffi::UnexpectedUniFFICallbackError) -> Self {
        KeyProviderError::Failed {
            reason: error.reason,
        }
    }
}

/// The app's provider as the sealing layer's [`KeyWrapper`].
#[derive(Debug)]
pub(crate) struct ProviderWrapper(pub(crate) Arc<dyn KeyProvider>);

impl KeyWrapper for ProviderWrapper {
    fn wrap(&self, data_key: &[u8]) -> Result<Vec<u8>, String> {
        self.0.wrap(data_key.to_vec()).map_err(|e| e.to_string())
    }

    fn unwrap(&self, wrapped: &[u8]) -> Result<Vec<u8>, String> {
        self.0.unwrap(wrapped.to_vec()).map_err(|e| e.to_string())
    }
}
