//! Which failures are worth retrying: every `tonic::Code` the hub answers is
//! classified in [`is_retriable`], and a failed call becomes the machine's
//! [`Fault`] in [`fault`].
//!
//! Invariants: the match over `tonic::Code` is exhaustive, so a code is never
//! classified by default; a status tonic built from a transport error is a
//! link failure whatever its code.

use super::machine::Fault;

/// The one place that decides which gRPC codes *answered by the hub* are
/// worth retrying.
///
/// Permanent: the request itself is wrong and sent again it fails again —
/// `InvalidArgument` (a batch that does not decode), `PermissionDenied`
/// (another station's event), `Unauthenticated`, `NotFound`, `AlreadyExists`,
/// `OutOfRange`, `Unimplemented`. A pushed batch refused with one of them is
/// parked (`Unauthenticated` stops the round instead: the token is wrong, not
/// the batch).
///
/// Retriable, as vector's gRPC sinks do: the hub or the path to it is unable
/// for now — `Unavailable`, `DeadlineExceeded`, `Aborted`, `Cancelled`,
/// `ResourceExhausted`; `Unknown` and `Internal`, which tonic also reports for
/// a stream cut by a proxy without a transport error to show for it (parking
/// on those would strand a device for a dropped link); `DataLoss`; and
/// `FailedPrecondition`, the hub's answer to a gap, which a fresh Hello
/// resolves by resuming from the hub's real `durable_through`.
pub fn is_retriable(code: tonic::Code) -> bool {
    use tonic::Code;
    match code {
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::Cancelled
        | Code::ResourceExhausted
        | Code::Unknown
        | Code::Internal
        | Code::DataLoss
        | Code::FailedPrecondition => true,
        Code::Ok
        | Code::InvalidArgument
        | Code::NotFound
        | Code::AlreadyExists
        | Code::PermissionDenied
        | Code::OutOfRange
        | Code::Unimplemented
        | Code::Unauthenticated => false,
    }
}

/// Classifies a failed call for the state machine.
///
/// A status that tonic built from a transport error (it carries that error as
/// its source: a reset, an EOF, a timeout, a refused stream) is a
/// [`Fault::Link`] whatever its code, because tonic maps broken connections to
/// codes that, answered by the hub, would be permanent. A status the hub
/// answered is [`Fault::Busy`] when [`is_retriable`], else
/// [`Fault::Denied`] for `Unauthenticated` and [`Fault::Refused`] for the rest.
pub fn fault(status: &tonic::Status) -> Fault {
    let reason = format!("{:?}: {}", status.code(), status.message());
    if std::error::Error::source(status).is_some() {
        Fault::Link(reason)
    } else if is_retriable(status.code()) {
        Fault::Busy(reason)
    } else if status.code() == tonic::Code::Unauthenticated {
        Fault::Denied(reason)
    } else {
        Fault::Refused(reason)
    }
}
