//! The hub's configuration: the roster of stations and their communities,
//! follow-up intervals per tier, and service targets per station, metric and
//! period. Read from TOML (unknown keys refused) or built in, and validated
//! before the hub opens a socket.
//!
//! Invariants of a [`HubConfig`] returned by [`HubConfig::from_toml`],
//! [`HubConfig::load`] or [`HubConfig::builtin`]:
//! - station codes are 9 digits and unique; community codes are 12 digits,
//!   begin with their station's code and are unique;
//! - names are non-empty single lines in NFC;
//! - every follow-up interval is above 0;
//! - every target names a known [`Metric`] and is 0 or more;
//! - the read audit is kept at least [`crate::audit::MIN_RETENTION_DAYS`]
//!   days; closed cases are de-identified no sooner than a day after they
//!   close.
//!
//! Targets: a station's own target for a metric and kind of period wins; a
//! town or township station without one carries half of the first street
//! station's, rounded up ([`HubConfig::target`]). The built-in street targets
//! are illustrative, not the bureau's figures.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use station_proto::case::TierIntervals;
use station_proto::validate;

use crate::projections::period::{Metric, PeriodKind};

/// The built-in configuration, as TOML: the Nedong roster.
pub const DEFAULT_TOML: &str = include_str!("default_config.toml");

/// Longest name of a district, station or community, in characters.
pub const NAME_MAX: usize = 100;

/// Why a configuration was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read the configuration {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The reason.
        source: std::io::Error,
    },
    /// The text is not TOML of the expected shape (unknown keys included).
    #[error("configuration is not valid TOML of the expected shape: {0}")]
    Parse(#[from] toml::de::Error),
    /// A value breaks a rule; the text names where.
    #[error("configuration: {0}")]
    Invalid(String),
}

/// The district the stations belong to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct District {
    /// 6-digit division code; every station code begins with it.
    pub code: String,
    /// Chinese name.
    pub name: String,
    /// Tibetan name, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_bo: Option<String>,
}

/// Days between follow-up visits per tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FollowUp {
    /// Tier 1, high risk (高风险).
    pub high_risk_days: u32,
    /// Tier 2, key (重点).
    pub key_days: u32,
    /// Tier 3, general (一般).
    pub general_days: u32,
}

impl Default for FollowUp {
    fn default() -> Self {
        let d = TierIntervals::default();
        Self {
            high_risk_days: d.high_risk_days,
            key_days: d.key_days,
            general_days: d.general_days,
        }
    }
}

/// Rules the hub applies to what devices push.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncRules {
    /// How many hours an event's `recorded_at_ms`, `hlc` and event id may run
    /// ahead of the hub's clock before the event goes to quarantine; 1 to
    /// 8,760 (a year).
    pub max_clock_skew_hours: u32,
}

impl Default for SyncRules {
    fn default() -> Self {
        Self {
            max_clock_skew_hours: 24,
        }
    }
}

impl SyncRules {
    /// The largest allowed skew, in hours.
    pub const MAX_HOURS: u32 = 8_760;

    /// The skew in milliseconds.
    pub fn max_clock_skew_ms(&self) -> i64 {
        i64::from(self.max_clock_skew_hours) * 3_600_000
    }
}

/// How long the hub keeps the read audit (`[audit]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditRules {
    /// Days every record of a read is kept at least; 180 (six months) or
    /// more.
    pub retention_days: u32,
}

impl Default for AuditRules {
    fn default() -> Self {
        Self {
            retention_days: crate::audit::MIN_RETENTION_DAYS,
        }
    }
}

/// Where the hub store's key file is, and the cipher of a store encrypted
/// now (`[store]`); `--key-file` and `--cipher` override them.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreRules {
    /// The key file (64 hexadecimal digits, mode 0600); relative to the
    /// configuration file's folder. `<data>.key` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<std::path::PathBuf>,
    /// `xchacha20-poly1305` (the default) or `sm4-gcm` (商用密码), for a
    /// store encrypted now; a store keeps the cipher it was encrypted with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cipher: Option<station_agent::seal::Algorithm>,
}

