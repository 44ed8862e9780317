//! The deadline task: gives each open question its default answer when its time is up,
//! so a lost or late answer never leaves a connection waiting.

use std::rc::Rc;
use std::time::{Duration, Instant};

use super::context::Ctx;
use super::rulings::expire;
use super::Shard;

/// The longest sleep between looks: a question asked with a shorter timeout than the one
/// slept for is settled at most this late.
const LONGEST_NAP: Duration = Duration::from_millis(50);

pub(crate) async fn run(shard: Rc<Shard>) {
    loop {
        let next = shard
            .state
            .borrow()
            .deadlines
            .first_key_value()
            .map(|(&(deadline, _), _)| deadline);
        match next {
            None => shard.asked.wait().await,
            Some(deadline) => {
                let now = Instant::now();
                if deadline > now {
                    monoio::time::sleep((deadline - now).min(LONGEST_NAP)).await;
                }
                Ctx::with(&shard, |cx| expire(cx, Instant::now()));
            }
        }
    }
}
