//! Pieces the scenarios share: the protocol handshake after the upgrade, connecting and
//! joining one connection, where messages are published (the WebSocket or an HTTP
//! publisher), source addresses, and the orchestrating thread's waits for setup, settling
//! and draining.

use std::cell::RefCell;
use std::io;
use std::net::Ipv4Addr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::clock::now_ns;
use crate::conn::{Closed, Scratch, WsConn};
use crate::http::{self, HttpPublisher};
use crate::protocol::{HubProtocol, Incoming};
use crate::target::Target;

/// Source address of connection `idx` out of `total`: `None` (the kernel's choice, 127.0.0.1)
/// while `total` fits one source address, else 127.0.0.2, 127.0.0.3, ... with
/// `per_source` connections each (each source address has about 28k ephemeral ports).
pub fn source_for(idx: usize, total: usize, per_source: usize) -> Option<Ipv4Addr> {
    (total > per_source).then(|| {
        let k = 2 + idx / per_source;
        Ipv4Addr::new(127, 0, (k >> 8) as u8, k as u8)
    })
}

/// Keeps the first of several texts (first failure, first error, ...).
pub fn keep_first(slot: &Mutex<Option<String>>, text: impl FnOnce() -> String) {
    let mut guard = slot.lock().unwrap_or_else(|e| e.into_inner());
    if guard.is_none() {
        *guard = Some(text());
    }
}

