//! Talking to the hub from the command line: the sync settings from the
//! arguments and the device's identity, and the signals that stop the daemon.
//!
//! Invariant: an argument given on the command line wins over the hub address
//! and token stored at `init`; TLS is on exactly when a CA certificate is given.

use anyhow::Context as _;
use station_agent::Agent;
use station_agent::sync::{self, SyncOptions};

use crate::args::HubArgs;

/// The sync settings for this device.
///
/// # Errors
/// No hub address anywhere, or a CA certificate that cannot be read.
pub fn sync_options(agent: &Agent, args: HubArgs) -> anyhow::Result<SyncOptions> {
    let identity = agent.identity();
    let hub_url = args
        .hub
        .or_else(|| identity.hub_url.clone())
        .ok_or(sync::SyncError::NoHub)?;
    let mut options = SyncOptions::new(hub_url, args.token.or_else(|| identity.token.clone()));
    if let Some(path) = args.tls_ca {
        let pem = std::fs::read(&path)
            .with_context(|| format!("cannot read the CA certificate {}", path.display()))?;
        options.tls_ca_pem = Some(pem);
    }
    options.tls_domain = args.tls_domain;
    Ok(options)
}

/// Registers for Ctrl-C and SIGTERM at once (inside a runtime); the future
/// completes on either.
///
/// # Errors
/// The signal handlers cannot be registered.
#[cfg(unix)]
pub fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}

/// Completes on Ctrl-C.
///
/// # Errors
/// None on this platform; the signature matches the Unix one.
#[cfg(not(unix))]
pub fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}
