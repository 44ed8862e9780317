//! The one shape of an HTTP refusal, the API's and the WebSocket handshake's alike: HTTP
//! status, machine code, human text.

use serde::Serialize;

/// A refused HTTP request (an API call, or an upgrade): status, machine code, human text.
/// The body is `{"code": ..., "error": ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiError {
    /// HTTP status.
    #[serde(skip)]
    pub status: u16,
    /// Machine-readable code.
    pub code: &'static str,
    /// Human-readable text.
    pub error: String,
}

impl ApiError {
    /// An error with its status, code and text.
    pub fn new(status: u16, code: &'static str, error: impl Into<String>) -> Self {
        Self {
            status,
            code,
            error: error.into(),
        }
    }

    /// The JSON body.
    pub fn body(&self) -> String {
        serde_json::to_string(self).expect("errors serialize")
    }
}
