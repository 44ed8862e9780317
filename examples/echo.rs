//! An echo server for the Autobahn TestSuite: a one-shard hub whose application owns the
//! whole protocol and sends every text and binary message back to its sender, and nothing
//! else, since a case fails on any frame it did not ask for.
//!
//! Run it, then drive it with kosoku (`pip install kosoku==0.1.0`; Autobahn has no 8.*,
//! and kosoku 0.1.0 cannot run the compression cases 12.* and 13.*):
//!
//! ```sh
//! cargo run --example echo -- 127.0.0.1:9001
//! kosoku 127.0.0.1:9001 -i '1.*' -i '2.*' -i '3.*' -i '4.*' -i '5.*' -i '6.*' -i '7.*' \
//!     -i '9.*' -i '10.*' -o target/autobahn/reports
//! ```
//!
//! `cargo test --test conformance` does both and checks every verdict.

use std::time::Duration;

use neonex::{Application, Hub, HubConfig, HubEvent};

/// Autobahn's largest message is 16 MiB (9.1.6, 9.2.6).
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".to_owned());
    let mut config = HubConfig {
        application: Some(Application::raw()),
        shards: 1,
        // Autobahn's clients ask for `/`.
        path: "/".to_owned(),
        max_message_size: MAX_MESSAGE,
        // A ping is a frame no case asked for: none during a run.
        ping_interval: Duration::from_secs(24 * 3600),
        pong_timeout: Duration::from_secs(48 * 3600),
        ..HubConfig::default()
    };
    config.rooms.autojoin.clear();
    // The suite sends as fast as it can; a refused message would fail its case.
    config.limits.messages_per_second = u32::MAX;
    config.limits.burst = u32::MAX;
    // Room for the largest message the hub accepts, echoed while the client still reads
    // the one before it.
    config.send_queue.max_bytes = 2 * MAX_MESSAGE;

    let hub = Hub::new(config)?;
    let bound = hub.listen(addr.as_str())?;
    println!("listening on {bound}");
    for event in hub.events() {
        let echoed = match event {
            HubEvent::Text { conn, text, .. } => hub.send_to_connection(conn, &text),
            HubEvent::Binary { conn, data, .. } => hub.send_binary_to_connection(conn, &data),
            _ => Ok(()),
        };
        // A lost echo fails its case: say why, for the case's report has only the symptom.
        if let Err(e) = echoed {
            eprintln!("echo failed: {e}");
        }
    }
    Ok(())
}
