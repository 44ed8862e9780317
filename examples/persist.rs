//! An application that hears its clients: it saves every chat message (to a JSON-lines
//! file, standing in for a database), answers its own message type `recent` with a room's
//! last messages, and keeps rooms named `staff-*` for users named `staff-*`.
//!
//! ```console
//! $ cargo run --example persist -- 127.0.0.1:3000 chat.jsonl
//! $ websocat 'ws://127.0.0.1:3000/ws?user=ann'
//! {"type":"message","room":"general","message":"hello"}
//! {"type":"recent","room":"general"}
//! ```
//!
//! The hub's shards never wait for this code: each event is read here, on the
//! application's own thread, and a join waits only on its own connection.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write;

use neonex::{Application, Hub, HubConfig, HubEvent};
use serde_json::{json, Value};

/// How many messages `recent` answers with.
const RECENT: usize = 20;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:3000".to_owned());
    let path = args.next().unwrap_or_else(|| "chat.jsonl".to_owned());
    let application = Application::new()
        .custom_types(["recent"])
        .authorize_joins();
    let hub = Hub::new(HubConfig {
        application: Some(application),
        ..HubConfig::default()
    })?;
    let addr = hub.listen(listen)?;
    println!("listening on {addr}, saving chat to {path}");

    let mut log = OpenOptions::new().create(true).append(true).open(&path)?;
    let mut recent: HashMap<String, Vec<Value>> = HashMap::new();
    for event in hub.events() {
        match event {
            HubEvent::Published {
                user,
                room,
                message,
                data,
                ..
            } => {
                let data: Option<Value> = data.and_then(|d| serde_json::from_str(&d).ok());
                let saved =
                    json!({"room": &*room, "user_id": &*user, "message": message, "data": data});
                writeln!(log, "{saved}")?;
                let kept = recent.entry(room.to_string()).or_default();
                kept.push(saved);
                if kept.len() > RECENT {
                    kept.remove(0);
                }
            }
            HubEvent::Custom { json, reply, .. } => {
                let asked: Value = serde_json::from_str(&json)?;
                let Some(room) = asked["room"].as_str() else {
                    reply.refuse("recent needs a room");
                    continue;
                };
                let messages = recent.get(room).cloned().unwrap_or_default();
                reply.send(
                    &json!({"type": "recent", "room": room, "messages": messages}).to_string(),
                );
            }
            HubEvent::JoinRequest {
                user,
                room,
                decision,
                ..
            } => {
                if room.starts_with("staff-") && !user.starts_with("staff-") {
                    decision.refuse("Staff only");
                } else {
                    decision.allow();
                }
            }
            _ => {}
        }
    }
    Ok(())
}
