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
//! - [`auth`]: tokens (`enroll`, `revoke`), the interceptor that resolves a
//!   bearer token to a [`auth::Caller`], and the rules of who may push and
//!   pull what.
//! - [`config`]: the roster, follow-up intervals and targets (TOML, or the
//!   built-in Nedong roster), validated before the hub serves.
//! - [`projections`]: the bureau's projections, built from the log in hub
//!   order, each event applied once with its checkpoint in one batch, and
//!   their read API ([`projections::Projections`]) for `Query` and HTTP.
//! - [`server`]: the tonic `station.v1.Sync` and `station.v1.Query` services with health and
//!   reflection beside it, plain or TLS, and
//!   [`server::run`]`(listener, store, shutdown)`, the entry tests bind on
//!   `127.0.0.1:0` ([`server::run_with`] takes [`server::ServerOptions`]).
//! - [`http`]: the bureau's HTTP side on its own listener
//!   ([`http::serve_http`]): JSON mirroring `Query`, CSV and XLSX ledgers,
//!   and the dashboard behind a bureau-token login.
//! - [`admin`]: the administration socket of a running hub, through which
//!   `enroll`, `revoke` and `tokens` reach it without stopping it.
//! - `main.rs`: the `station-hub` command line.

#[cfg(unix)]
pub mod admin;
pub mod auth;
pub mod config;
pub mod http;
pub mod ingest;
pub mod projections;
pub mod server;
pub mod store;

/// The version of the hub, reported in logs.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
