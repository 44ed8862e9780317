//! Stalled readers: clients in the fan-out room that stop reading. The hub must cut each
//! one as a slow consumer (close 1008 "slow consumer") while everyone else keeps
//! receiving; then it reconnects and stalls again, all through the load.
//!
//! A stalled client cannot see its cut without reading, and reading un-stalls it. So it
//! waits for the hub's count of cuts (`/stats` `slow_consumers`, read each second by the
//! orchestrating thread): stalls take tickets in the order they begin, and the hub cuts
//! stalled readers in that order, since they all fall behind on the same frames. The
//! stall with ticket `t` reads again once the hub has counted more than `t` cuts, with a
//! wide receive buffer, and expects to find its close frame. The hub keeps the close frame
//! queued for `hub.write_timeout` (10 s), far longer than this takes.

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpSocket;
use tokio::time::{sleep, timeout, timeout_at, Instant};

use super::session::{RoomSpec, Session};
use super::shared::{bump, Phase, Stalls};
use super::{Ctx, WorkerEnv};
use crate::conn::{Closed, Scratch, Stream, WsConn};
use crate::scenario::common::keep_first;

/// Receive buffer while stalled: the TCP window closes after a few KiB.
const STALLED_RCVBUF: u32 = 4096;
/// Receive buffer once reading again: the backlog comes in at once.
const DRAINING_RCVBUF: usize = 8 << 20;
/// How long a stall that reads again waits for its close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(3);

/// What a stall came to.
enum Outcome {
    /// Close 1008 "slow consumer".
    Cut,
    /// The connection ended otherwise.
    Ended(String),
    /// No close came: the connection was not cut.
    Open,
}

/// Runs stalled reader `i` from the start to the end of the load.
pub async fn run(ctx: Arc<Ctx>, env: Rc<WorkerEnv>, i: usize) {
    let mut phase = ctx.shared.phase.subscribe();
    if phase.wait_for(|p| *p >= Phase::Load).await.is_err() {
        return;
    }
    let user = format!("{}-stalled{i}", ctx.cfg.user_prefix);
    let stalls = &ctx.shared.stalls;
    let mut attempt = 0u64;
    while ctx.shared.phase() == Phase::Load {
        attempt += 1;
        let room = RoomSpec {
            name: ctx.cfg.fanout_room.clone(),
            tally: None,
        };
        let seed = (i as u64) << 32 | attempt;
        let s = match open(&ctx, &env.scratch, &user, room, seed).await {
            Ok(s) => s,
            Err(e) => {
                ctx.shared
                    .failures
                    .long_lived(|| format!("{user}: reconnect: {e}"));
                sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut conn = s.conn;
        let ticket = stalls.tickets.fetch_add(1, Ordering::SeqCst);
        // When the load ends, the last stall reads too: the hub may have cut it since
        // its last count, and must then have sent the close frame like any other.
        while stalls.cuts_counted.load(Ordering::SeqCst) <= ticket
            && ctx.shared.phase() == Phase::Load
        {
            sleep(Duration::from_millis(100)).await;
        }
        conn.set_recv_buffer(DRAINING_RCVBUF);
        match read_to_close(&mut conn, &env.scratch).await {
            Outcome::Cut => bump(&stalls.cut_with_close),
            Outcome::Ended(why) => ended_without_close(stalls, &user, why),
            Outcome::Open => bump(&stalls.not_cut),
        }
    }
}

/// Connects with a small receive buffer, set before the connect so that the TCP window
/// starts small, and joins the fan-out room.
async fn open(
    ctx: &Ctx,
    scratch: &Scratch,
    user: &str,
    room: RoomSpec,
    seed: u64,
) -> Result<Session, String> {
    let socket = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
    socket
        .set_recv_buffer_size(STALLED_RCVBUF)
        .map_err(|e| format!("SO_RCVBUF: {e}"))?;
    let connect = socket.connect(ctx.cfg.target.addr.into());
    let tcp = timeout(ctx.cfg.connect_timeout, connect)
        .await
        .map_err(|_| "TCP connect timed out".to_string())?
        .map_err(|e| format!("connect: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
    Session::open_on(
        ctx,
        scratch,
        Stream::Plain(tcp),
        user,
        vec![room],
        false,
        seed,
    )
    .await
}

fn ended_without_close(stalls: &Stalls, user: &str, why: String) {
    bump(&stalls.cut_without_close);
    keep_first(&stalls.first_without_close, || format!("{user}: {why}"));
}

/// Reads everything until the connection ends, or [`CLOSE_WAIT`] passes.
async fn read_to_close(conn: &mut WsConn, scratch: &Scratch) -> Outcome {
    let deadline = Instant::now() + CLOSE_WAIT;
    loop {
        match timeout_at(deadline, conn.read_batch(scratch, |_, _| None)).await {
            Err(_) => return Outcome::Open,
            Ok(Ok(())) => {}
            Ok(Err(Closed::CloseFrame {
                code: Some(1008),
                reason,
            })) if reason == "slow consumer" => return Outcome::Cut,
            Ok(Err(other)) => return Outcome::Ended(other.to_string()),
        }
    }
}
