//! What the hub sends each hook: one JSON object per call, with the fields PROTOCOL.md
//! ("Proxy hooks") names, so that a backend written against the protocol reads them.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::Serialize;
use serde_json::value::RawValue;

/// The connect hook's body: `{"remote":"ip:port","headers":{...},"query":{...}}`.
///
/// `headers` are the upgrade request's, with lower-case names; a header sent several
/// times is joined into one value (`cookie` with `"; "`, the others with `", "`, as HTTP
/// joins them). `query` is the request's query string, decoded; of a parameter given
/// several times, the last counts.
pub(crate) fn connect_body(
    remote: SocketAddr,
    headers: &[(String, String)],
    query: &str,
) -> Vec<u8> {
    #[derive(Serialize)]
    struct Connect<'a> {
        remote: String,
        headers: BTreeMap<&'a str, String>,
        query: BTreeMap<String, String>,
    }
    let mut joined: BTreeMap<&str, String> = BTreeMap::new();
    for (name, value) in headers {
        match joined.get_mut(name.as_str()) {
            Some(earlier) => {
                earlier.push_str(if name == "cookie" { "; " } else { ", " });
                earlier.push_str(value);
            }
            None => {
                joined.insert(name, value.clone());
            }
        }
    }
    let query = form_urlencoded::parse(query.trim_start_matches('?').as_bytes())
        .into_owned()
        .collect();
    to_json(&Connect {
        remote: remote.to_string(),
        headers: joined,
        query,
    })
}

/// The join hook's body: `{"connection_id","user_id","room"}`.
pub(crate) fn join_body(conn_id: &str, user: &str, room: &str) -> Vec<u8> {
    #[derive(Serialize)]
    struct Join<'a> {
        connection_id: &'a str,
        user_id: &'a str,
        room: &'a str,
    }
    to_json(&Join {
        connection_id: conn_id,
        user_id: user,
        room,
    })
}

/// The publish hook's body: `{"connection_id","user_id","room"}` with `message` and
/// `data` as the client sent them; a field the client left out is left out.
pub(crate) fn publish_body(
    conn_id: &str,
    user: &str,
    room: &str,
    message: Option<&str>,
    data: Option<&RawValue>,
) -> Vec<u8> {
    #[derive(Serialize)]
    struct Publish<'a> {
        connection_id: &'a str,
        user_id: &'a str,
        room: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        message: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        data: Option<&'a RawValue>,
    }
    to_json(&Publish {
        connection_id: conn_id,
        user_id: user,
        room,
        message,
        data,
    })
}

/// The rpc hook's body: `{"connection_id","user_id","id","method","data"}`; `id` is the
/// client's, as it wrote it, and `data` is `null` when the client sent none, so that the
/// backend always finds the field.
pub(crate) fn rpc_body(
    conn_id: &str,
    user: &str,
    id: &RawValue,
    method: &str,
    data: Option<&RawValue>,
) -> Vec<u8> {
    #[derive(Serialize)]
    struct Rpc<'a> {
        connection_id: &'a str,
        user_id: &'a str,
        id: &'a RawValue,
        method: &'a str,
        data: Option<&'a RawValue>,
    }
    to_json(&Rpc {
        connection_id: conn_id,
        user_id: user,
        id,
        method,
        data,
    })
}

fn to_json(body: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(body).expect("strings, maps and raw JSON always serialize")
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn parsed(body: Vec<u8>) -> Value {
        serde_json::from_slice(&body).unwrap()
    }

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    #[test]
    fn connect_sends_the_remote_the_headers_and_the_query() {
        let headers = [
            ("origin", "https://app.example.com"),
            ("cookie", "a=1"),
            ("cookie", "b=2"),
            ("accept-language", "fr"),
            ("accept-language", "en"),
        ]
        .map(|(n, v)| (n.to_owned(), v.to_owned()));
        let body = connect_body(
            "[::1]:5000".parse().unwrap(),
            &headers,
            "?token=a%20b&room=x&room=y",
        );
        assert_eq!(
            parsed(body),
            json!({
                "remote": "[::1]:5000",
                "headers": {
                    "origin": "https://app.example.com",
                    "cookie": "a=1; b=2",
                    "accept-language": "fr, en",
                },
                "query": {"token": "a b", "room": "y"},
            })
        );
        let empty = connect_body("10.0.0.1:80".parse().unwrap(), &[], "");
        assert_eq!(
            parsed(empty),
            json!({"remote": "10.0.0.1:80", "headers": {}, "query": {}})
        );
    }

    #[test]
    fn join_publish_and_rpc_name_the_connection_and_user() {
        assert_eq!(
            parsed(join_body("c1", "alice", "lobby")),
            json!({"connection_id": "c1", "user_id": "alice", "room": "lobby"})
        );
        let data = raw(r#"{"x":[1,2]}"#);
        assert_eq!(
            parsed(publish_body(
                "c1",
                "alice",
                "lobby",
                Some("hi \"you\""),
                Some(&data)
            )),
            json!({"connection_id": "c1", "user_id": "alice", "room": "lobby",
                   "message": "hi \"you\"", "data": {"x": [1, 2]}})
        );
        assert_eq!(
            parsed(publish_body("c1", "alice", "lobby", None, Some(&data))),
            json!({"connection_id": "c1", "user_id": "alice", "room": "lobby",
                   "data": {"x": [1, 2]}})
        );
        assert_eq!(
            parsed(rpc_body(
                "c1",
                "alice",
                &raw("7"),
                "sum",
                Some(&raw("[1,2]"))
            )),
            json!({"connection_id": "c1", "user_id": "alice", "id": 7, "method": "sum",
                   "data": [1, 2]})
        );
        assert_eq!(
            parsed(rpc_body("c1", "alice", &raw(r#""q-1""#), "ping", None)),
            json!({"connection_id": "c1", "user_id": "alice", "id": "q-1", "method": "ping",
                   "data": null})
        );
    }
}
