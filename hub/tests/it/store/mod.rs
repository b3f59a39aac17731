//! Tests of the hub's log as stored: the committed format-1 fixture store and
//! its migration, and the log's contract checked against a model.

mod archive;
mod fixture;
#[cfg(feature = "jetstream")]
mod frontends;
#[cfg(feature = "jetstream")]
mod jetstream;
mod migration;
mod model;
#[cfg(feature = "jetstream")]
mod nats;