/// Where the hub's log lives (`[log]`): the embedded sled store (the
/// default), or a NATS JetStream cluster for deployments that must survive
/// losing a machine (the `jetstream` cargo feature).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogRules {
    /// `sled` or `jetstream`.
    #[serde(default)]
    pub engine: LogEngine,
    /// NATS server URLs (`nats://host:4222`), any nodes of the cluster.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<String>,
    /// A NATS credentials file (JWT and NKey seed), relative to the
    /// configuration file's folder, when the cluster wants one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<PathBuf>,
    /// Replicas of the stream and its buckets: 3 in production.
    #[serde(default = "LogRules::default_replicas")]
    pub replicas: usize,
    /// The stream's name; its buckets and subjects are named after it.
    #[serde(default = "LogRules::default_stream")]
    pub stream: String,
}

/// Which implementation of the hub's log (`[log] engine`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogEngine {
    /// The embedded sled store in the data folder.
    #[default]
    Sled,
    /// A NATS JetStream cluster.
    Jetstream,
}

impl LogRules {
    fn default_replicas() -> usize {
        3
    }

    fn default_stream() -> String {
        "STATION_LOG".into()
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.engine == LogEngine::Jetstream && self.servers.is_empty() {
            return Err(ConfigError::Invalid(
                "log.servers: engine \"jetstream\" needs at least one NATS server".into(),
            ));
        }
        for server in &self.servers {
            if !(server.starts_with("nats://") || server.starts_with("tls://"))
                || server.contains(char::is_whitespace)
            {
                return Err(ConfigError::Invalid(format!(
                    "log.servers: `{server}` is not a nats:// or tls:// URL"
                )));
            }
        }
        if !(1..=5).contains(&self.replicas) {
            return Err(ConfigError::Invalid(format!(
                "log.replicas: {} is not between 1 and 5",
                self.replicas
            )));
        }
        if self.stream.is_empty()
            || self.stream.len() > 32
            || !self
                .stream
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(ConfigError::Invalid(format!(
                "log.stream: `{}` must be 1 to 32 letters, digits, '_' or '-'",
                self.stream
            )));
        }
        Ok(())
    }
}

impl Default for LogRules {
    fn default() -> Self {
        Self {
            engine: LogEngine::Sled,
            servers: Vec::new(),
            credentials: None,
            replicas: Self::default_replicas(),
            stream: Self::default_stream(),
        }
    }
}

/// What the hub shows of persons (`[privacy]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacyRules {
    /// Days after its closure (by its closing date) a closed case is
    /// de-identified in every view and report: no name, ID number, phone or
    /// address shown, every count kept. Never when absent; at least 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_retention_days: Option<u32>,
}

/// What kind of division a station serves; township-level stations carry
/// half of the street station's targets by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StationKind {
    /// 街道.
    Street,
    /// 镇.
    Town,
    /// 乡.
    Township,
}

impl StationKind {
    /// The name in configuration and answers.
    pub fn name(self) -> &'static str {
        match self {
            StationKind::Street => "street",
            StationKind::Town => "town",
            StationKind::Township => "township",
        }
    }
}

/// A community (社区) or village (村) a station serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Community {
    /// 12-digit code beginning with the station's.
    pub code: String,
    /// Chinese name.
    pub name: String,
    /// Tibetan name, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_bo: Option<String>,
}

/// Targets of one station: per kind of period, metric name → target.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Targets {
    /// Monthly targets.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub month: BTreeMap<String, i64>,
    /// Quarterly targets.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub quarter: BTreeMap<String, i64>,
    /// Yearly targets.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub year: BTreeMap<String, i64>,
}

impl Targets {
    fn of(&self, kind: PeriodKind) -> &BTreeMap<String, i64> {
        match kind {
            PeriodKind::Month => &self.month,
            PeriodKind::Quarter => &self.quarter,
            PeriodKind::Year => &self.year,
        }
    }
}

