//! Which call a request is: its route, parsed from the method and the decoded path.

use percent_encoding::percent_decode_str;

use super::ApiError;
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
    /// `POST /api/rooms/{room}/publish`: a positioned publication.
    RoomPublish {
        /// The room.
        room: String,
    },
    /// `GET /api/rooms/{room}/history`.
    RoomHistory {
        /// The room.
        room: String,
        /// `?since=`: the messages after this offset (default 0: all held).
        since: u64,
        /// `?limit=`: at most this many (default and cap: `history.max_recover`).
        limit: Option<usize>,
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
        ["rooms", room, "publish"] => match method {
            "POST" => Ok(Route::RoomPublish {
                room: room_name(room)?,
            }),
            _ => Err(allowed("POST")),
        },
        ["rooms", room, "history"] => match method {
            "GET" => Ok(Route::RoomHistory {
                room: room_name(room)?,
                since: number(request, "since")?.unwrap_or(0),
                limit: match number(request, "limit")? {
                    Some(0) => {
                        return Err(ApiError::new(
                            400,
                            "bad_request",
                            "limit must be at least 1",
                        ))
                    }
                    limit => limit.map(|n| n.min(usize::MAX as u64) as usize),
                },
            }),
            _ => Err(allowed("GET")),
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
    valid(
        room,
        is_valid_room_name,
        "a room name is 1 to 128 bytes of [A-Za-z0-9_.:@-]",
    )
}

fn user_id(user: &str) -> Result<String, ApiError> {
    valid(user, is_valid_user_id, "a user id is 1 to 128 bytes")
}

/// `text` if it follows `rule`, else a 400 that states the rule.
fn valid(text: &str, follows: fn(&str) -> bool, rule: &str) -> Result<String, ApiError> {
    if follows(text) {
        Ok(text.to_owned())
    } else {
        Err(ApiError::new(400, "bad_request", rule))
    }
}

/// Query parameter `name` as a non-negative integer, if given.
fn number(request: &RequestHead, name: &str) -> Result<Option<u64>, ApiError> {
    request
        .query_param(name)
        .map(|text| {
            text.parse::<u64>().map_err(|_| {
                ApiError::new(
                    400,
                    "bad_request",
                    format!("{name} must be a non-negative integer"),
                )
            })
        })
        .transpose()
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
            route(&request("GET", "/api/rooms/r/history?since=4&limit=2")),
            Ok(Route::RoomHistory {
                room: "r".into(),
                since: 4,
                limit: Some(2)
            })
        );
        assert_eq!(
            route(&request("GET", "/api/rooms/r/history")),
            Ok(Route::RoomHistory {
                room: "r".into(),
                since: 0,
                limit: None
            })
        );
        assert_eq!(
            route(&request("POST", "/api/rooms/r/publish")),
            Ok(Route::RoomPublish { room: "r".into() })
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
        for bad in ["since=-1", "since=x", "limit=0", "limit=1.5"] {
            let target = format!("/api/rooms/r/history?{bad}");
            assert_eq!(
                route(&request("GET", &target)).unwrap_err().status,
                400,
                "{bad}"
            );
        }
        assert_eq!(
            route(&request("GET", "/api/rooms/r/publish"))
                .unwrap_err()
                .status,
            405
        );
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
    fn publish_bodies_must_be_json() {
        assert_eq!(json_body(br#" {"a":1} "#), Ok(r#"{"a":1}"#));
        assert_eq!(json_body(b"{nope").unwrap_err().code, "invalid_json");
        assert_eq!(json_body(&[0xff]).unwrap_err().code, "invalid_json");
    }
}
