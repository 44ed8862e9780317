//! Where an idle connection's memory goes: the heap the hub holds per connection, by
//! allocation site, and the sizes of the structures behind it.
//!
//! Starts a hub in this process (one shard, no auto-joined room, no join notices, no
//! presence: as `perf/peers/neonex/start` runs it), opens N connections from this thread,
//! each upgraded as user `m-iK` and joined to room `bench` (with `--no-join`, in no room),
//! waits for two housekeeping ticks, and then, with every connection still open, reports
//! the live heap grown since before the first connection, divided by N, per allocation
//! site (dhat, the heap profiler standing in for the global allocator here).
//!
//! Run: `cargo run --example memory -- [N] [--no-join]` (N defaults to 2000). The full
//! profile is left in `dhat-heap.json` (viewable with dhat's `dh_view.html`).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use neonex::{Hub, HubConfig, PresenceScope};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

const PROFILE: &str = "dhat-heap.json";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let join = !args.iter().any(|a| a == "--no-join");
    let n: usize = match args.iter().find(|a| !a.starts_with("--")) {
        Some(n) => n.parse()?,
        None => 2000,
    };

    println!("sizes (bytes):");
    for (item, size) in neonex::bench::connection_sizes() {
        println!("  {size:>5}  {item}");
    }

    let profiler = dhat::Profiler::builder().file_name(PROFILE).build();
    let mut config = HubConfig {
        shards: 1,
        presence: PresenceScope::Off,
        ..HubConfig::default()
    };
    config.rooms.autojoin.clear();
    config.rooms.notify_join_leave = false;
    let hub = Hub::new(config)?;
    let addr = hub.listen("127.0.0.1:0")?;
    let mut clients = Vec::with_capacity(n);
    let mut scratch = vec![0u8; 4096];
    std::thread::sleep(Duration::from_millis(300));

    let before = dhat::HeapStats::get();
    for i in 0..n {
        clients.push(connect(addr, i, join, &mut scratch)?);
    }
    // Two housekeeping ticks: queues drained since the last one give their memory back.
    std::thread::sleep(Duration::from_millis(2500));
    let after = dhat::HeapStats::get();
    assert_eq!(
        hub.stats().total_connections,
        n as u64,
        "every connection is open"
    );
    drop(profiler);

    let bytes = after.curr_bytes as f64 - before.curr_bytes as f64;
    let blocks = after.curr_blocks as f64 - before.curr_blocks as f64;
    println!(
        "\n{n} idle connections{}: live heap +{:.0} B per connection in {:.2} blocks",
        if join {
            ", each in one room"
        } else {
            ", in no room"
        },
        bytes / n as f64,
        blocks / n as f64,
    );
    print_sites(n)?;

    drop(clients);
    hub.close();
    Ok(())
}

/// Opens connection `i`: the upgrade, then the join (its `joined` awaited), or only the
/// `welcome`.
fn connect(
    addr: std::net::SocketAddr,
    i: usize,
    join: bool,
    scratch: &mut [u8],
) -> std::io::Result<TcpStream> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut out = format!(
        "GET /ws?user=m-i{i} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: neonex.v1\r\n\r\n"
    )
    .into_bytes();
    let wanted: &[u8] = if join {
        let text = br#"{"type":"join_room","room":"bench"}"#;
        // A masked text frame; the zero mask leaves the text as it is.
        out.extend_from_slice(&[0x81, 0x80 | text.len() as u8, 0, 0, 0, 0]);
        out.extend_from_slice(text);
        br#""type":"joined""#
    } else {
        br#""type":"welcome""#
    };
    s.write_all(&out)?;
    let mut seen = Vec::new();
    while !contains(&seen, wanted) {
        let got = s.read(scratch)?;
        if got == 0 {
            return Err(std::io::Error::other(format!(
                "connection {i} closed early"
            )));
        }
        seen.extend_from_slice(&scratch[..got]);
    }
    Ok(s)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The sites still holding at least a byte per connection at the end, largest first.
/// A site is named by what was allocated (the first frame naming a type or function of
/// the hub or its libraries) and where in the hub (the first frame in its own sources);
/// what the hub allocated at its start is left out.
fn print_sites(n: usize) -> Result<(), Box<dyn std::error::Error>> {
    let profile: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(PROFILE)?)?;
    let frames: Vec<&str> = profile["ftbl"]
        .as_array()
        .ok_or("no frame table")?
        .iter()
        .map(|f| f.as_str().unwrap_or(""))
        .collect();
    let mut sites: HashMap<String, (u64, u64)> = HashMap::new();
    for pp in profile["pps"].as_array().ok_or("no program points")? {
        let (bytes, blocks) = (
            pp["eb"].as_u64().unwrap_or(0),
            pp["ebk"].as_u64().unwrap_or(0),
        );
        let stack: Vec<&str> = pp["fs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| frames.get(f.as_u64()? as usize).copied())
            .map(|f| f.split_once(": ").map_or(f, |(_, name)| name))
            .collect();
        // The shards, their inboxes and the hub's stats (read above): none per connection.
        let at_start = [
            "Hub::new",
            "Shard::new",
            "HubShared::new",
            "spawn::run",
            "flavors::array::Slot<",
            "HubStats::collect",
            "ShardCounters::snapshot",
        ];
        if stack.iter().any(|f| at_start.iter().any(|s| f.contains(s))) {
            continue;
        }
        let what = stack
            .iter()
            .find(|f| WHAT.iter().any(|k| f.contains(k)))
            .map_or("?", |f| f.split(" (").next().unwrap_or(f));
        let place = stack
            .iter()
            .find(|f| is_hub_source(f))
            .map_or("?".to_owned(), |f| {
                let (func, file) = f.split_once(" (").unwrap_or((f, ""));
                format!("{} in {}", file.trim_end_matches(')'), func)
            });
        let what: String = what.chars().take(110).collect();
        let site = sites
            .entry(format!("{what}\n             at {place}"))
            .or_default();
        site.0 += bytes;
        site.1 += blocks;
    }
    let mut sites: Vec<_> = sites
        .into_iter()
        .filter(|(_, (b, _))| *b >= n as u64)
        .collect();
    sites.sort_by_key(|site| std::cmp::Reverse(site.1 .0));
    println!("live at the end, per connection, by site (at least 1 B per connection):");
    for (site, (bytes, blocks)) in sites {
        println!(
            "  {:>6.1} B {:>5.2} blocks  {site}",
            bytes as f64 / n as f64,
            blocks as f64 / n as f64
        );
    }
    Ok(())
}

/// Names in a frame that say what is allocated.
const WHAT: &[&str] = &[
    "neonex::",
    "monoio::",
    "dashmap::",
    "indexmap::",
    "slab::",
    "reserve_rehash<",
    "hashbrown::map::HashMap<",
];

/// A frame in the hub's own sources: its file is under `src/` here (`lib.rs` is every
/// crate's, so it does not count).
fn is_hub_source(frame: &str) -> bool {
    let Some((_, place)) = frame.split_once(" (src/") else {
        return false;
    };
    let file = place.split(':').next().unwrap_or("");
    file != "lib.rs"
        && std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src")
            .join(file)
            .is_file()
}
