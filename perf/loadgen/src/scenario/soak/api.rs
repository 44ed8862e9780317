//! API publishes: `POST /api/rooms/{room}/publish` at a steady rate, from loopback without
//! a key, to the fan-out room and the chat rooms in turn. Each body carries a stamp, so
//! the rooms' members check publications as they check chat messages.
//!
//! The hub answers each call and closes its connection; publishes go one after another,
//! each waiting for its answer, because the API promises no order between calls that
//! overlap.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{sleep_until, timeout};

use super::inbox::Stamp;
use super::shared::{bump, Phase};
use super::wire::publication_body;
use super::Ctx;

/// Longest a publish may take, connect to answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest answer read.
const MAX_ANSWER: usize = 64 * 1024;

/// Publishes on schedule until the load ends.
pub async fn run(ctx: Arc<Ctx>) {
    let cfg = &ctx.cfg;
    let shared = &ctx.shared;
    if cfg.api_rate <= 0.0 {
        return;
    }
    // Fan-out room first, then the chat rooms: one stream of this publisher per room.
    let targets: Vec<_> = std::iter::once(cfg.fanout_spec())
        .chain((0..cfg.chat_rooms).map(|r| cfg.chat_room(r)))
        .map(|spec| (spec, shared.new_stream(), 0u64))
        .collect();
    let mut targets = targets;
    let interval = Duration::from_secs_f64(1.0 / cfg.api_rate);
    let mut k = 0u32;
    while shared.phase() == Phase::Load {
        sleep_until(shared.load_start() + interval * k).await;
        if shared.phase() != Phase::Load {
            break;
        }
        // Every other publish goes to the fan-out room, the rest to the chat rooms in turn.
        let t = if k % 2 == 0 {
            0
        } else {
            1 + (k as usize / 2) % cfg.chat_rooms
        };
        k += 1;
        let (spec, stream, seq) = &mut targets[t];
        let stamp = Stamp {
            stream: *stream,
            seq: *seq,
        };
        let path = format!("/api/rooms/{}/publish", spec.name);
        shared.api_in_flight.fetch_add(1, Ordering::SeqCst);
        let answer = timeout(CALL_TIMEOUT, post(&ctx, &path, &publication_body(stamp))).await;
        match answer {
            Ok(Ok((200, _))) => {
                *seq += 1;
                bump(&shared.sent.api_acked);
                if let Some(tally) = spec.tally {
                    shared.rooms[tally].sent.fetch_add(1, Ordering::SeqCst);
                }
            }
            Ok(Ok((status, body))) => shared
                .failures
                .api(|| format!("POST {path}: {status} {body}")),
            Ok(Err(e)) => shared.failures.api(|| format!("POST {path}: {e}")),
            Err(_) => shared
                .failures
                .api(|| format!("POST {path}: no answer within {CALL_TIMEOUT:?}")),
        }
        shared.api_in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One `POST` with a JSON body on a connection of its own: the status and the body.
async fn post(ctx: &Ctx, path: &str, body: &str) -> Result<(u16, String), String> {
    let target = &ctx.cfg.target;
    let mut stream = TcpStream::connect(target.addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        target.host_header,
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut answer = Vec::new();
    (&mut stream)
        .take(MAX_ANSWER as u64)
        .read_to_end(&mut answer)
        .await
        .map_err(|e| format!("read: {e}"))?;
    parse_answer(&answer)
}

/// The status code and body of an HTTP/1.1 answer.
pub fn parse_answer(answer: &[u8]) -> Result<(u16, String), String> {
    let text = String::from_utf8_lossy(answer);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("incomplete answer {text:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line in {head:?}"))?;
    Ok((status, body.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_answers() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 24\r\n\r\n{\"queued\":3,\"offset\":9}";
        assert_eq!(
            parse_answer(ok).unwrap(),
            (200, "{\"queued\":3,\"offset\":9}".into())
        );
        assert!(parse_answer(b"HTTP/1.1 200 OK\r\n").is_err());
        assert!(parse_answer(b"garbage\r\n\r\n").is_err());
    }
}
