//! The HTTP API for backends, on the hub's own listener: its routes, who may call it,
//! and the shape of its errors.
//!
//! | route | effect |
//! | --- | --- |
//! | `POST /api/broadcast` | the JSON body, as is, to every connection |
//! | `POST /api/rooms/{room}/broadcast[?except=ID]` | to every member of the room |
//! | `POST /api/users/{user}/send` | to every connection of the user |
//! | `GET /api/rooms` | the rooms, with member counts |
//! | `PUT /api/rooms/{room}` | create the room (it persists when empty) |
//! | `DELETE /api/rooms/{room}` | remove the room (members get `left`) |
//! | `GET /api/rooms/{room}/members` | the connections in the room |
//! | `GET /api/users/{user}/connections` | the user's connections |
//! | `DELETE /api/connections/{id}[?code=&reason=]` | close one connection (default 1008) |
//! | `DELETE /api/users/{user}/connections[?code=&reason=]` | close all of a user's |
//!
//! With `api.key` set, a call needs `Authorization: Bearer KEY` or `X-API-Key: KEY`;
//! without one, only clients on a loopback address may call.

use percent_encoding::percent_decode_str;
use serde::Serialize;

use crate::forwarded::ClientAddress;
use crate::http::RequestHead;
use crate::ids::{is_valid_room_name, is_valid_user_id, ConnectionId};

/// A call the API understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `POST /api/broadcast`.
    Broadcast,
    /// `POST /api/rooms/{room}/broadcast`.
    RoomBroadcast {
        /// The room.
        room: String,
        /// `?except=`: a connection to skip.
        except: Option<ConnectionId>,
    },
    /// `POST /api/users/{user}/send`.
    UserSend {
        /// The user.
        user: String,
    },
    /// `GET /api/rooms`.
    ListRooms,
    /// `PUT /api/rooms/{room}`.
    CreateRoom {
        /// The room.
        room: String,
    },
    /// `DELETE /api/rooms/{room}`.
    RemoveRoom {
        /// The room.
        room: String,
    },
    /// `GET /api/rooms/{room}/members`.
    RoomMembers {
        /// The room.
        room: String,
    },
    /// `GET /api/users/{user}/connections`.
    UserConnections {
        /// The user.
        user: String,
    },
    /// `DELETE /api/connections/{id}`.
    DisconnectConnection {
        /// The connection.
        id: ConnectionId,
        /// Close code and reason.
        close: CloseRequest,
    },
    /// `DELETE /api/users/{user}/connections`.
    DisconnectUser {
        /// The user.
        user: String,
        /// Close code and reason.
        close: CloseRequest,
    },
}

/// The close frame a disconnect sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseRequest {
    /// `?code=`, default 1008.
    pub code: u16,
    /// `?reason=`, default `disconnected`.
    pub reason: String,
}

/// A refused API call: status, machine code, human text.
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

/// Checks that the caller may use the API. Without a key, only a `client` on this host
/// may ([`ClientAddress::local`]: a request relayed by a proxy never is, unless the proxy
/// is trusted and names a loopback client).
pub fn authorize(
    request: &RequestHead,
    key: Option<&str>,
    client: &ClientAddress,
) -> Result<(), ApiError> {
    let Some(key) = key else {
        if client.local {
            return Ok(());
        }
        return Err(ApiError::new(
            403,
            "forbidden",
            "no api.key is configured, so the API answers loopback clients only (and no request relayed by an untrusted proxy)",
        ));
    };
    let offered = request
        .api_key
        .as_deref()
        .or_else(|| crate::auth::bearer_token(request))
        .ok_or_else(|| {
            ApiError::new(
                401,
                "unauthorized",
                "send the API key as Authorization: Bearer KEY or X-API-Key: KEY",
            )
        })?;
    if constant_time_eq(offered.as_bytes(), key.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::new(401, "unauthorized", "wrong API key"))
    }
}

