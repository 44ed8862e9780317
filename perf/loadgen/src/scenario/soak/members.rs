//! The long-lived clients: the chat clients (each in a few of the chat rooms, now and then
//! saying something in one of them), the fan-out room's subscribers and its publisher. They
//! join before the load begins and stay until the end, so each must receive every message
//! published to its rooms, exactly once and in order.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::{sleep_until, Instant};

use super::session::{RoomSpec, Session};
use super::shared::{bump, Phase};
use super::{Ctx, WorkerEnv};

/// How a long-lived client publishes, if it does.
#[derive(Debug, Clone, Copy)]
pub struct Speaking {
    /// One message per this long, to its rooms in turn.
    pub every: Duration,
    /// Its first message this long after the load begins (spreads the chat clients out).
    pub first_after: Duration,
    /// Length of each message text.
    pub bytes: usize,
}

/// One long-lived client.
pub struct Member {
    pub user: String,
    pub rooms: Vec<RoomSpec>,
    pub speaking: Option<Speaking>,
}

/// Runs one long-lived client from setup to the end of the run.
pub async fn run(ctx: Arc<Ctx>, env: Rc<WorkerEnv>, member: Member, seed: u64) {
    let shared = &ctx.shared;
    let mut phase = shared.phase.subscribe();
    let opened = Session::open(&ctx, &env.scratch, &member.user, member.rooms, true, seed).await;
    let mut s = match opened {
        Ok(s) => s,
        Err(e) => {
            return shared
                .failures
                .long_lived(|| format!("{}: {e}", member.user))
        }
    };
    for m in s.tallies() {
        bump(&shared.rooms[m].members);
    }
    bump(&shared.ready);
    let far = Instant::now() + Duration::from_secs(86_400);
    let mut next_send = far;
    let mut turn = 0;
    loop {
        let now_phase = *phase.borrow_and_update();
        if now_phase >= Phase::Close {
            break;
        }
        let speaking = member.speaking.filter(|_| now_phase == Phase::Load);
        if speaking.is_none() {
            next_send = far;
        } else if next_send == far {
            next_send = shared.load_start() + speaking.map_or(Duration::ZERO, |s| s.first_after);
        }
        tokio::select! {
            _ = phase.changed() => {}
            read = s.read(&ctx, &env.scratch) => {
                if let Err(c) = read {
                    shared.add_faults(&s.faults());
                    return shared.failures.long_lived(|| format!("{}: {c}", member.user));
                }
            }
            _ = sleep_until(next_send), if speaking.is_some() => {
                let sp = speaking.expect("speaking");
                s.queue_chat(&ctx, turn % s.room_count(), sp.bytes);
                turn += 1;
                next_send += sp.every;
                if let Err(e) = s.conn.flush().await {
                    shared.add_faults(&s.faults());
                    return shared.failures.long_lived(|| format!("{}: send: {e}", member.user));
                }
            }
        }
    }
    s.finish(&ctx, &env.scratch).await;
}
