//! The administration socket of a running hub. Only one process may open
//! the store, so while `station-hub serve` runs, `station-hub enroll`,
//! `revoke` and `tokens` reach it through a Unix socket in its data folder,
//! and a new phone is enrolled (or a lost one revoked) without stopping the
//! hub; `station-hub backup` takes its online backup the same way. Tokens are read from the store on every call, so an enrolment or a
//! revocation holds from the next call on.
//!
//! The socket is its owner's alone, like the store: it lies in a folder
//! only the hub's user may enter (mode 0700), so whoever may open the store
//! may ask and nobody else. One request per connection, a JSON line
//! answered by a JSON line.

use std::future::Future;
use std::io::{self, BufRead as _, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _};

use crate::auth;
use crate::config::{ConfigError, HubConfig};
use crate::store::backup::{self, BackupInfo};
use crate::store::{HubError, HubStore, TokenRecord};

/// The private folder of the socket, in the hub's data folder.
pub const SOCKET_DIR: &str = "admin";
/// The socket's file name in [`SOCKET_DIR`].
pub const SOCKET_NAME: &str = "hub.sock";

/// Longest request line accepted.
const MAX_REQUEST_BYTES: u64 = 64 * 1024;

/// How long a client waits for the hub's answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a client waits for a backup to be taken.
const BACKUP_TIMEOUT: Duration = Duration::from_secs(3_600);

/// What the administration socket carries out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminRequest {
    /// Issues a device token for a station on the hub's roster.
    EnrollDevice {
        /// 9-digit station code.
        station: String,
        /// The device's name in listings.
        device: String,
    },
    /// Issues a relay token for a station on the hub's roster.
    EnrollRelay {
        /// 9-digit station code.
        station: String,
        /// The relay's name in listings and on the device rows.
        relay: String,
    },
    /// Issues a read-only bureau token.
    EnrollBureau {
        /// The bureau's name.
        bureau: String,
    },
    /// Issues a supervisor token for stations on the hub's roster.
    EnrollSupervisor {
        /// The supervisor's name in listings.
        supervisor: String,
        /// 9-digit station codes, at least one.
        stations: Vec<String>,
    },
    /// Revokes a token, or with `wipe` orders its device wiped.
    Revoke {
        /// Its id.
        token_id: String,
        /// Order the device wiped instead: at its next Hello it uploads its
        /// backlog and destroys its keys, and then its token is revoked.
        #[serde(default)]
        wipe: bool,
    },
    /// Lists the tokens, without their secrets' hashes.
    Tokens,
    /// Takes an online backup into a new folder (an absolute path: the hub
    /// does not share the caller's working folder).
    Backup {
        /// The folder to create.
        to: PathBuf,
    },
}

/// The hub's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminReply {
    /// A token was issued: the bearer is shown only now.
    Issued {
        /// The token's id.
        token_id: String,
        /// `id.secret`, as devices present it.
        bearer: String,
    },
    /// The record of a revoked token.
    Revoked(TokenRecord),
    /// Every token record.
    Tokens(Vec<TokenRecord>),
    /// A backup was taken: what it holds.
    BackedUp(BackupInfo),
    /// The request was refused, and why.
    Refused(String),
}

/// The socket of the hub whose data folder is `data`.
pub fn socket_path(data: &Path) -> PathBuf {
    data.join(SOCKET_DIR).join(SOCKET_NAME)
}

/// Refuses a station that is not on `config`'s roster, naming those that
/// are.
///
/// # Errors
/// The refusal, as text for the operator.
pub fn on_roster(config: &HubConfig, station: &str) -> Result<(), String> {
    if config.station(station).is_some() {
        return Ok(());
    }
    let stations: Vec<String> = config
        .stations
        .iter()
        .map(|s| format!("{} {}", s.code, s.name))
        .collect();
    Err(format!(
        "station {station} is not on the roster: {}",
        stations.join(", ")
    ))
}

