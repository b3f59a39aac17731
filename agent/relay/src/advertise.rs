//! Advertising the relay on the LAN with mDNS, so that phones started with
//! `station-agent sync --discover` find it without its address configured.
//!
//! The advertisement is a DNS-SD service of type
//! [`station_agent::sync::discover::SERVICE_TYPE`]: its instance name is
//! the relay's name, its port the one the relay listens on, its TXT
//! record the station code and whether TLS is on. It carries no token and
//! nothing personal. It lasts as long as the [`Advertisement`]: dropping it
//! (or [`Advertisement::withdraw`]) sends the goodbye packets and stops
//! the mDNS responder.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use mdns_sd::{IfKind, ServiceDaemon, ServiceInfo};
use station_agent::sync::discover::{SERVICE_TYPE, TXT_STATION, TXT_TLS};

/// Why the relay could not advertise itself.
#[derive(Debug, thiserror::Error)]
pub enum AdvertiseError {
    /// The name cannot be an instance name.
    #[error("the relay's name must be 1 to 63 printable characters: {0:?}")]
    Name(String),
    /// The mDNS responder failed.
    #[error("mDNS: {0}")]
    Mdns(#[from] mdns_sd::Error),
}

/// What the relay advertises.
#[derive(Debug, Clone)]
pub struct AdvertiseOptions {
    /// The instance name phones' browsers see (say `relay-540502001`).
    pub name: String,
    /// The station the relay serves.
    pub station_code: String,
    /// Where the relay listens: an unspecified address advertises every
    /// address of the machine's interfaces, kept up to date as they change
    /// (only the IPv4 ones for `0.0.0.0`, which takes no IPv6 connection).
    pub listen: SocketAddr,
    /// Whether the relay serves TLS.
    pub tls: bool,
}

/// The relay's advertisement, withdrawn when dropped.
pub struct Advertisement {
    daemon: ServiceDaemon,
    fullname: String,
}

impl std::fmt::Debug for Advertisement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Advertisement")
            .field("fullname", &self.fullname)
            .finish_non_exhaustive()
    }
}

/// The default instance name of the relay of `station_code`.
pub fn default_name(station_code: &str) -> String {
    format!("relay-{station_code}")
}

impl Advertisement {
    /// Starts advertising.
    ///
    /// # Errors
    /// A name that is empty, too long or holds control characters; an mDNS
    /// responder that cannot start (no multicast socket).
    pub fn start(options: &AdvertiseOptions) -> Result<Self, AdvertiseError> {
        let name = options.name.trim();
        if name.is_empty() || name.len() > 63 || name.chars().any(char::is_control) {
            return Err(AdvertiseError::Name(options.name.clone()));
        }
        let daemon = ServiceDaemon::new()?;
        if options.listen.ip() == IpAddr::V4(Ipv4Addr::UNSPECIFIED) {
            // A relay listening on 0.0.0.0 takes no IPv6 connection: its
            // interfaces' IPv6 addresses would only send phones astray.
            if let Err(error) = daemon.disable_interface(IfKind::IPv6) {
                let _ = daemon.shutdown();
                return Err(error.into());
            }
        }
        let host = format!("station-relay-{}.local.", options.station_code);
        let properties = [
            (TXT_STATION, options.station_code.as_str()),
            (TXT_TLS, if options.tls { "1" } else { "0" }),
        ];
        let ip = options.listen.ip();
        let info = if ip.is_unspecified() {
            ServiceInfo::new(
                SERVICE_TYPE,
                name,
                &host,
                (),
                options.listen.port(),
                &properties[..],
            )?
            .enable_addr_auto()
        } else {
            ServiceInfo::new(
                SERVICE_TYPE,
                name,
                &host,
                ip,
                options.listen.port(),
                &properties[..],
            )?
        };
        let fullname = info.get_fullname().to_string();
        if let Err(error) = daemon.register(info) {
            let _ = daemon.shutdown();
            return Err(error.into());
        }
        Ok(Self { daemon, fullname })
    }

    /// The advertised service's full name.
    pub fn fullname(&self) -> &str {
        &self.fullname
    }

    /// Withdraws the advertisement (goodbye packets) and stops the
    /// responder, waiting a moment for the goodbye to leave.
    pub fn withdraw(self) {
        // Drop does the work.
    }
}

impl Drop for Advertisement {
    fn drop(&mut self) {
        if let Ok(done) = self.daemon.unregister(&self.fullname) {
            let _ = done.recv_timeout(Duration::from_secs(1));
        }
        if let Ok(done) = self.daemon.shutdown() {
            let _ = done.recv_timeout(Duration::from_secs(1));
        }
    }
}
