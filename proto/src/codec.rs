//! The gRPC codec of the `station.v1` services: prost encoding, with one
//! difference from tonic's default — a request whose bytes do not decode is
//! answered with `INVALID_ARGUMENT` (the caller sent something wrong and must
//! not retry it as is), not `INTERNAL`.

use std::marker::PhantomData;

use prost::Message;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::{ProstCodec, ProstEncoder};

/// The codec the generated clients and servers use.
#[derive(Debug, Clone)]
pub struct StrictCodec<T, U> {
    /// The encoded and decoded message types.
    _types: PhantomData<(T, U)>,
}

impl<T, U> Default for StrictCodec<T, U> {
    fn default() -> Self {
        Self {
            _types: PhantomData,
        }
    }
}

impl<T, U> Codec for StrictCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = StrictDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        StrictDecoder { _type: PhantomData }
    }
}

/// Decodes `U`, mapping malformed bytes to `INVALID_ARGUMENT`.
#[derive(Debug)]
pub struct StrictDecoder<U> {
    /// The decoded message type.
    _type: PhantomData<U>,
}

impl<U: Message + Default> Decoder for StrictDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf)
            .map(Some)
            .map_err(|e| Status::invalid_argument(format!("the message does not decode: {e}")))
    }
}