/// Compares without leaking, through timing, how much of the key was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, byte) in b.iter().enumerate() {
        diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ byte);
    }
    diff == 0
}

/// Finds the route of a request.
pub fn route(request: &RequestHead) -> Result<Route, ApiError> {
    let segments: Vec<String> = request
        .path
        .strip_prefix("/api/")
        .unwrap_or_default()
        .split('/')
        .map(|s| percent_decode_str(s).decode_utf8().map(|s| s.into_owned()))
        .collect::<Result<_, _>>()
        .map_err(|_| ApiError::new(400, "bad_request", "the path is not UTF-8 once decoded"))?;
    let method = request.method.as_str();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let allowed = |methods: &str| -> ApiError {
        ApiError::new(405, "method_not_allowed", format!("use {methods}"))
    };
    match segments.as_slice() {
        ["broadcast"] => match method {
            "POST" => Ok(Route::Broadcast),
            _ => Err(allowed("POST")),
        },
        ["rooms"] => match method {
            "GET" => Ok(Route::ListRooms),
            _ => Err(allowed("GET")),
        },
        ["rooms", room] => {
            let room = room_name(room)?;
            match method {
                "PUT" => Ok(Route::CreateRoom { room }),
                "DELETE" => Ok(Route::RemoveRoom { room }),
                _ => Err(allowed("PUT or DELETE")),
            }
        }
        ["rooms", room, "broadcast"] => match method {
            "POST" => Ok(Route::RoomBroadcast {
                room: room_name(room)?,
                except: match request.query_param("except") {
                    Some(id) => Some(connection_id(&id)?),
                    None => None,
                },
            }),
            _ => Err(allowed("POST")),
        },
        ["rooms", room, "members"] => match method {
            "GET" => Ok(Route::RoomMembers {
                room: room_name(room)?,
            }),
            _ => Err(allowed("GET")),
        },
        ["users", user, "send"] => match method {
            "POST" => Ok(Route::UserSend {
                user: user_id(user)?,
            }),
            _ => Err(allowed("POST")),
        },
        ["users", user, "connections"] => match method {
            "GET" => Ok(Route::UserConnections {
                user: user_id(user)?,
            }),
            "DELETE" => Ok(Route::DisconnectUser {
                user: user_id(user)?,
                close: close_request(request)?,
            }),
            _ => Err(allowed("GET or DELETE")),
        },
        ["connections", id] => match method {
            "DELETE" => Ok(Route::DisconnectConnection {
                id: connection_id(id)?,
                close: close_request(request)?,
            }),
            _ => Err(allowed("DELETE")),
        },
        _ => Err(ApiError::new(404, "not_found", "no such API route")),
    }
}

fn room_name(room: &str) -> Result<String, ApiError> {
    if is_valid_room_name(room) {
        Ok(room.to_owned())
    } else {
        Err(ApiError::new(
            400,
            "bad_request",
            "a room name is 1 to 128 bytes of [A-Za-z0-9_.:@-]",
        ))
    }
}

fn user_id(user: &str) -> Result<String, ApiError> {
    if is_valid_user_id(user) {
        Ok(user.to_owned())
    } else {
        Err(ApiError::new(
            400,
            "bad_request",
            "a user id is 1 to 128 bytes",
        ))
    }
}

fn connection_id(id: &str) -> Result<ConnectionId, ApiError> {
    id.parse()
        .map_err(|_| ApiError::new(400, "bad_request", "a connection id is <shard>-<sequence>"))
}

fn close_request(request: &RequestHead) -> Result<CloseRequest, ApiError> {
    let code = match request.query_param("code") {
        None => crate::ws::close_code::POLICY,
        Some(code) => code
            .parse::<u16>()
            .ok()
            // is_allowed() leaves out 1005, 1006 and 1015 already; 1010 only a client sends.
            .filter(|&c| fastwebsockets::CloseCode::from(c).is_allowed() && c != 1010)
            .ok_or_else(|| {
                ApiError::new(
                    400,
                    "bad_request",
                    "code must be a close code a server may send",
                )
            })?,
    };
    let reason = request
        .query_param("reason")
        .unwrap_or_else(|| "disconnected".to_owned());
    if reason.len() > 123 {
        return Err(ApiError::new(
            400,
            "bad_request",
            "reason is at most 123 bytes",
        ));
    }
    Ok(CloseRequest { code, reason })
}

