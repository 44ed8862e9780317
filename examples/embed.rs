//! Embedding the hub in an application.
//!
//! Starts a hub on 127.0.0.1:3000 with a room of its own, `clock`, beside the default
//! `general` and `random`, publishes a clock tick to it every second from an ordinary thread, and prints the hub's stats every
//! five seconds. Try it with a browser console:
//!
//! ```js
//! const ws = new WebSocket("ws://127.0.0.1:3000/ws?user=me", "neonex.v1");
//! ws.onmessage = (e) => console.log(e.data);
//! ws.onopen = () => ws.send(JSON.stringify({ type: "join_room", room: "clock" }));
//! ```
//!
//! Run: `cargo run --example embed` (Ctrl-C to stop).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use neonex::{Hub, HubConfig};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = HubConfig {
        ping_interval: Duration::from_secs(20),
        pong_timeout: Duration::from_secs(30),
        ..HubConfig::default()
    };
    config.rooms.create.push("clock".into());

    let hub = Hub::new(config)?;
    let addr = hub.listen("127.0.0.1:3000")?;
    println!("connect to ws://{addr}/ws?user=<name>");

    let publisher = hub.clone();
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_secs(1));
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let tick = serde_json::json!({ "type": "tick", "unix": now });
        if publisher.is_closed() || publisher.broadcast_to_room_json("clock", &tick).is_err() {
            break;
        }
        if now % 5 == 0 {
            let s = publisher.stats();
            println!(
                "connections={} users={} rooms={} deliveries={} frames/write={:.1}",
                s.total_connections,
                s.unique_users,
                s.rooms,
                s.deliveries,
                s.deliveries as f64 / s.write_calls.max(1) as f64
            );
        }
    });

    Signals::new([SIGINT, SIGTERM])?.forever().next();
    println!("closing: every client gets server_shutdown and close 1001");
    hub.close();
    Ok(())
}