/// One social work station.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Station {
    /// 9-digit division code.
    pub code: String,
    /// Chinese name.
    pub name: String,
    /// Tibetan name, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_bo: Option<String>,
    /// Street, town or township.
    pub kind: StationKind,
    /// The communities or villages it serves.
    #[serde(default)]
    pub communities: Vec<Community>,
    /// Its own targets; see [`HubConfig::target`] for the defaults.
    #[serde(default)]
    pub targets: Targets,
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubConfig {
    /// The district, for titles.
    pub district: District,
    /// Follow-up intervals per tier.
    #[serde(default)]
    pub follow_up: FollowUp,
    /// Rules applied to pushed events.
    #[serde(default)]
    pub sync: SyncRules,
    /// How long the read audit is kept.
    #[serde(default)]
    pub audit: AuditRules,
    /// What is shown of persons, and when closed cases are de-identified.
    #[serde(default)]
    pub privacy: PrivacyRules,
    /// Which changes need a supervisor's review, and whether closures count
    /// in the ledger only once approved (`[review]`).
    #[serde(default)]
    pub review: station_proto::review::ReviewPolicy,
    /// The store's key file and cipher.
    #[serde(default)]
    pub store: StoreRules,
    /// Where the hub's log lives (`[log]`).
    #[serde(default)]
    pub log: LogRules,
    /// The roster; events of other stations are quarantined.
    pub stations: Vec<Station>,
}

fn check_name(what: &str, name: &str) -> Result<(), ConfigError> {
    let mut normalised = name.to_string();
    validate::text(what, &mut normalised, NAME_MAX, true)
        .map_err(|e| ConfigError::Invalid(e.to_string()))?;
    if normalised != name || name.contains(['\n', '\t']) {
        return Err(ConfigError::Invalid(format!(
            "{what}: must be one line in NFC without surrounding spaces"
        )));
    }
    Ok(())
}

impl HubConfig {
    /// The built-in configuration: the Nedong roster of DESIGN.md.
    ///
    /// # Errors
    /// None in practice: a test keeps [`DEFAULT_TOML`] valid.
    pub fn builtin() -> Result<Self, ConfigError> {
        Self::from_toml(DEFAULT_TOML)
    }

