//! The 16-byte ids carried in events (`event_id`, `origin_id`, `case_id`) as [`Uuid`]s.

pub use uuid::Uuid;

/// Reads a 16-byte id; `None` when the slice is not exactly 16 bytes.
pub fn from_bytes(bytes: &[u8]) -> Option<Uuid> {
    Uuid::from_slice(bytes).ok()
}

/// A new time-ordered (v7) id.
pub fn new_v7() -> Uuid {
    Uuid::now_v7()
}

/// A time-ordered (v7) id whose timestamp is `unix_ms`, with fresh random bits.
pub fn v7_at(unix_ms: u64) -> Uuid {
    let ts = uuid::Timestamp::from_unix(
        uuid::NoContext,
        unix_ms / 1000,
        u32::try_from(unix_ms % 1000).unwrap_or(0) * 1_000_000,
    );
    Uuid::new_v7(ts)
}
