//! An HTTP request as it arrives: its head once parsed and accepted, and how much of the
//! body it announced is in. A connection waiting for a body keeps its `Request`; one
//! whose upgrade waits for the backend's connect hook keeps its [`Upgrade`].

use crate::forwarded::ClientAddress;
use crate::http::RequestHead;

/// A request whose head has arrived and been accepted.
#[derive(Debug)]
pub(crate) struct Request {
    pub head: RequestHead,
    /// Who sent it, through any trusted proxies.
    pub client: ClientAddress,
    /// Bytes of the head; the body follows.
    pub head_len: usize,
    /// Bytes of head and body.
    pub total: usize,
}

/// How much of a request has arrived.
pub(super) enum Progress {
    /// Not the whole head yet.
    NeedHead,
    /// The head, accepted; not the whole body it announced yet. Boxed because it waits
    /// in the connection, and most connections never wait for a body.
    NeedBody(Box<Request>),
    /// Head and body.
    Complete(Box<Request>),
}

impl Progress {
    /// Where `request` stands once `arrived` bytes of it are in.
    pub fn of(request: Box<Request>, arrived: usize) -> Progress {
        if arrived >= request.total {
            Progress::Complete(request)
        } else {
            Progress::NeedBody(request)
        }
    }
}

/// The answer to an accepted upgrade, and what the application hears of its request.
#[derive(Debug)]
pub(crate) struct Upgrade {
    /// `101 Switching Protocols`.
    pub switching: bytes::Bytes,
    /// The request headers the application asked for.
    pub headers: Vec<(String, String)>,
    /// permessage-deflate was negotiated.
    pub deflate: bool,
}
