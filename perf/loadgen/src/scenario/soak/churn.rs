//! Churn: clients that come and go all through the load, at a steady rate. Each one joins
//! two chat rooms and a room of its own (made by its join, removed when it goes), says
//! one thing in each, waits for its own copies, listens a moment, leaves one chat room,
//! and closes with the closing handshake. It joins late, so it checks each stream from the
//! first message it finds, and the rooms' offsets from its `joined` on.

use std::rc::Rc;
use std::sync::Arc;

use tokio::time::{sleep_until, timeout_at, Instant};

use super::session::{RoomSpec, Session};
use super::shared::{bump, Phase};
use super::{Ctx, WorkerEnv};

/// Starts this worker's share of the churn clients (every `threads`-th, from `w`) on
/// schedule until the load ends, then waits for those still running.
pub async fn run(ctx: Arc<Ctx>, env: Rc<WorkerEnv>, w: usize) {
    let cfg = &ctx.cfg;
    if cfg.churn_rate <= 0.0 {
        return;
    }
    let interval = std::time::Duration::from_secs_f64(1.0 / cfg.churn_rate);
    let mut rounds = Vec::new();
    let mut k = w;
    while ctx.shared.phase() == Phase::Load {
        sleep_until(ctx.shared.load_start() + interval * k as u32).await;
        if ctx.shared.phase() != Phase::Load {
            break;
        }
        bump(&ctx.shared.churn_started);
        rounds.push(tokio::task::spawn_local(round(ctx.clone(), env.clone(), k)));
        rounds.retain(|t| !t.is_finished());
        k += cfg.threads;
    }
    for r in rounds {
        let _ = r.await;
    }
}

/// One churn client's visit.
async fn round(ctx: Arc<Ctx>, env: Rc<WorkerEnv>, k: usize) {
    let cfg = &ctx.cfg;
    let rooms = cfg.chat_rooms;
    let (a, b) = (k * 7 % rooms, (k * 7 + rooms / 2) % rooms);
    let specs = vec![
        cfg.chat_room(a),
        cfg.chat_room(b),
        RoomSpec {
            name: format!("{}-own-{k}", cfg.user_prefix),
            tally: None,
        },
    ];
    let user = format!("{}-k{k}", cfg.user_prefix);
    let result = visit(&ctx, &env, &user, specs, k as u64).await;
    match result {
        Ok(s) => s.finish(&ctx, &env.scratch).await,
        Err(e) => ctx.shared.failures.churn(|| format!("{user}: {e}")),
    }
    bump(&ctx.shared.churn_done);
}

async fn visit(
    ctx: &Ctx,
    env: &WorkerEnv,
    user: &str,
    rooms: Vec<RoomSpec>,
    seed: u64,
) -> Result<Session, String> {
    let cfg = &ctx.cfg;
    let scratch = &env.scratch;
    let mut s = Session::open(ctx, scratch, user, rooms, false, seed).await?;
    for i in 0..s.room_count() {
        s.queue_chat(ctx, i, cfg.chat_bytes);
    }
    s.conn.flush().await.map_err(|e| format!("send: {e}"))?;
    let deadline = Instant::now() + cfg.join_timeout;
    while s.unacked > 0 {
        timeout_at(deadline, s.read(ctx, scratch))
            .await
            .map_err(|_| format!("{} own messages not echoed in time", s.unacked))?
            .map_err(|c| format!("closed before its echoes: {c}"))?;
    }
    let until = Instant::now() + cfg.churn_hold;
    while let Ok(read) = timeout_at(until, s.read(ctx, scratch)).await {
        read.map_err(|c| format!("closed while listening: {c}"))?;
    }
    s.leave(ctx, scratch, 0).await?;
    if let Some(e) = &s.error {
        return Err(format!("error from the hub: {e}"));
    }
    Ok(s)
}
