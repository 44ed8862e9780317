//! The proxy thread: one OS thread with a current-thread tokio runtime, running hyper's
//! HTTP/1.1 client with its keep-alive pool, so that the shards' monoio runtimes never
//! carry a tokio client, and a slow backend costs them nothing.
//!
//! Calls come in through a bounded queue. The loop takes a call only when one of the
//! bounded number of request slots is free, so a backend that stalls fills the slots,
//! then the queue, and then callers are refused at once (`Busy`) instead of anything
//! growing. A call whose deadline passed while it waited is not made.
//!
//! Every call completes exactly once: its [`Pending`] completes it with `Unreachable`
//! if it is dropped unanswered, which is what stopping does to the calls still queued
//! or in flight when the runtime goes away.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::header::CONTENT_TYPE;
use hyper::{Request, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

use super::hook::{Failure, Hook, Outcome};
use super::stats::Counters;
use super::verdicts::well_formed;

/// The longest answer read; a backend's verdict is a small JSON object, and a longer one
/// is a `bad_answer`, not memory taken from the hub.
const MAX_ANSWER: usize = 1024 * 1024;

/// How long an idle connection to the backend is kept for the next call.
const IDLE_KEPT: Duration = Duration::from_secs(60);

/// How many calls may wait, and how many may be in flight at once.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    pub queue: usize,
    pub in_flight: usize,
}

impl Default for Bounds {
    fn default() -> Self {
        Self {
            queue: 16 * 1024,
            in_flight: 1024,
        }
    }
}

/// A call on its way to the backend.
pub(super) struct Call {
    pub hook: Hook,
    pub body: Vec<u8>,
    pub deadline: Instant,
    pub pending: Pending,
}

/// The caller's completion, run exactly once: by [`Pending::finish`], or with
/// `Unreachable` when dropped unanswered.
pub(super) struct Pending {
    hook: Hook,
    done: Option<Box<dyn FnOnce(Outcome) + Send>>,
    counters: Arc<Counters>,
}

impl Pending {
    pub fn new(hook: Hook, done: Box<dyn FnOnce(Outcome) + Send>, counters: Arc<Counters>) -> Self {
        Self {
            hook,
            done: Some(done),
            counters,
        }
    }

    pub fn finish(mut self, outcome: Outcome) {
        self.complete(outcome);
    }

    fn complete(&mut self, outcome: Outcome) {
        if let Some(done) = self.done.take() {
            if let Outcome::Failed(failure) = outcome {
                self.counters.count_failure(self.hook, failure);
            }
            done(outcome);
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.complete(Outcome::Failed(Failure::Unreachable));
    }
}

/// What the thread needs to serve calls.
pub(super) struct Setup {
    /// Each hook's URL, indexed by `hook as usize`.
    pub urls: [Option<Uri>; Hook::ALL.len()],
    pub timeout: Duration,
    pub bounds: Bounds,
    pub calls: mpsc::Receiver<Call>,
    pub stopping: watch::Receiver<bool>,
    pub counters: Arc<Counters>,
}

/// Starts the thread `neonex-proxy`, serving calls until it is stopped or every sender
/// of calls is gone.
pub(super) fn spawn(setup: Setup) -> std::io::Result<JoinHandle<()>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("neonex-proxy".into())
        .spawn(move || {
            runtime.block_on(serve(setup));
            // Dropping the runtime drops the requests still in flight, whose callers
            // then hear `Unreachable`.
            drop(runtime);
        })
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

async fn serve(setup: Setup) {
    let Setup {
        urls,
        timeout,
        bounds,
        mut calls,
        mut stopping,
        counters,
    } = setup;
    let client = http_client(bounds.in_flight);
    let slots = Arc::new(Semaphore::new(bounds.in_flight));
    loop {
        // A slot first, then a call: calls wait in the bounded queue, not in tasks.
        let slot = tokio::select! {
            biased;
            _ = stopping.wait_for(|stop| *stop) => break,
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let call = tokio::select! {
            biased;
            _ = stopping.wait_for(|stop| *stop) => break,
            call = calls.recv() => match call {
                Some(call) => call,
                None => break,
            },
        };
        if call.deadline <= Instant::now() {
            call.pending.finish(Outcome::Failed(Failure::Timeout));
            continue;
        }
        let url = urls[call.hook as usize]
            .clone()
            .expect("calls are only queued for hooks with a URL");
        tokio::spawn(make(
            call,
            client.clone(),
            url,
            timeout,
            counters.clone(),
            slot,
        ));
    }
}

fn http_client(in_flight: usize) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(IDLE_KEPT)
        .pool_max_idle_per_host(in_flight)
        .build(connector)
}

/// Makes one call within `min(timeout, deadline - now)`, then frees its slot and
/// completes it.
async fn make(
    call: Call,
    client: HttpClient,
    url: Uri,
    timeout: Duration,
    counters: Arc<Counters>,
    slot: OwnedSemaphorePermit,
) {
    let Call {
        hook,
        body,
        deadline,
        pending,
    } = call;
    let started = Instant::now();
    let budget = timeout.min(deadline.saturating_duration_since(started));
    let outcome = tokio::time::timeout(budget, exchange(&client, url, hook, body))
        .await
        .unwrap_or(Outcome::Failed(Failure::Timeout));
    counters.record_latency(hook, started.elapsed());
    drop(slot);
    pending.finish(outcome);
}

/// One `POST` and its answer, read whole so that the connection goes back to the pool.
async fn exchange(client: &HttpClient, url: Uri, hook: Hook, body: Vec<u8>) -> Outcome {
    let request = Request::post(url)
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("a URL checked with the configuration and a fixed header");
    let response = match client.request(request).await {
        Ok(response) => response,
        Err(_) => return Outcome::Failed(Failure::Unreachable),
    };
    let status = response.status().as_u16();
    let answer = Limited::new(response.into_body(), MAX_ANSWER)
        .collect()
        .await;
    if status >= 500 {
        return Outcome::Failed(Failure::ServerError(status));
    }
    let body = match answer {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return Outcome::Failed(Failure::BadAnswer)
        }
        Err(_) => return Outcome::Failed(Failure::Unreachable),
    };
    if status == 200 && !well_formed(hook, &body) {
        return Outcome::Failed(Failure::BadAnswer);
    }
    Outcome::Answered { status, body }
}
