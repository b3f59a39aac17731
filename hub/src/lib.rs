//! station-hub: the city hub. It stores every station's events once, in hub
//! order, and serves them back to the station's devices; the city-wide
//! projections the civil-affairs bureau reads are built from this log.
//!
//! # Layout
//!
//! - [`store`]: the hub's log behind the [`store::HubLog`] contract, with
//!   [`store::HubStore`] (sled, the default: per-origin `durable_through`,
//!   gap refusal, quarantine, the station streams `Pull` reads, format 2 and
//!   the migration from format 1, group-committed with the agent's
//!   [`station_agent::durable`]), [`store::MemoryLog`] (the reference) and
//!   the token records ([`store::TokenStore`]).
//! - [`ingest`]: the ingest decision, a pure function: each event of a push
//!   accepted, ignored as held, or quarantined with the reason, or the whole
//!   push refused.
//! - [`audit`]: the read audit: every read of a person-level record, by
//!   whom, of what, when and from where, in a hash-chained, fsynced log in
//!   `DATA/audit/` before it is answered, and [`audit::read`], which checks
//!   the chain.
//! - [`auth`]: tokens (`enroll`, `revoke`), the interceptor that resolves a
//!   bearer token to a [`auth::Caller`], and every rule of who may read or
//!   write what, for the gRPC and HTTP sides alike.
//! - [`config`]: the roster, follow-up intervals and targets (TOML, or the
//!   built-in Nedong roster), validated before the hub serves.
//! - [`projections`]: the bureau's projections, built from the log in hub
//!   order, each event applied once with its checkpoint in one batch, and
//!   their read API ([`projections::Projections`]) for `Query` and HTTP.
//! - [`serve()`]: the hub as served, [`serve()`]`(listeners, options,
//!   shutdown)`: the gRPC and HTTP sides on listeners the caller bound (tests
//!   bind `127.0.0.1:0`), the administration socket and the projector,
//!   started together and stopped together; [`Hub`] is its two halves (open,
//!   then serve) for callers that use the store in between.
//!   [`serve::run`]`(listener, store, shutdown)` is the gRPC side alone over
//!   a store the caller opened.
//! - `frontend` (cargo feature `jetstream`): hub front-ends over one NATS
//!   JetStream log, each with its mirror of the log and its projections.
//! - [`server`]: the tonic `station.v1.Sync` and `station.v1.Query` services
//!   with health and reflection beside them, plain or TLS.
//! - [`http`]: the bureau's HTTP side on its own listener
//!   ([`http::serve_http`]): JSON mirroring `Query`, CSV and XLSX ledgers,
//!   and the dashboard behind a bureau-token login.
//! - [`guard`]: what keeps the hub serving under hostile load: each
//!   listener's connection cap and handshake, idle and request timeouts, the
//!   open-file limit, and logs that report a repeated condition once per
//!   interval with a count.
//! - [`params`]: the limits, periods and `as_of` of a read, parsed alike for
//!   `Query` and HTTP.
//! - [`admin`]: the administration socket of a running hub, through which
//!   `enroll`, `revoke` and `tokens` reach it without stopping it, and
//!   [`admin::administer`], which carries them out through it or, when no
//!   hub serves the folder, on the store.
//! - `main.rs`: the `station-hub` command line; it parses arguments, sets up
//!   tracing and calls [`serve()`] or the commands' library functions.

#[cfg(unix)]
pub mod admin;
pub mod audit;
pub mod auth;
pub mod config;
#[cfg(feature = "jetstream")]
pub mod frontend;
pub mod guard;
pub mod http;
pub mod ingest;
pub mod params;
pub mod projections;
pub mod serve;
pub mod server;
pub mod store;

pub use serve::{Hub, HubOptions, Listeners, serve};

/// The version of the hub, reported in logs.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