/// The text kept by [`keep_first`], if any.
pub fn first(slot: &Mutex<Option<String>>) -> Option<String> {
    slot.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Sleeps the orchestrating (non-async) thread.
pub fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// How far the connections got with connecting and joining.
#[derive(Default)]
pub struct SetupProgress {
    /// Connections that joined.
    pub ready: AtomicUsize,
    /// Connections that failed to.
    pub failed: AtomicUsize,
    /// Why the first of them failed.
    pub first_failure: Mutex<Option<String>>,
}

impl SetupProgress {
    /// Counts a connection that joined.
    pub fn joined(&self) {
        self.ready.fetch_add(1, Ordering::SeqCst);
    }

    /// Counts a connection that failed, keeping the first reason.
    pub fn fail(&self, why: String) {
        self.failed.fetch_add(1, Ordering::SeqCst);
        keep_first(&self.first_failure, || why);
    }
}

/// Waits (on the orchestrating thread) until all `expected` connections joined, started at
/// `setup_start` (ns). Fails at the first failed connection or after `timeout`; `noun` names
/// one connection in the messages (`client`, `connection`).
pub fn wait_for_setup(
    progress: &SetupProgress,
    expected: usize,
    noun: &str,
    setup_start: u64,
    timeout: Duration,
) -> Result<(), String> {
    loop {
        sleep_ms(5);
        let failed = progress.failed.load(Ordering::SeqCst);
        if failed > 0 {
            let why = first(&progress.first_failure).unwrap_or_default();
            return Err(format!("setup failed ({failed} {noun}(s)): {why}"));
        }
        let ready = progress.ready.load(Ordering::SeqCst);
        if ready == expected {
            return Ok(());
        }
        if now_ns() - setup_start > timeout.as_nanos() as u64 {
            return Err(format!(
                "setup took more than {timeout:?}: {ready} of {expected} {noun}s joined"
            ));
        }
    }
}

/// Waits (on the orchestrating thread) for the join and presence notices to stop: true once
/// nothing arrived for `quiet` (`last_frame_ns` is when the latest frame counted came), false
/// with a warning when `what` kept arriving until `max` after `ready_at`. Fails when `lost`
/// says why a connection was lost meanwhile.
pub fn settle(
    last_frame_ns: &AtomicU64,
    ready_at: u64,
    quiet: Duration,
    max: Duration,
    what: &str,
    lost: impl Fn() -> Option<String>,
) -> Result<bool, String> {
    let quiet = quiet.as_nanos() as u64;
    loop {
        sleep_ms(10);
        let now = now_ns();
        let last = last_frame_ns.load(Ordering::Relaxed).max(ready_at);
        if now.saturating_sub(last) >= quiet {
            return Ok(true);
        }
        if now - ready_at >= max.as_nanos() as u64 {
            eprintln!("loadgen: warning: {what} still arriving after {max:?}; measuring anyway");
            return Ok(false);
        }
        if let Some(why) = lost() {
            return Err(format!("a connection was lost while settling: {why}"));
        }
    }
}

/// Waits (on the orchestrating thread) for late deliveries: true once `unique` reached
/// `expected`, false when `limit` (ns) came first.
pub fn drain(unique: &AtomicU64, expected: u64, limit: u64) -> bool {
    loop {
        if unique.load(Ordering::SeqCst) >= expected {
            return true;
        }
        if now_ns() >= limit {
            return false;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// What ended a connection's wait in its read loop.
pub enum Step {
    /// The run is over.
    Stop,
    /// Measuring starts at this time (ns).
    Go(u64),
    /// A read finished, or the connection closed.
    Read(Result<(), Closed>),
    /// Time for the next message.
    Wake,
}

/// The protocol's own handshake after the upgrade ([`HubProtocol::hello`]): sends the hello
/// and reads until the server says [`Incoming::Ready`]. Does nothing for protocols without
/// one.
pub async fn handshake<P: HubProtocol>(
    proto: &P,
    conn: &mut WsConn,
    scratch: &Scratch,
    deadline: Instant,
) -> Result<(), String> {
    let Some(hello) = proto.hello() else {
        return Ok(());
    };
    conn.queue_text(hello);
    conn.flush()
        .await
        .map_err(|e| format!("send handshake: {e}"))?;
    loop {
        let (mut ready, mut refused) = (false, None);
        let read = conn.read_batch(scratch, |text, _| match proto.classify(text) {
            Incoming::Ready => {
                ready = true;
                None
            }
            Incoming::Reply(reply) => Some(reply),
            Incoming::Error { text } => {
                refused = Some(String::from_utf8_lossy(text).into_owned());
                None
            }
            _ => None,
        });
        tokio::time::timeout_at(deadline, read)
            .await
            .map_err(|_| "no answer to the protocol handshake in time".to_string())?
            .map_err(|c| format!("closed during the protocol handshake: {c}"))?;
        if let Some(why) = refused {
            return Err(format!("protocol handshake refused: {why}"));
        }
        if ready {
            return Ok(());
        }
    }
}

/// How to open one connection.
#[derive(Debug, Clone)]
pub struct Dial {
    /// Where.
    pub target: Target,
    /// The room to join.
    pub room: String,
    /// Connect + upgrade must finish within this.
    pub connect_timeout: Duration,
    /// Handshake + join must finish within this (after the upgrade).
    pub join_timeout: Duration,
    /// Largest server message accepted.
    pub max_message: usize,
}

/// A connection that joined its room.
pub struct Member {
    /// The connection.
    pub conn: WsConn,
    /// From the start of the connect to the upgrade response, ns.
    pub upgraded_ns: u64,
    /// From the start of the connect to `joined`, ns.
    pub joined_ns: u64,
    /// Non-chat frames received while joining.
    pub noise: u64,
}

/// Connects (from `source`), upgrades, does the protocol handshake, joins the room and
/// waits for the server's confirmation.
pub async fn connect_and_join<P: HubProtocol>(
    proto: &P,
    dial: &Dial,
    user: &str,
    source: Option<Ipv4Addr>,
    scratch: &Scratch,
    seed: u64,
) -> Result<Member, String> {
    connect_member(proto, dial, user, source, scratch, seed, true).await
}

/// [`connect_and_join`], or without `join` only connect, upgrade and handshake: the
/// connection is in no room (unless its protocol joins on the upgrade).
pub async fn connect_member<P: HubProtocol>(
    proto: &P,
    dial: &Dial,
    user: &str,
    source: Option<Ipv4Addr>,
    scratch: &Scratch,
    seed: u64,
    join: bool,
) -> Result<Member, String> {
    let started = now_ns();
    let timeout = dial.connect_timeout;
    let deadline = Instant::now() + timeout;
    let stream = tokio::time::timeout_at(deadline, WsConn::connect(&dial.target, source))
        .await
        .map_err(|_| format!("TCP connect (and TLS handshake) took more than {timeout:?}"))??;
    let request_target = proto.request_target(&dial.target, user, &dial.room);
    let upgrade = WsConn::upgrade(
        stream,
        &dial.target,
        &request_target,
        dial.max_message,
        seed,
        false,
    );
    let mut conn = tokio::time::timeout_at(deadline, upgrade)
        .await
        .map_err(|_| format!("no upgrade response within {timeout:?} of connecting"))??;
    let upgraded_ns = now_ns().saturating_sub(started).max(1);
    let deadline = Instant::now() + dial.join_timeout;
    handshake(proto, &mut conn, scratch, deadline).await?;
    let mut noise = 0;
    if join && !proto.joins_on_upgrade() {
        let mut join = Vec::new();
        proto.encode_join(&dial.room, &mut join);
        conn.queue_text(&join);
        conn.flush().await.map_err(|e| format!("send join: {e}"))?;
        loop {
            let (mut joined, mut refused) = (false, None);
            let read = conn.read_batch(scratch, |text, _| {
                match proto.classify(text) {
                    Incoming::Joined { room } if room == dial.room => joined = true,
                    Incoming::Reply(reply) => return Some(reply),
                    Incoming::Error { text } => {
                        refused = Some(String::from_utf8_lossy(text).into_owned())
                    }
                    _ => noise += 1,
                }
                None
            });
            tokio::time::timeout_at(deadline, read)
                .await
                .map_err(|_| format!("not joined within {:?}", dial.join_timeout))?
                .map_err(|c| format!("closed before joining: {c}"))?;
            if let Some(why) = refused {
                return Err(format!("join refused: {why}"));
            }
            if joined {
                break;
            }
        }
    }
    Ok(Member {
        conn,
        upgraded_ns,
        joined_ns: now_ns().saturating_sub(started).max(1),
        noise,
    })
}

/// Where a publisher's messages go.
pub enum Sink {
    /// Text messages on its WebSocket.
    Ws,
    /// `POST`s on an HTTP keep-alive connection of its own (nchan).
    Http {
        /// The writing side.
        publisher: HttpPublisher,
        /// Why the answer reader stopped, if it did before the end of the run.
        failure: Rc<RefCell<Option<String>>>,
    },
}

impl Sink {
    /// Queues one message with text `text` (`payload` is scratch space).
    pub fn queue<P: HubProtocol>(
        &mut self,
        proto: &P,
        conn: &mut WsConn,
        room: &str,
        text: &str,
        payload: &mut Vec<u8>,
    ) {
        match self {
            Sink::Ws => {
                payload.clear();
                proto.encode_publish(room, text, payload);
                conn.queue_text(payload);
            }
            Sink::Http { publisher, .. } => publisher.queue_post(text.as_bytes()),
        }
    }

    /// Writes everything queued.
    pub async fn flush(&mut self, conn: &mut WsConn) -> io::Result<()> {
        match self {
            Sink::Ws => conn.flush().await,
            Sink::Http { publisher, .. } => publisher.flush().await,
        }
    }

    /// Why the HTTP answer reader gave up, if it did.
    pub fn failure(&self) -> Option<String> {
        match self {
            Sink::Ws => None,
            Sink::Http { failure, .. } => failure.borrow().clone(),
        }
    }
}

/// Opens an HTTP publisher to `path` and starts a local task that reads its answers (calling
/// `on_response(status, body)` for each) until `stop` turns true. Call on a worker thread.
pub async fn http_sink(
    target: &Target,
    path: &str,
    source: Option<Ipv4Addr>,
    stop: &watch::Receiver<bool>,
    on_response: impl FnMut(u16, &[u8]) + 'static,
) -> Result<Sink, String> {
    let connect = http::connect(target, path, source);
    let (publisher, responses) = tokio::time::timeout(Duration::from_secs(5), connect)
        .await
        .map_err(|_| "HTTP publisher: connect took more than 5 s".to_string())??;
    let failure = Rc::new(RefCell::new(None));
    let failed = failure.clone();
    let mut stop = stop.clone();
    tokio::task::spawn_local(async move {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => {}
            why = responses.run(on_response) => *failed.borrow_mut() = Some(why),
        }
    });
    Ok(Sink::Http { publisher, failure })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources() {
        assert_eq!(source_for(0, 100, 25_000), None);
        assert_eq!(
            source_for(0, 30_000, 25_000),
            Some(Ipv4Addr::new(127, 0, 0, 2))
        );
        assert_eq!(
            source_for(25_000, 30_000, 25_000),
            Some(Ipv4Addr::new(127, 0, 0, 3))
        );
        assert_eq!(
            source_for(254 * 1000, 300_000, 1000),
            Some(Ipv4Addr::new(127, 0, 1, 0))
        );
    }
}
