//! A hub run in the test's own process, on an ephemeral loopback port, and the
//! configurations tests start it with.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use neonex::config::LimitsConfig;
use neonex::{ConnectionId, ConnectionInfo, Hub, HubConfig};
use serde_json::{json, Value};

use crate::client::{ws_url, Client};
use crate::wait::{blocking, wait_until_ok, TIMEOUT};

/// The configuration most tests use: two shards (so cross-shard paths are exercised on
/// any machine) and a short shutdown drain.
pub fn config() -> HubConfig {
    HubConfig {
        shards: 2,
        shutdown_timeout: Duration::from_secs(2),
        ..HubConfig::default()
    }
}

/// Rate limits high enough for tests that flood on purpose.
pub fn flood_limits() -> LimitsConfig {
    LimitsConfig {
        messages_per_second: 1_000_000,
        burst: 1_000_000,
        ..Default::default()
    }
}

/// A hub listening on an ephemeral loopback port. Dropping it shuts the hub down on a
/// detached thread, so a test never blocks on the drain of its own clients.
pub struct TestHub {
    pub hub: Hub,
    pub addr: SocketAddr,
}

impl TestHub {
    pub fn start(config: HubConfig) -> TestHub {
        let hub = Hub::new(config).expect("the hub starts");
        let addr = hub.listen("127.0.0.1:0").expect("the hub listens");
        TestHub { hub, addr }
    }

    pub fn default_hub() -> TestHub {
        TestHub::start(config())
    }

    /// `ws://addr/ws?user=USER`, or without `user` when `None`.
    pub fn url(&self, user: Option<&str>) -> String {
        ws_url(self.addr, user)
    }

    /// Connects as `user`, reads the welcome and the `joined` of every auto-joined room.
    pub async fn connect(&self, user: &str) -> Client {
        Client::connect(self.addr, Some(user), &self.hub.config().rooms.autojoin).await
    }

    /// Connects without a `user` parameter.
    pub async fn connect_anonymous(&self) -> Client {
        Client::connect(self.addr, None, &self.hub.config().rooms.autojoin).await
    }

    /// Connects as `user` until the connection lands on `shard`. Connections that land on
    /// another shard are closed again, and the hub is given time to forget them (they
    /// leave `user_joined`/`user_left`/`presence` notices behind on the other clients,
    /// which tests skip by filtering on type, room and user).
    pub async fn connect_on_shard(&self, user: &str, shard: usize) -> Client {
        for _ in 0..64 {
            let client = self.connect(user).await;
            if client.id.shard() == shard {
                return client;
            }
            let id = client.id;
            client.close().await;
            self.wait_gone(id).await;
        }
        panic!("64 connections in a row for {user:?} missed shard {shard}");
    }

    /// `Hub::connection`, which waits for the owning shard, off the runtime.
    pub async fn connection(&self, id: ConnectionId) -> Option<ConnectionInfo> {
        self.blocking(move |hub| hub.connection(id)).await
    }

    /// Waits until the hub no longer knows connection `id`.
    pub async fn wait_gone(&self, id: ConnectionId) {
        let deadline = Instant::now() + TIMEOUT;
        while self.connection(id).await.is_some() {
            assert!(
                Instant::now() < deadline,
                "timed out after {TIMEOUT:?} waiting for connection {id} to be gone"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until the hub counts exactly `n` open connections.
    pub async fn wait_connections(&self, n: usize) {
        let hub = self.hub.clone();
        let mut last = 0;
        let ok = wait_until_ok(TIMEOUT, || {
            last = hub.connection_count();
            last == n
        })
        .await;
        assert!(ok, "connection_count stayed at {last}, expected {n}");
    }

    /// Runs a hub call that may block (join_room, leave_room, close) off the runtime.
    pub async fn blocking<R, F>(&self, f: F) -> R
    where
        F: FnOnce(Hub) -> R + Send + 'static,
        R: Send + 'static,
    {
        let hub = self.hub.clone();
        blocking(move || f(hub)).await
    }

    /// Broadcasts a unique marker through the hub and has every client read up to it.
    /// Returns, per client, the messages that arrived before the marker. Messages a shard
    /// published before this call reach the clients before the marker.
    pub async fn barrier(&self, clients: &mut [&mut Client]) -> Vec<Vec<Value>> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let marker = json!({"type": "test_barrier", "n": n});
        let m = marker.clone();
        self.blocking(move |hub| hub.broadcast_json(&m))
            .await
            .expect("barrier broadcast");
        let mut seen = Vec::new();
        for client in clients.iter_mut() {
            seen.push(client.read_until_value(&marker).await);
        }
        seen
    }
}

impl Drop for TestHub {
    fn drop(&mut self) {
        let hub = self.hub.clone();
        std::thread::spawn(move || hub.close());
    }
}

/// Opens connections until there are at least `min` and at least one on each of the
/// hub's shards; users are `{prefix}{i}`. All are kept.
pub async fn connect_spread(hub: &TestHub, prefix: &str, min: usize) -> Vec<Client> {
    let shards = hub.hub.shard_count();
    let mut clients: Vec<Client> = Vec::new();
    for i in 0..64 {
        let covered = (0..shards).all(|s| clients.iter().any(|c| c.id.shard() == s));
        if clients.len() >= min && covered {
            return clients;
        }
        clients.push(hub.connect(&format!("{prefix}{i}")).await);
    }
    panic!("64 connections did not cover all {shards} shards");
}

/// This process's resident set size, in KiB: the hub under test runs in it.
pub fn vm_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmRSS line in /proc/self/status")
}
