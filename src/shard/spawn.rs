//! A shard's thread: pinned to its core, running its runtime (io_uring, or epoll where
//! the kernel refuses it), its tasks started, and drained at shutdown.

use std::rc::Rc;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::Receiver;
use monoio::{FusionRuntime, LegacyDriver, RuntimeBuilder};

use super::message::ShardMessage;
use super::poller::Poller;
use super::shared::HubShared;
use super::thread::{allowed_cores, mark_shard_thread};
use super::{deadlines, delay, flusher, housekeeping, inbox, lifecycle, poller, reader, Shard};
use crate::config::DriverChoice;

/// Starts every shard, shard `i` with inbox `inboxes[i]`, each pinned to a core of its
/// own where there are enough, and waits until each has built its runtime. If one
/// cannot start, those started are stopped again and the error is returned.
pub(crate) fn start_all(
    shared: &Arc<HubShared>,
    inboxes: Vec<Receiver<ShardMessage>>,
) -> std::io::Result<Vec<JoinHandle<()>>> {
    let cores = allowed_cores();
    let shards = inboxes.len();
    let (started_tx, started_rx) = crossbeam_channel::bounded(shards);
    let mut threads = Vec::with_capacity(shards);
    let mut outcome = Ok(());
    for (index, inbox) in inboxes.into_iter().enumerate() {
        let core = (!cores.is_empty()).then(|| cores[index % cores.len()]);
        match spawn(index, core, shared.clone(), inbox, started_tx.clone()) {
            Ok(thread) => threads.push(thread),
            Err(e) => {
                outcome = Err(e);
                break;
            }
        }
    }
    for _ in 0..threads.len() {
        let started = started_rx
            .recv()
            .unwrap_or_else(|_| Err(std::io::Error::other("a shard thread died while starting")));
        if outcome.is_ok() {
            outcome = started;
        }
    }
    if let Err(e) = outcome {
        for shard in 0..shards {
            let _ = shared.post(shard, ShardMessage::Shutdown);
        }
        for thread in threads {
            let _ = thread.join();
        }
        return Err(e);
    }
    Ok(threads)
}

/// Starts shard `index` on its own thread. `started` receives the outcome of building the
/// runtime, so the hub can fail cleanly if it cannot.
fn spawn(
    index: usize,
    core: Option<usize>,
    hub: Arc<HubShared>,
    inbox: Receiver<ShardMessage>,
    started: crossbeam_channel::Sender<std::io::Result<()>>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("neonex-shard-{index}"))
        .spawn(move || {
            mark_shard_thread();
            if let Some(core) = core {
                if let Err(e) = monoio::utils::bind_to_cpu_set([core]) {
                    tracing::warn!(shard = index, core, error = %e, "could not pin shard to its core");
                }
            }
            let driver = hub.config.driver;
            // The shard has started once its readiness set is made, within its runtime.
            let run = move |started: crossbeam_channel::Sender<std::io::Result<()>>| async move {
                match Poller::new() {
                    Ok(poller) => {
                        let _ = started.send(Ok(()));
                        run(Rc::new(Shard::new(index, hub, inbox, poller))).await;
                    }
                    Err(e) => {
                        let _ = started.send(Err(e));
                    }
                }
            };
            match driver {
                DriverChoice::Auto => {
                    match RuntimeBuilder::<monoio::FusionDriver>::new()
                        .enable_timer()
                        .build()
                    {
                        Ok(mut rt) => {
                            let name = match &rt {
                                FusionRuntime::Uring(_) => "io_uring",
                                FusionRuntime::Legacy(_) => "epoll",
                            };
                            tracing::info!(shard = index, ?core, driver = name, "shard started");
                            rt.block_on(run(started));
                        }
                        Err(e) => {
                            let _ = started.send(Err(e));
                        }
                    }
                }
                DriverChoice::Epoll => {
                    match RuntimeBuilder::<LegacyDriver>::new().enable_timer().build() {
                        Ok(mut rt) => {
                            tracing::info!(shard = index, ?core, driver = "epoll", "shard started");
                            rt.block_on(run(started));
                        }
                        Err(e) => {
                            let _ = started.send(Err(e));
                        }
                    }
                }
            }
        })
}

/// The shard's main task: starts the others, then waits for shutdown and drains.
pub(crate) async fn run(shard: Rc<Shard>) {
    monoio::spawn(poller::run(shard.clone()));
    monoio::spawn(reader::resume(shard.clone()));
    monoio::spawn(inbox::run(shard.clone()));
    monoio::spawn(flusher::run(shard.clone()));
    monoio::spawn(delay::run(shard.clone()));
    monoio::spawn(housekeeping::run(shard.clone()));
    monoio::spawn(deadlines::run(shard.clone()));
    shard.stopped.wait().await;
    lifecycle::drain_connections(&shard).await;
    tracing::info!(shard = shard.index, "shard stopped");
}
