//! The four hooks, and what one call of a hook comes to: the backend's answer, or why
//! there is none. Whether an answer is the one a hook needs is the verdicts' business
//! ([`super::verdicts`]); this file only names the cases.

use bytes::Bytes;

/// A hook of the backend, one per `proxy.*_url`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Hook {
    /// Before the upgrade: who the connection is (`proxy.connect_url`).
    Connect,
    /// Before a join (`proxy.join_url`).
    Join,
    /// Before a publish (`proxy.publish_url`).
    Publish,
    /// A client's `rpc` message (`proxy.rpc_url`).
    Rpc,
}

impl Hook {
    /// Every hook, in the order of their settings; `hook as usize` indexes it.
    pub const ALL: [Hook; 4] = [Hook::Connect, Hook::Join, Hook::Publish, Hook::Rpc];

    /// The hook's name in stats and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Hook::Connect => "connect",
            Hook::Join => "join",
            Hook::Publish => "publish",
            Hook::Rpc => "rpc",
        }
    }
}

/// How one call ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The backend answered with a status below 500 (a 200's body is a JSON object).
    Answered {
        /// The HTTP status.
        status: u16,
        /// The whole body.
        body: Bytes,
    },
    /// No usable answer.
    Failed(Failure),
}

/// Why a call has no usable answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// No answer within `proxy.timeout` or the caller's deadline, whichever came first;
    /// or the deadline had passed before the call's turn came.
    Timeout,
    /// No connection to the backend, a connection that broke, no URL for the hook, or the
    /// proxy stopped.
    Unreachable,
    /// The backend answered 5xx.
    ServerError(u16),
    /// The queue of calls was full; the call was not made.
    Busy,
    /// A 200 whose body is not the JSON the hook needs, or an answer too long to read.
    BadAnswer,
}

impl Failure {
    /// Every label, in the order of [`Failure::index`].
    pub const LABELS: [&'static str; 5] = [
        "timeout",
        "unreachable",
        "server_error",
        "busy",
        "bad_answer",
    ];

    /// The failure's label in stats and metrics (`reason`).
    pub fn label(self) -> &'static str {
        Self::LABELS[self.index()]
    }

    /// The failure's place in [`Failure::LABELS`].
    pub fn index(self) -> usize {
        match self {
            Failure::Timeout => 0,
            Failure::Unreachable => 1,
            Failure::ServerError(_) => 2,
            Failure::Busy => 3,
            Failure::BadAnswer => 4,
        }
    }
}
