//! station-proto: the `station.v1` wire types and the domain rules every part keeps.
//!
//! This crate is pure: no I/O, no clock. The agent and the hub call its validation; they do
//! not re-implement it.
//!
//! # Layout
//!
//! - [`v1`]: messages and gRPC stubs generated from `proto/station/v1/*.proto`.
//! - [`validate`]: one function per message, normalising text to NFC and
//!   returning an [`validate::Invalid`] that names the field and the rule.
//! - [`kinds`]: one place per event kind: the [`kinds::Kind`] facts each
//!   body answers (name, validation, case, view step, masking, review,
//!   writer, what a device checks), and the one dispatch over [`Body`].
//! - [`json`]: the proto3 JSON mapping of event bodies, for scripted entry.
//! - [`chain`]: signed logs: an event's canonical bytes, each origin's hash
//!   chain, and the signed head of a push.
//! - [`codec`]: the gRPC codec: prost, with undecodable requests answered
//!   `INVALID_ARGUMENT`.
//! - [`file_number`]: 档案编号, the file numbers devices give offline.
//! - [`ids`]: UUID helpers for the 16-byte ids carried in events.
//! - [`case`]: the case model both ends share: a case's view, tier
//!   intervals and follow-ups, which case an event is about, and the one
//!   fold that derives a view from a case's events.
//! - [`id_number`]: resident ID numbers (GB 11643): the check character, the
//!   birth date and gender inside a number.
//! - [`mask`]: minimisation: ID numbers, phones and addresses as shown
//!   masked, and what a de-identified case shows.
//! - [`person`]: keyed tags of ID numbers (and the weaker tags of name, birth
//!   date and gender), so that an index or a directory
//!   finds a person's files without holding the ID number.
//! - [`money`]: yuan as people write it, to the fen events carry.
//! - [`names`]: the names people type for the enums (short, proto, Chinese).
//! - [`transfer`]: transfers of a file between stations: who holds it, and
//!   where each request stands.
//! - [`review`]: supervision: which changes need review, and the fold of
//!   review requests and decisions (pending, approved, returned, stale).

pub mod case;
pub mod chain;
pub mod codec;
pub mod directory;
pub mod file_number;
pub mod id_number;
pub mod ids;
pub mod json;
pub mod kinds;
pub mod mask;
pub mod money;
pub mod names;
pub mod packed;
pub mod person;
pub mod review;
pub mod transfer;
pub mod validate;

/// Messages and service stubs of package `station.v1`.
#[allow(missing_docs, clippy::all, clippy::pedantic, clippy::unwrap_used)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/station.v1.rs"));
}

/// The encoded `FileDescriptorSet` of every `.proto` file of this crate.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/station_descriptor.bin"));

/// The response header (gRPC initial metadata) in which the hub repeats a
/// `Pull` page's `next_cursor`, as decimal ASCII. Headers cross the link
/// before the page, so a device can ask for the next page while this one is
/// still coming down; the page's own `next_cursor` stays the one stored, and
/// a page that contradicts its header is refused. A hub that does not send
/// it, and a device that ignores it, sync as before.
pub const PULL_NEXT_CURSOR_HEADER: &str = "station-next-cursor";

pub use v1::Event;
pub use v1::event::Body;
