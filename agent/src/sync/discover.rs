//! Finding the station relay on the LAN: what a relay advertises with mDNS
//! (DNS-SD service [`SERVICE_TYPE`], TXT keys [`TXT_STATION`] and
//! [`TXT_TLS`]), the [`Browse`] trait that finds relays, and
//! [`SyncOptions::with_discovered`], which puts the relays found before the
//! configured addresses.
//!
//! Invariants: a discovered relay is only a hint: it is one more address
//! to try, and must pass the same TLS and token checks as a configured one;
//! only relays advertising the device's own station are kept; a relay
//! advertising plain connections (`tls=0`) is kept only when the device is
//! already configured to talk plain `http://` and trusts no CA certificate,
//! so that discovery never sends the device token in clear where the
//! configuration would not; the configured addresses stay, in their order,
//! after the relays found, each address once. An advertisement carries the
//! station code, the port and whether TLS is on: never a token or anything
//! personal.
//!
//! The mDNS browser itself ([`MdnsBrowser`]) is behind the `mdns` feature
//! (on with `cli`); the address-list logic does not need it.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::options::SyncOptions;

/// The DNS-SD service type a station relay advertises.
pub const SERVICE_TYPE: &str = "_station-sync._tcp.local.";
/// The TXT key holding the 9-digit code of the station the relay serves.
pub const TXT_STATION: &str = "station";
/// The TXT key saying whether the relay serves TLS: `1` or `0`.
pub const TXT_TLS: &str = "tls";
/// How long `sync --discover` looks for a relay, at most.
pub const BROWSE_WINDOW: Duration = Duration::from_secs(2);

/// A relay seen on the LAN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundRelay {
    /// The station code it advertises.
    pub station: String,
    /// Whether it serves TLS.
    pub tls: bool,
    /// Where it answers.
    pub addresses: Vec<SocketAddr>,
}

impl FoundRelay {
    /// The relay's addresses as sync URLs (`https://` when it serves TLS),
    /// IPv4 first; loopback addresses (which would name the phone itself)
    /// and IPv6 link-local ones (which need an interface to be reached)
    /// are left out.
    pub fn urls(&self) -> Vec<String> {
        let scheme = if self.tls { "https" } else { "http" };
        let mut addresses: Vec<SocketAddr> = self
            .addresses
            .iter()
            .copied()
            .filter(|a| match a.ip() {
                IpAddr::V4(v4) => !v4.is_unspecified() && !v4.is_loopback(),
                IpAddr::V6(v6) => {
                    !v6.is_unspecified() && !v6.is_loopback() && !v6.is_unicast_link_local()
                }
            })
            .collect();
        addresses.sort_by_key(|a| (a.is_ipv6(), *a));
        addresses.dedup();
        addresses
            .into_iter()
            .map(|a| format!("{scheme}://{a}"))
            .collect()
    }
}

/// Something that finds relays on the LAN.
pub trait Browse {
    /// The relays seen within `within` (blocking); it may return early,
    /// once a relay of `station` is seen. A browser that cannot work
    /// (no network, multicast refused) returns none.
    fn browse(&self, station: &str, within: Duration) -> Vec<FoundRelay>;
}

