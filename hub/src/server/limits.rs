//! The bounds of the hub's gRPC side: how much one call may carry or ask
//! for. Every bound a caller can exceed is refused with a status that names
//! it; none is silently cut.

use std::time::Duration;

/// Most events one `Push` may carry.
pub const MAX_PUSH_EVENTS: usize = 5_000;
/// Largest request or response the hub decodes or sends, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// Most events and bytes one `Pull` page returns.
pub const MAX_PULL_EVENTS: u32 = 5_000;
/// Byte budget of one `Pull` page.
pub const MAX_PULL_BYTES: u32 = 1024 * 1024;
/// Longest long-poll a `Pull` may ask for.
pub const MAX_PULL_WAIT: Duration = Duration::from_secs(30);