/// Checks that a publish body is JSON; it is sent on exactly as it came.
pub fn json_body(body: &[u8]) -> Result<&str, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::new(400, "invalid_json", "the body is not UTF-8"))?;
    serde_json::from_str::<serde::de::IgnoredAny>(text)
        .map_err(|e| ApiError::new(400, "invalid_json", format!("the body is not JSON: {e}")))?;
    Ok(text.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, target: &str) -> RequestHead {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q.to_owned())),
            None => (target, None),
        };
        RequestHead {
            method: method.into(),
            path: path.into(),
            query,
            ..RequestHead::default()
        }
    }

    #[test]
    fn routes_are_recognised_with_decoded_segments() {
        assert_eq!(
            route(&request("POST", "/api/broadcast")),
            Ok(Route::Broadcast)
        );
        assert_eq!(
            route(&request("POST", "/api/rooms/lobby/broadcast?except=1-7")),
            Ok(Route::RoomBroadcast {
                room: "lobby".into(),
                except: Some("1-7".parse().unwrap())
            })
        );
        assert_eq!(
            route(&request("POST", "/api/users/ann%20b/send")),
            Ok(Route::UserSend {
                user: "ann b".into()
            })
        );
        assert_eq!(
            route(&request(
                "DELETE",
                "/api/connections/0-3?code=4001&reason=bye"
            )),
            Ok(Route::DisconnectConnection {
                id: "0-3".parse().unwrap(),
                close: CloseRequest {
                    code: 4001,
                    reason: "bye".into()
                }
            })
        );
    }

    #[test]
    fn wrong_methods_paths_and_values_are_refused() {
        assert_eq!(
            route(&request("GET", "/api/broadcast")).unwrap_err().status,
            405
        );
        assert_eq!(route(&request("GET", "/api/nope")).unwrap_err().status, 404);
        assert_eq!(
            route(&request("PUT", "/api/rooms/bad%20name"))
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(
            route(&request("DELETE", "/api/connections/x"))
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(
            route(&request("DELETE", "/api/connections/0-1?code=1005"))
                .unwrap_err()
                .status,
            400
        );
    }

    #[test]
    fn the_key_or_loopback_is_required() {
        let loopback = &ClientAddress {
            addr: "127.0.0.1:5000".parse().unwrap(),
            local: true,
        };
        let remote = &ClientAddress {
            addr: "10.1.2.3:5000".parse().unwrap(),
            local: false,
        };
        let bare = request("GET", "/api/rooms");
        assert!(authorize(&bare, None, loopback).is_ok());
        assert_eq!(authorize(&bare, None, remote).unwrap_err().status, 403);
        assert_eq!(
            authorize(&bare, Some("k"), loopback).unwrap_err().status,
            401
        );
        let bearer = RequestHead {
            authorization: Some("Bearer k".into()),
            ..bare.clone()
        };
        assert!(authorize(&bearer, Some("k"), remote).is_ok());
        let header = RequestHead {
            api_key: Some("wrong".into()),
            ..bare
        };
        assert_eq!(
            authorize(&header, Some("k"), remote).unwrap_err().status,
            401
        );
    }

    #[test]
    fn publish_bodies_must_be_json() {
        assert_eq!(json_body(br#" {"a":1} "#), Ok(r#"{"a":1}"#));
        assert_eq!(json_body(b"{nope").unwrap_err().code, "invalid_json");
        assert_eq!(json_body(&[0xff]).unwrap_err().code, "invalid_json");
    }
}