/// How an address is compared for duplicates: scheme and host are not
/// case-sensitive, a trailing `/` does not count.
fn address_key(address: &str) -> String {
    address.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// The addresses to try: the URLs of the relays of `own_station` in
/// `found` (in the order found), then `configured`, each address once.
/// Relays of other stations are left out, and so are plain (`tls=0`)
/// relays unless `allow_plain`.
pub fn relays_first(
    configured: &[String],
    found: &[FoundRelay],
    own_station: &str,
    allow_plain: bool,
) -> Vec<String> {
    let discovered = found
        .iter()
        .filter(|relay| relay.station == own_station && (relay.tls || allow_plain))
        .flat_map(FoundRelay::urls);
    let mut seen = std::collections::HashSet::new();
    discovered
        .chain(configured.iter().cloned())
        .filter(|address| seen.insert(address_key(address)))
        .collect()
}

impl SyncOptions {
    /// Whether these options may be given a plain `http://` relay found on
    /// the LAN: no CA certificate (which would turn TLS on for every
    /// address) and at least one configured `http://` address, so the
    /// device already sends its token in clear on its network.
    pub fn allows_plain_relays(&self) -> bool {
        self.tls_ca_pem.is_none()
            && self.addresses().iter().any(|a| {
                a.get(..7)
                    .is_some_and(|s| s.eq_ignore_ascii_case("http://"))
            })
    }

    /// Puts the relays of `own_station` in `found` before the configured
    /// addresses (see [`relays_first`]); returns how many addresses were
    /// added.
    pub fn with_discovered(&mut self, found: &[FoundRelay], own_station: &str) -> usize {
        let configured = self.addresses();
        let all = relays_first(&configured, found, own_station, self.allows_plain_relays());
        let added = all.len().saturating_sub(configured.len());
        self.hub_url = all.join(",");
        added
    }
}

#[cfg(feature = "mdns")]
pub use self::mdns::MdnsBrowser;

#[cfg(feature = "mdns")]
mod mdns {
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    use mdns_sd::{ServiceDaemon, ServiceEvent};

    use super::{Browse, FoundRelay, SERVICE_TYPE, TXT_STATION, TXT_TLS};

    /// Finds relays with mDNS (DNS-SD over multicast UDP port 5353).
    #[derive(Debug, Default, Clone, Copy)]
    pub struct MdnsBrowser;

    impl Browse for MdnsBrowser {
        fn browse(&self, station: &str, within: Duration) -> Vec<FoundRelay> {
            let daemon = match ServiceDaemon::new() {
                Ok(daemon) => daemon,
                Err(error) => {
                    tracing::warn!(%error, "cannot browse for a relay on the LAN");
                    return Vec::new();
                }
            };
            let found = browse_with(&daemon, station, within);
            // The daemon's thread ends on its own once shut down; the status
            // it answers is of no further use.
            let _ = daemon.shutdown();
            found
        }
    }

    fn browse_with(daemon: &ServiceDaemon, station: &str, within: Duration) -> Vec<FoundRelay> {
        let events = match daemon.browse(SERVICE_TYPE) {
            Ok(events) => events,
            Err(error) => {
                tracing::warn!(%error, "cannot browse for a relay on the LAN");
                return Vec::new();
            }
        };
        let mut deadline = Instant::now() + within;
        // By instance name: a relay's addresses may come in more than one
        // answer.
        let mut found: Vec<(String, FoundRelay)> = Vec::new();
        while let Ok(event) = events.recv_deadline(deadline) {
            let ServiceEvent::ServiceResolved(service) = event else {
                continue;
            };
            let (Some(code), tls) = (
                service.get_property_val_str(TXT_STATION),
                service.get_property_val_str(TXT_TLS) == Some("1"),
            ) else {
                continue;
            };
            let port = service.get_port();
            let addresses = service
                .get_addresses()
                .iter()
                .map(|ip| SocketAddr::new(ip.to_ip_addr(), port));
            let relay = FoundRelay {
                station: code.to_string(),
                tls,
                addresses: Vec::new(),
            };
            let own = relay.station == station;
            let at = match found.iter().position(|(name, _)| *name == service.fullname) {
                Some(at) => at,
                None => {
                    found.push((service.fullname.clone(), relay));
                    found.len() - 1
                }
            };
            let known = &mut found[at].1.addresses;
            known.extend(addresses);
            known.sort();
            known.dedup();
            if own {
                // The station's relay is found: a moment more for the rest
                // of its addresses, then done.
                deadline = deadline.min(Instant::now() + SETTLE);
            }
        }
        let _ = daemon.stop_browse(SERVICE_TYPE);
        found.into_iter().map(|(_, relay)| relay).collect()
    }

    /// How long the browser waits for more answers once the station's
    /// relay has answered.
    const SETTLE: Duration = Duration::from_millis(300);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const OWN: &str = "540502001";
    const OTHER: &str = "540502002";

    fn relay(station: &str, tls: bool, addresses: &[&str]) -> FoundRelay {
        FoundRelay {
            station: station.to_string(),
            tls,
            addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
        }
    }

    fn configured() -> Vec<String> {
        vec!["https://hub.example:7400".to_string()]
    }

    #[test]
    fn own_station_relays_come_first_and_the_hub_stays_last() {
        let found = [
            relay(OTHER, true, &["192.168.1.20:7401"]),
            relay(OWN, true, &["192.168.1.10:7401"]),
        ];
        assert_eq!(
            relays_first(&configured(), &found, OWN, false),
            vec!["https://192.168.1.10:7401", "https://hub.example:7400"]
        );
    }

    #[test]
    fn nothing_found_leaves_the_configured_list() {
        let configured = vec![
            "http://192.168.1.10:7401".to_string(),
            "https://hub.example:7400".to_string(),
        ];
        assert_eq!(relays_first(&configured, &[], OWN, true), configured);
        let others = [relay(OTHER, false, &["192.168.1.20:7401"])];
        assert_eq!(relays_first(&configured, &others, OWN, true), configured);
    }

    #[test]
    fn a_relay_also_configured_appears_once_in_front() {
        let configured = vec![
            "https://hub.example:7400".to_string(),
            "HTTP://192.168.1.10:7401/".to_string(),
        ];
        let found = [relay(OWN, false, &["192.168.1.10:7401"])];
        assert_eq!(
            relays_first(&configured, &found, OWN, true),
            vec!["http://192.168.1.10:7401", "https://hub.example:7400"]
        );
    }

    #[test]
    fn plain_relays_need_a_plain_configuration() {
        let found = [relay(OWN, false, &["192.168.1.10:7401"])];
        assert_eq!(
            relays_first(&configured(), &found, OWN, false),
            configured()
        );
        let mut options = SyncOptions::new("https://hub.example:7400", None);
        assert!(!options.allows_plain_relays());
        assert_eq!(options.with_discovered(&found, OWN), 0);
        assert_eq!(options.addresses(), configured());

        let mut plain = SyncOptions::new("http://10.0.0.1:7400", None);
        assert!(plain.allows_plain_relays());
        assert_eq!(plain.with_discovered(&found, OWN), 1);
        assert_eq!(
            plain.addresses(),
            vec!["http://192.168.1.10:7401", "http://10.0.0.1:7400"]
        );

        plain.tls_ca_pem = Some(b"pem".to_vec());
        assert!(!plain.allows_plain_relays());
    }

    #[test]
    fn addresses_are_ipv4_first_without_link_local_or_duplicates() {
        let found = [
            relay(
                OWN,
                true,
                &[
                    "[fe80::1]:7401",
                    "[2001:db8::5]:7401",
                    "192.168.1.10:7401",
                    "10.0.0.5:7401",
                    "192.168.1.10:7401",
                    "0.0.0.0:7401",
                    "127.0.0.1:7401",
                    "[::1]:7401",
                ],
            ),
            relay(OWN, true, &["192.168.1.10:7401"]),
        ];
        assert_eq!(
            relays_first(&configured(), &found, OWN, false),
            vec![
                "https://10.0.0.5:7401",
                "https://192.168.1.10:7401",
                "https://[2001:db8::5]:7401",
                "https://hub.example:7400",
            ]
        );
    }

    struct Fixed(Vec<FoundRelay>);

    impl Browse for Fixed {
        fn browse(&self, _station: &str, _within: Duration) -> Vec<FoundRelay> {
            self.0.clone()
        }
    }

    #[test]
    fn options_take_what_a_browser_finds() {
        let browser = Fixed(vec![relay(OWN, true, &["192.168.1.10:7401"])]);
        let mut options =
            SyncOptions::new("https://192.168.1.10:7401, https://hub.example:7400", None);
        let found = browser.browse(OWN, BROWSE_WINDOW);
        assert_eq!(options.with_discovered(&found, OWN), 0);
        assert_eq!(
            options.addresses(),
            vec!["https://192.168.1.10:7401", "https://hub.example:7400"]
        );
        assert_eq!(options.per_address().len(), 2);
    }
}
