//! The HTTP API for backends, on the hub's own listener: its routes, who may call it,
//! and the shape of its errors.
//!
//! | route | effect |
//! | --- | --- |
//! | `POST /api/broadcast` | the JSON body, as is, to every connection |
//! | `POST /api/rooms/{room}/broadcast[?except=ID]` | to every member of the room |
//! | `POST /api/rooms/{room}/publish` | a `publication` of the body to the room (positioned with history on) |
//! | `GET /api/rooms/{room}/history[?since=N&limit=K]` | the room's held messages after offset N |
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

mod access;
mod error;
mod route;

pub use access::authorize;
pub use error::ApiError;
pub use route::{json_body, route, CloseRequest, Route};