    /// Parses and validates a configuration.
    ///
    /// # Errors
    /// [`ConfigError::Parse`] (with line and column) or [`ConfigError::Invalid`].
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: HubConfig = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    /// Reads, parses and validates a configuration file.
    ///
    /// # Errors
    /// [`ConfigError::Read`], then as [`HubConfig::from_toml`].
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text)
    }

    /// Checks every rule of the module's invariants.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first value that breaks a rule.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let d = &self.district;
        if !(d.code.len() == 6 && d.code.bytes().all(|b| b.is_ascii_digit())) {
            return Err(ConfigError::Invalid(format!(
                "district.code `{}` must be 6 digits",
                d.code
            )));
        }
        check_name("district.name", &d.name)?;
        self.log.validate()?;
        if let Some(bo) = &d.name_bo {
            check_name("district.name_bo", bo)?;
        }
        for (tier, days) in [
            ("high_risk_days", self.follow_up.high_risk_days),
            ("key_days", self.follow_up.key_days),
            ("general_days", self.follow_up.general_days),
        ] {
            if days == 0 {
                return Err(ConfigError::Invalid(format!(
                    "follow_up.{tier} must be above 0"
                )));
            }
        }
        if !(1..=SyncRules::MAX_HOURS).contains(&self.sync.max_clock_skew_hours) {
            return Err(ConfigError::Invalid(format!(
                "sync.max_clock_skew_hours must be 1 to {}",
                SyncRules::MAX_HOURS
            )));
        }
        if self.audit.retention_days < crate::audit::MIN_RETENTION_DAYS {
            return Err(ConfigError::Invalid(format!(
                "audit.retention_days must be {} (six months) or more, found {}",
                crate::audit::MIN_RETENTION_DAYS,
                self.audit.retention_days
            )));
        }
        if self.privacy.closed_retention_days == Some(0) {
            return Err(ConfigError::Invalid(
                "privacy.closed_retention_days must be 1 or more (leave it out to keep closed cases identified)".into(),
            ));
        }
        if self.stations.is_empty() {
            return Err(ConfigError::Invalid(
                "stations: the roster must list at least one station".into(),
            ));
        }
        let mut codes = BTreeSet::new();
        let mut communities = BTreeSet::new();
        for (i, station) in self.stations.iter().enumerate() {
            let at = format!("stations[{i}]");
            validate::station_code(&format!("{at}.code"), &station.code)
                .map_err(|e| ConfigError::Invalid(format!("{e} (found `{}`)", station.code)))?;
            if !station.code.starts_with(&d.code) {
                return Err(ConfigError::Invalid(format!(
                    "{at}.code `{}` must begin with the district code {}",
                    station.code, d.code
                )));
            }
            if !codes.insert(station.code.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "{at}.code `{}` is listed twice",
                    station.code
                )));
            }
            check_name(&format!("{at}.name"), &station.name)?;
            if let Some(bo) = &station.name_bo {
                check_name(&format!("{at}.name_bo"), bo)?;
            }
            for (j, community) in station.communities.iter().enumerate() {
                let at = format!("{at}.communities[{j}]");
                validate::community_code(&format!("{at}.code"), &community.code, &station.code)
                    .map_err(|e| {
                        ConfigError::Invalid(format!("{e} (found `{}`)", community.code))
                    })?;
                if !communities.insert(community.code.as_str()) {
                    return Err(ConfigError::Invalid(format!(
                        "{at}.code `{}` is listed twice",
                        community.code
                    )));
                }
                check_name(&format!("{at}.name"), &community.name)?;
                if let Some(bo) = &community.name_bo {
                    check_name(&format!("{at}.name_bo"), bo)?;
                }
            }
            for kind in PeriodKind::ALL {
                for (metric, target) in station.targets.of(kind) {
                    let at = format!("{at}.targets.{}.{metric}", kind.name());
                    if Metric::from_name(metric).is_none() {
                        let known: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
                        return Err(ConfigError::Invalid(format!(
                            "{at}: unknown metric; known metrics are {}",
                            known.join(", ")
                        )));
                    }
                    if *target < 0 {
                        return Err(ConfigError::Invalid(format!(
                            "{at}: a target must be 0 or more, found {target}"
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// The configuration as TOML (without the comments of [`DEFAULT_TOML`]).
    ///
    /// # Errors
    /// None in practice: every field is representable in TOML.
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        toml::to_string_pretty(self).map_err(|e| ConfigError::Invalid(e.to_string()))
    }

    /// The station with this code, if on the roster.
    pub fn station(&self, code: &str) -> Option<&Station> {
        self.stations.iter().find(|s| s.code == code)
    }

    /// The name of the station with this code, or the code when it is not
    /// on the roster.
    pub fn station_name<'a>(&'a self, code: &'a str) -> &'a str {
        self.station(code).map_or(code, |s| s.name.as_str())
    }

    /// The name of the community with this code, or the code when it is
    /// not on the roster.
    pub fn community_name<'a>(&'a self, code: &'a str) -> &'a str {
        self.community(code).map_or(code, |c| c.name.as_str())
    }

    /// The roster's station codes, in roster order.
    pub fn station_codes(&self) -> Vec<String> {
        self.stations.iter().map(|s| s.code.clone()).collect()
    }

    /// The community with this code, if on the roster.
    pub fn community(&self, code: &str) -> Option<&Community> {
        let station = code.get(..9)?;
        self.station(station)?
            .communities
            .iter()
            .find(|c| c.code == code)
    }

    /// The follow-up intervals, in the agent's type.
    pub fn intervals(&self) -> TierIntervals {
        TierIntervals {
            high_risk_days: self.follow_up.high_risk_days,
            key_days: self.follow_up.key_days,
            general_days: self.follow_up.general_days,
        }
    }

    /// The target of `station` for `metric` over a period of `kind`: its
    /// own when set; for a town or township without one, half of the first
    /// street station's, rounded up; otherwise none.
    pub fn target(&self, station: &str, metric: Metric, kind: PeriodKind) -> Option<i64> {
        let own = self.station(station)?;
        if let Some(target) = own.targets.of(kind).get(metric.name()) {
            return Some(*target);
        }
        if own.kind == StationKind::Street {
            return None;
        }
        let street = self
            .stations
            .iter()
            .find(|s| s.kind == StationKind::Street)?;
        let base = *street.targets.of(kind).get(metric.name())?;
        Some((base + 1) / 2)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_roster_is_valid_and_round_trips() {
        let config = HubConfig::builtin().unwrap();
        assert_eq!(config.stations.len(), 7);
        let zedang = config.station("540502001").unwrap();
        assert_eq!(zedang.name_bo.as_deref(), Some("རྩེད་ཐང"));
        assert_eq!(zedang.communities.len(), 11);
        assert_eq!(zedang.communities[10].code, "540502001011");
        let again = HubConfig::from_toml(&config.to_toml().unwrap()).unwrap();
        assert_eq!(again, config);
    }

    #[test]
    fn the_log_section_selects_the_engine_and_checks_its_cluster() {
        let builtin = HubConfig::builtin().unwrap();
        assert_eq!(builtin.log, LogRules::default());
        assert_eq!(builtin.log.engine, LogEngine::Sled);
        let toml = builtin.to_toml().unwrap();
        let start = toml.find("[log]\n").unwrap();
        let end = toml[start..]
            .find("\n\n")
            .map_or(toml.len(), |end| start + end + 1);
        let with = |section: &str| format!("{}[log]\n{section}{}", &toml[..start], &toml[end..]);
        let config = HubConfig::from_toml(&with(
            "engine = \"jetstream\"\nservers = [\"nats://10.0.0.1:4222\", \"nats://10.0.0.2:4222\"]\n\
             credentials = \"hub.creds\"\nreplicas = 3\nstream = \"NEDONG\"\n",
        ))
        .unwrap();
        assert_eq!(config.log.engine, LogEngine::Jetstream);
        assert_eq!(config.log.servers.len(), 2);
        assert_eq!(config.log.stream, "NEDONG");
        let again = HubConfig::from_toml(&config.to_toml().unwrap()).unwrap();
        assert_eq!(again, config);
        for wrong in [
            "engine = \"jetstream\"\n",
            "engine = \"kafka\"\n",
            "servers = [\"10.0.0.1:4222\"]\n",
            "replicas = 0\n",
            "stream = \"a.b\"\n",
            "speed = 1\n",
        ] {
            assert!(HubConfig::from_toml(&with(wrong)).is_err(), "{wrong}");
        }
    }

    #[test]
    fn the_store_section_names_a_key_file_and_a_cipher() {
        let builtin = HubConfig::builtin().unwrap();
        assert_eq!(builtin.store, StoreRules::default());
        let toml = builtin.to_toml().unwrap();
        let with = |section: &str| toml.replacen("[store]\n", &format!("[store]\n{section}"), 1);
        let config =
            HubConfig::from_toml(&with("key_file = \"keys/hub.key\"\ncipher = \"sm4-gcm\"\n"))
                .unwrap();
        assert_eq!(
            config.store.key_file.as_deref(),
            Some(std::path::Path::new("keys/hub.key"))
        );
        assert_eq!(
            config.store.cipher,
            Some(station_agent::seal::Algorithm::Sm4Gcm)
        );
        assert!(HubConfig::from_toml(&with("cipher = \"aes\"\n")).is_err());
        assert!(HubConfig::from_toml(&with("keyfile = \"k\"\n")).is_err());
    }

    #[test]
    fn townships_carry_half_the_street_targets_rounded_up_unless_set() {
        let mut config = HubConfig::builtin().unwrap();
        let street = config
            .target("540502001", Metric::HomeVisits, PeriodKind::Month)
            .unwrap();
        assert_eq!(
            config.target("540502200", Metric::HomeVisits, PeriodKind::Month),
            Some((street + 1) / 2)
        );
        config.stations[0]
            .targets
            .month
            .insert("trainings".into(), 3);
        assert_eq!(
            config.target("540502200", Metric::Trainings, PeriodKind::Month),
            Some(2)
        );
        config.stations[2]
            .targets
            .month
            .insert("trainings".into(), 7);
        assert_eq!(
            config.target("540502200", Metric::Trainings, PeriodKind::Month),
            Some(7)
        );
        assert_eq!(
            config.target("540502001", Metric::CasesOpen, PeriodKind::Month),
            None
        );
        assert_eq!(
            config.target("999999999", Metric::HomeVisits, PeriodKind::Month),
            None
        );
    }

    fn refused(text: &str) -> String {
        HubConfig::from_toml(text).unwrap_err().to_string()
    }

    const HEAD: &str = "[district]\ncode = \"540502\"\nname = \"乃东区\"\n";

    #[test]
    fn the_audit_is_kept_six_months_at_least_and_deidentification_is_optional() {
        let builtin = HubConfig::builtin().unwrap();
        assert_eq!(builtin.audit.retention_days, 180);
        assert_eq!(builtin.privacy.closed_retention_days, None);
        let with = |extra: &str| {
            DEFAULT_TOML
                .replace("[audit]\nretention_days = 180\n", "")
                .replace("[privacy]\n", "")
                + extra
        };
        let kept = HubConfig::from_toml(&with(
            "[audit]\nretention_days = 365\n[privacy]\nclosed_retention_days = 1825\n",
        ))
        .unwrap();
        assert_eq!(kept.audit.retention_days, 365);
        assert_eq!(kept.privacy.closed_retention_days, Some(1825));
        assert_eq!(
            HubConfig::from_toml(&kept.to_toml().unwrap()).unwrap(),
            kept
        );
        assert!(refused(&with("[audit]\nretention_days = 179\n")).contains("audit.retention_days"));
        assert!(
            refused(&with("[privacy]\nclosed_retention_days = 0\n"))
                .contains("privacy.closed_retention_days")
        );
        assert!(refused(&with("[audit]\nretention = 200\n")).contains("retention"));
    }

    #[test]
    fn bad_configurations_are_refused_with_the_place_named() {
        let station = |code: &str, extra: &str| {
            format!(
                "{HEAD}[[stations]]\ncode = \"{code}\"\nname = \"泽当街道\"\nkind = \"street\"\n{extra}"
            )
        };
        assert!(refused(&format!("{HEAD}colour = 1\n")).contains("colour"));
        assert!(refused(&station("54050200", "")).contains("stations[0].code"));
        assert!(refused(&station("540503001", "")).contains("district code"));
        let twice = format!(
            "{}[[stations]]\ncode = \"540502001\"\nname = \"x\"\nkind = \"town\"\n",
            station("540502001", "")
        );
        assert!(refused(&twice).contains("listed twice"));
        let community = station(
            "540502001",
            "communities = [{ code = \"540502101001\", name = \"x\" }]\n",
        );
        assert!(refused(&community).contains("stations[0].communities[0].code"));
        let metric = station("540502001", "[stations.targets.month]\nvisits = 3\n");
        assert!(refused(&metric).contains("unknown metric"));
        let negative = station("540502001", "[stations.targets.year]\ntrainings = -1\n");
        assert!(refused(&negative).contains("0 or more"));
        let zero = format!(
            "{}[follow_up]\nhigh_risk_days = 0\nkey_days = 30\ngeneral_days = 90\n",
            station("540502001", "")
        );
        assert!(refused(&zero).contains("high_risk_days"));
        for hours in [0, 8_761] {
            let skew = format!(
                "{}[sync]\nmax_clock_skew_hours = {hours}\n",
                station("540502001", "")
            );
            assert!(refused(&skew).contains("sync.max_clock_skew_hours must be 1 to 8760"));
        }
        assert!(refused(&station("540502001", "kind2 = 1\n")).contains("kind2"));
        assert!(refused(HEAD).contains("stations"));
    }
}
