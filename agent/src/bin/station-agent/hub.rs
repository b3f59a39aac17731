//! Talking to the hub from the command line: the sync settings from the
//! arguments and the device's identity, and the signals that stop the daemon.
//!
//! Invariant: an argument given on the command line wins over the hub address
//! and token stored at `init`; TLS is on exactly when a CA certificate is given;
//! relays found with `--discover` come before the configured addresses, which
//! stay as the fallback.

use anyhow::Context as _;
use station_agent::Agent;
use station_agent::sync::{self, SyncOptions};

use crate::args::{HubArgs, TokenArgs};

/// The token `args` give, read from its file when one is named.
///
/// # Errors
/// The file cannot be read, or holds no token.
pub fn token_of(args: TokenArgs) -> anyhow::Result<Option<String>> {
    let Some(path) = args.token_file else {
        return Ok(args.token);
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read the token file {}", path.display()))?;
    let token = text.trim();
    anyhow::ensure!(
        !token.is_empty() && !token.contains(char::is_whitespace),
        "the token file {} does not hold one token",
        path.display()
    );
    Ok(Some(token.to_string()))
}

/// The host of an `http://` address naming another machine than this one:
/// a device token sent there crosses the network in clear.
pub fn plain_to_remote(url: &str) -> Option<&str> {
    let rest = url
        .get(..7)
        .filter(|scheme| scheme.eq_ignore_ascii_case("http://"))
        .map(|_| &url[7..])?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    (!loopback).then_some(host)
}

/// Warns on standard error when `url` is `http://` to another machine and
/// no CA certificate turns TLS on.
pub fn warn_if_plain(url: &str, tls: bool) {
    if tls {
        return;
    }
    if let Some(host) = plain_to_remote(url) {
        eprintln!(
            "warning: {host} is reached over plain http://: the device token and the \
             records cross the network unencrypted; use https:// (or --tls-ca)"
        );
    }
}

/// How often `run --discover` looks for the station's relay again.
pub const REDISCOVER_EVERY: std::time::Duration = std::time::Duration::from_secs(300);

/// The sync settings for this device, and with `--discover` how the daemon
/// looks for the station's relay again while it runs.
///
/// # Errors
/// No hub address anywhere, a token file or CA certificate that cannot be
/// read.
pub fn sync_options(
    agent: &Agent,
    args: HubArgs,
) -> anyhow::Result<(SyncOptions, Option<sync::Rediscovery>)> {
    let identity = agent.identity();
    let hub_url = args
        .hub
        .or_else(|| identity.hub_url.clone())
        .ok_or(sync::SyncError::NoHub)?;
    warn_if_plain(&hub_url, args.tls_ca.is_some());
    let token = token_of(args.token)?.or_else(|| identity.token.clone());
    let mut options = SyncOptions::new(hub_url, token);
    if let Some(path) = args.tls_ca {
        let pem = std::fs::read(&path)
            .with_context(|| format!("cannot read the CA certificate {}", path.display()))?;
        options.tls_ca_pem = Some(pem);
    }
    options.tls_domain = args.tls_domain;
    if !args.discover {
        return Ok((options, None));
    }
    let configured = options.clone();
    let station = identity.station_code.clone();
    discover(&mut options, &station);
    let rediscovery = sync::Rediscovery {
        addresses: std::sync::Arc::new(move || {
            use station_agent::sync::discover::{self, Browse as _, MdnsBrowser};
            let found = MdnsBrowser.browse(&station, discover::BROWSE_WINDOW);
            let mut options = configured.clone();
            options.with_discovered(&found, &station);
            options.addresses()
        }),
        every: REDISCOVER_EVERY,
    };
    Ok((options, Some(rediscovery)))
}

/// Looks for the station's relay on the LAN for at most
/// [`discover::BROWSE_WINDOW`] and puts the relays found before the
/// configured addresses; says on standard error what it found.
fn discover(options: &mut SyncOptions, station: &str) {
    use station_agent::sync::discover::{self, Browse as _, MdnsBrowser};
    let found = MdnsBrowser.browse(station, discover::BROWSE_WINDOW);
    let added = options.with_discovered(&found, station);
    if added == 0 {
        eprintln!("no relay of station {station} found on the LAN: using the configured addresses");
        return;
    }
    for address in options.addresses().iter().take(added) {
        eprintln!("found the station's relay on the LAN at {address}");
    }
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
