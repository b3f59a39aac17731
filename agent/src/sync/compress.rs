//! Requests compressed harder than tonic compresses them: a [`Compressed`]
//! service between the generated client and the [`Channel`] takes each
//! request's gRPC message as tonic framed it (uncompressed) and sends it as
//! standard gRPC zstd compression (`grpc-encoding: zstd`, the compressed
//! flag set), at [`PUSH_LEVEL`] instead of tonic's fixed default level.
//!
//! Why: the uplink is the narrow side of a 2G/3G link and pushed batches
//! are what crosses it; each batch is compressed apart, and at zstd's
//! default level a batch of a few seconds of airtime comes out larger than
//! the same events compressed in one piece. A higher level wins that back
//! and more, for a few milliseconds of the phone's CPU per batch, off the
//! async workers.
//!
//! Nothing changes on the wire but the compressed bytes: any gRPC server
//! that accepts zstd (every hub and relay does) decodes it, within its own
//! decoding limits, with no knowledge of the level.
//!
//! Invariants:
//! - a request is sent compressed only when it is exactly one uncompressed
//!   gRPC message and its compressed form is smaller; anything else (a
//!   stream, a message already compressed, an empty body) passes unchanged;
//! - the message is never altered: the far end decompresses exactly the
//!   bytes tonic encoded.

use std::task::{Context, Poll};

use std::sync::Arc;

use bytes::{BufMut as _, Bytes, BytesMut};
use http_body_util::BodyExt as _;
use prost::Message as _;
use station_proto::packed;
use station_proto::v1::PushRequest;
use tonic::body::Body;
use tonic::codegen::{Service, http};
use tonic::transport::Channel;

/// The zstd level of pushed messages. Chosen by measuring the benchmark's
/// backlog cut into batches the size the airtime sizing makes: see the
/// README's sync-backlog figures.
pub const PUSH_LEVEL: i32 = 19;

/// The length of a gRPC message's prefix: the compressed flag, then the
/// length as four big-endian bytes.
const PREFIX: usize = 5;

/// A [`Channel`] whose requests are compressed at `level`.
#[derive(Debug, Clone)]
pub struct Compressed {
    /// The connection the requests go out on.
    channel: Channel,
    /// The zstd level.
    level: i32,
}

impl Compressed {
    /// `channel`, its requests compressed at `level`.
    pub fn new(channel: Channel, level: i32) -> Self {
        Self { channel, level }
    }
}

/// The gRPC message of `body` compressed at `level`, framed with the
/// compressed flag; `None` when `body` is not exactly one uncompressed
/// message, or compressing does not make it smaller.
pub fn compress_message(body: &[u8], level: i32) -> Option<Bytes> {
    let (prefix, message) = body.split_at_checked(PREFIX)?;
    let length = u32::from_be_bytes(prefix[1..PREFIX].try_into().ok()?);
    if prefix[0] != 0 || usize::try_from(length).ok()? != message.len() {
        return None;
    }
    let compressed = zstd::bulk::compress(message, level).ok()?;
    if compressed.len() >= message.len() {
        return None;
    }
    let length = u32::try_from(compressed.len()).ok()?;
    let mut framed = BytesMut::with_capacity(PREFIX + compressed.len());
    framed.put_u8(1);
    framed.put_u32(length);
    framed.put_slice(&compressed);
    Some(framed.freeze())
}

/// `push` packed (`PushRequest.packed`) at zstd `level`, against
/// `dictionary` when there is one, and the dictionary it leaves for the next
/// push once acknowledged.
///
/// # Errors
/// zstd could not make a compression context (out of memory).
pub fn pack(
    push: &PushRequest,
    dictionary: Option<&[u8]>,
    level: i32,
) -> std::io::Result<(PushRequest, Arc<[u8]>)> {
    let unpacked = push.encode_to_vec();
    let left: Arc<[u8]> = Arc::from(packed::next_dictionary(dictionary, &unpacked));
    let compressed = match dictionary {
        Some(dictionary) => {
            zstd::bulk::Compressor::with_dictionary(level, dictionary)?.compress(&unpacked)?
        }
        None => zstd::bulk::compress(&unpacked, level)?,
    };
    let packed = PushRequest {
        packed: compressed,
        dictionary: dictionary
            .map(|d| packed::dictionary_id(d).to_vec())
            .unwrap_or_default(),
        ..PushRequest::default()
    };
    Ok((packed, left))
}

impl Service<http::Request<Body>> for Compressed {
    type Response = http::Response<Body>;
    type Error = tonic::codegen::StdError;
    type Future = std::pin::Pin<
        Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.channel.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        // The channel made ready by `poll_ready` takes the call; a clone
        // waits in its place for the next one.
        let clone = self.channel.clone();
        let mut channel = std::mem::replace(&mut self.channel, clone);
        let level = self.level;
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            // A unary request's body is one message, already encoded.
            let body = body.collect().await?.to_bytes();
            let compressed = tokio::task::spawn_blocking({
                let body = body.clone();
                move || compress_message(&body, level)
            })
            .await?;
            let body = match compressed {
                Some(framed) => {
                    parts
                        .headers
                        .insert("grpc-encoding", http::HeaderValue::from_static("zstd"));
                    parts.headers.remove(http::header::CONTENT_LENGTH);
                    framed
                }
                None => body,
            };
            let request =
                http::Request::from_parts(parts, Body::new(http_body_util::Full::new(body)));
            Ok(channel.call(request).await?)
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// `message` framed as tonic frames an uncompressed message.
    fn framed(message: &[u8]) -> Vec<u8> {
        let mut out = vec![0];
        out.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
        out.extend_from_slice(message);
        out
    }

    fn repetitive() -> Vec<u8> {
        (0..4_000u32)
            .flat_map(|n| format!("visit {} 泽当 རྩེད་ཐང;", n % 37).into_bytes())
            .collect()
    }

    #[test]
    fn a_message_is_sent_smaller_and_decompresses_to_the_same_bytes() {
        let message = repetitive();
        let sent = compress_message(&framed(&message), PUSH_LEVEL).unwrap();
        assert_eq!(sent[0], 1, "the compressed flag");
        let length = u32::from_be_bytes(sent[1..5].try_into().unwrap()) as usize;
        assert_eq!(length, sent.len() - 5);
        assert!(sent.len() < message.len() / 4);
        let back = zstd::stream::decode_all(&sent[5..]).unwrap();
        assert_eq!(back, message);
        let at_default = zstd::bulk::compress(&message, 3).unwrap();
        assert!(sent.len() - 5 <= at_default.len());
    }

    #[test]
    fn anything_but_one_uncompressed_message_passes_unchanged() {
        let message = repetitive();
        let mut flagged = framed(&message);
        flagged[0] = 1;
        assert_eq!(
            compress_message(&flagged, PUSH_LEVEL),
            None,
            "already compressed"
        );
        let mut two = framed(&message);
        two.extend_from_slice(&framed(&message));
        assert_eq!(compress_message(&two, PUSH_LEVEL), None, "a stream");
        let short = &framed(&message)[..100];
        assert_eq!(compress_message(short, PUSH_LEVEL), None, "a lying length");
        assert_eq!(compress_message(&[], PUSH_LEVEL), None, "empty");
        let noise: Vec<u8> = (0..64u8).map(|b| b.wrapping_mul(151) ^ 0x5a).collect();
        assert_eq!(
            compress_message(&framed(&noise), PUSH_LEVEL),
            None,
            "not smaller"
        );
    }
}