/// Carries out `request` on `store`; a device's station must be on
/// `config`'s roster (a refusal for that ends with `roster_hint`).
pub fn handle(
    store: &HubStore,
    config: &HubConfig,
    request: AdminRequest,
    roster_hint: &str,
) -> AdminReply {
    let refused = |e: &dyn std::fmt::Display| AdminReply::Refused(e.to_string());
    match request {
        AdminRequest::EnrollDevice { station, device } => {
            if let Err(e) = station_proto::validate::station_code("station", &station) {
                return refused(&e);
            }
            if let Err(e) = on_roster(config, &station) {
                return AdminReply::Refused(format!("{e}{roster_hint}"));
            }
            match auth::enroll_device(store, &station, &device) {
                Ok(issued) => AdminReply::Issued {
                    token_id: issued.token_id,
                    bearer: issued.bearer,
                },
                Err(e) => refused(&e),
            }
        }
        AdminRequest::EnrollRelay { station, relay } => {
            if let Err(e) = station_proto::validate::station_code("station", &station) {
                return refused(&e);
            }
            if let Err(e) = on_roster(config, &station) {
                return AdminReply::Refused(format!("{e}{roster_hint}"));
            }
            match auth::enroll_relay(store, &station, &relay) {
                Ok(issued) => AdminReply::Issued {
                    token_id: issued.token_id,
                    bearer: issued.bearer,
                },
                Err(e) => refused(&e),
            }
        }
        AdminRequest::EnrollSupervisor {
            supervisor,
            stations,
        } => {
            for station in &stations {
                if let Err(e) = station_proto::validate::station_code("station", station) {
                    return refused(&e);
                }
                if let Err(e) = on_roster(config, station) {
                    return AdminReply::Refused(format!("{e}{roster_hint}"));
                }
            }
            match auth::enroll_supervisor(store, &supervisor, &stations) {
                Ok(issued) => AdminReply::Issued {
                    token_id: issued.token_id,
                    bearer: issued.bearer,
                },
                Err(e) => refused(&e),
            }
        }
        AdminRequest::EnrollBureau { bureau } => match auth::enroll_bureau(store, &bureau) {
            Ok(issued) => AdminReply::Issued {
                token_id: issued.token_id,
                bearer: issued.bearer,
            },
            Err(e) => refused(&e),
        },
        AdminRequest::Revoke {
            token_id,
            wipe: false,
        } => match auth::revoke(store, &token_id) {
            Ok(record) => AdminReply::Revoked(without_secret(record)),
            Err(e) => refused(&e),
        },
        AdminRequest::Revoke {
            token_id,
            wipe: true,
        } => match auth::order_wipe(store, &token_id) {
            Ok(record) => AdminReply::Revoked(without_secret(record)),
            Err(e) => refused(&e),
        },
        AdminRequest::Tokens => match store.tokens() {
            Ok(records) => AdminReply::Tokens(records.into_iter().map(without_secret).collect()),
            Err(e) => refused(&e),
        },
        AdminRequest::Backup { to } if to.is_relative() => AdminReply::Refused(format!(
            "the backup folder must be an absolute path, got {}",
            to.display()
        )),
        AdminRequest::Backup { to } => match backup::backup(store, &to) {
            Ok(info) => AdminReply::BackedUp(info),
            Err(e) => refused(&e),
        },
    }
}

fn without_secret(mut record: TokenRecord) -> TokenRecord {
    record.secret_sha256.clear();
    record
}

/// The administration socket, bound and private, not yet answering.
#[derive(Debug)]
pub struct AdminSocket {
    /// The socket file, removed when the socket is dropped.
    path: PathBuf,
    /// Accepts the commands' connections.
    listener: tokio::net::UnixListener,
}

impl AdminSocket {
    /// Binds the socket at `path`, in a folder only this user may enter. A
    /// file left there by a hub that is gone is replaced: the caller holds
    /// the store's lock, so no other hub serves this folder.
    ///
    /// # Errors
    /// The socket cannot be bound or made private.
    pub fn bind(path: PathBuf) -> io::Result<Self> {
        use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
        // The folder is private before the socket exists in it, so there is
        // no moment in which another user could connect.
        if let Some(dir) = path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let listener = tokio::net::UnixListener::bind(&path)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        Ok(Self { path, listener })
    }

    /// Where the socket is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Answers requests on `store` until `shutdown` completes, then removes
    /// the socket (as dropping it does).
    pub async fn serve(
        self,
        store: Arc<HubStore>,
        config: Arc<HubConfig>,
        shutdown: impl Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = self.listener.accept() => {
                    let (stream, _) = match accepted {
                        Ok(accepted) => accepted,
                        Err(error) => {
                            tracing::warn!(%error, "admin socket: accept failed");
                            continue;
                        }
                    };
                    let store = Arc::clone(&store);
                    let config = Arc::clone(&config);
                    tokio::spawn(async move {
                        if let Err(error) = answer(stream, store, config).await {
                            tracing::info!(%error, "admin socket: request not answered");
                        }
                    });
                }
            }
        }
    }
}

impl Drop for AdminSocket {
    /// Removes the socket file: no client finds a socket nobody answers on,
    /// whether the socket served or was never answered on.
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn answer(
    stream: tokio::net::UnixStream,
    store: Arc<HubStore>,
    config: Arc<HubConfig>,
) -> io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = Vec::new();
    tokio::io::BufReader::new(read.take(MAX_REQUEST_BYTES))
        .read_until(b'\n', &mut line)
        .await?;
    let reply = match serde_json::from_slice::<AdminRequest>(&line) {
        Ok(request) => {
            let what = format!("{request:?}");
            let reply = tokio::task::spawn_blocking(move || {
                handle(
                    &store,
                    &config,
                    request,
                    " (the roster the running hub serves with)",
                )
            })
            .await
            .unwrap_or_else(|e| AdminReply::Refused(format!("the request failed: {e}")));
            match &reply {
                AdminReply::Refused(reason) => tracing::info!(%reason, "admin: refused {what}"),
                AdminReply::Issued { token_id, .. } => {
                    tracing::info!(%token_id, "admin: token issued");
                }
                AdminReply::Revoked(record) if record.wipe.is_some() => {
                    tracing::info!(token_id = %record.token_id, "admin: device wipe ordered");
                }
                AdminReply::Revoked(record) => {
                    tracing::info!(token_id = %record.token_id, "admin: token revoked");
                }
                AdminReply::Tokens(_) | AdminReply::BackedUp(_) => {}
            }
            reply
        }
        Err(e) => AdminReply::Refused(format!("not an admin request: {e}")),
    };
    let mut bytes = serde_json::to_vec(&reply).map_err(io::Error::other)?;
    bytes.push(b'\n');
    write.write_all(&bytes).await?;
    write.shutdown().await
}

/// Page cache of a store opened for one command while no hub serves it.
pub const COMMAND_CACHE: u64 = 16 * 1024 * 1024;

/// Why a token command was not carried out.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// A hub listens on the folder's socket but did not answer.
    #[error("the hub serving {} did not answer", data.display())]
    Unanswered {
        /// The data folder.
        data: PathBuf,
        /// What went wrong on the socket.
        source: io::Error,
    },
    /// No hub answers and the store cannot be opened (another process holds
    /// it, say).
    #[error("cannot open the hub store in {}", data.display())]
    Store {
        /// The data folder.
        data: PathBuf,
        /// Why the store did not open.
        source: HubError,
    },
    /// The configuration whose roster a device's station must be on did not
    /// load.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The request was refused, and why.
    #[error("{0}")]
    Refused(String),
}

/// Carries out a token command on the hub whose data folder is `data`:
/// through its administration socket when a hub serves the folder (which
/// checks a device's station against the roster it serves with), else on the
/// store directly (opened with `key`), checking it against the roster of
/// `config` (the built-in one when `None`).
///
/// # Errors
/// [`AdminError::Refused`] with the reason, [`AdminError::Unanswered`],
/// [`AdminError::Store`], [`AdminError::Config`].
pub fn administer(
    data: &Path,
    request: AdminRequest,
    config: Option<&Path>,
    key: crate::store::StoreKey,
) -> Result<AdminReply, AdminError> {
    let reply = match call(data, &request).map_err(|source| AdminError::Unanswered {
        data: data.to_path_buf(),
        source,
    })? {
        Some(reply) => reply,
        None => {
            let (roster, hint) = match config {
                Some(path) => (HubConfig::load(path)?, ""),
                None => (
                    HubConfig::builtin()?,
                    " (the built-in roster; give --config for another)",
                ),
            };
            let store = HubStore::open_keyed(
                data,
                COMMAND_CACHE,
                crate::store::MigrationOptions::default(),
                key,
            )
            .map_err(|source| AdminError::Store {
                data: data.to_path_buf(),
                source,
            })?;
            handle(&store, &roster, request, hint)
        }
    };
    match reply {
        AdminReply::Refused(reason) => Err(AdminError::Refused(reason)),
        reply => Ok(reply),
    }
}

/// Sends `request` to the hub serving the data folder `data`. `Ok(None)`
/// when no hub answers on a socket there (no socket, nobody listening on
/// it, or a folder too deep for a socket path).
///
/// # Errors
/// The hub did not answer, or answered something unreadable.
pub fn call(data: &Path, request: &AdminRequest) -> io::Result<Option<AdminReply>> {
    let path = socket_path(data);
    let mut stream = match std::os::unix::net::UnixStream::connect(&path) {
        Ok(stream) => stream,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound
                    | io::ErrorKind::ConnectionRefused
                    | io::ErrorKind::InvalidInput
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let timeout = match request {
        AdminRequest::Backup { .. } => BACKUP_TIMEOUT,
        _ => CALL_TIMEOUT,
    };
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(CALL_TIMEOUT))?;
    let mut line = serde_json::to_vec(request).map_err(io::Error::other)?;
    line.push(b'\n');
    stream.write_all(&line)?;
    stream.shutdown(std::net::Shutdown::Write)?;
    let mut answer = String::new();
    io::BufReader::new(stream.take(16 * 1024 * 1024)).read_line(&mut answer)?;
    serde_json::from_str(answer.trim())
        .map(Some)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("the hub's answer: {e}")))
}
