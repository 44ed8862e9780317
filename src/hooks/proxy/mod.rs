//! Backend hooks over HTTP (`proxy.*`, PROTOCOL.md "Proxy hooks"): before a connection
//! gets in, before a join or a publish goes ahead, and to answer a client's rpc, the hub
//! `POST`s a JSON object to the backend and acts on its answer.
//!
//! The shards must never wait on a backend, so a call is a message to the proxy thread
//! with a completion: [`Proxy::call`] returns at once, and the completion runs on the
//! proxy thread when the answer comes (or at once, when the call cannot be queued).
//!
//! - [`hook`]: the hooks, and how a call ends ([`Outcome`], [`Failure`]);
//! - [`bodies`]: what each hook is sent;
//! - [`verdicts`]: what each hook's outcome means for the hub;
//! - [`thread`]: the thread with its runtime and HTTP client, and the bounds on calls;
//! - [`stats`]: what is counted, for `/stats` and `/metrics`.

mod bodies;
mod hook;
mod stats;
mod thread;
mod verdicts;

#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, watch};

pub(crate) use bodies::{connect_body, join_body, publish_body, rpc_body};
pub(crate) use hook::{Failure, Hook, Outcome};
pub use stats::{HookLatency, HookStats, ProxyStats};
pub(crate) use thread::Bounds;
pub(crate) use verdicts::{
    connect_verdict, join_verdict, publish_verdict, rpc_verdict, ConnectVerdict, PublishVerdict,
};

use crate::config::ProxyConfig;
use stats::Counters;
use thread::{Call, Pending, Setup};

/// The handle to the proxy thread; clones share it.
#[derive(Clone)]
pub(crate) struct Proxy {
    inner: Arc<Inner>,
}

struct Inner {
    calls: mpsc::Sender<Call>,
    configured: [bool; Hook::ALL.len()],
    counters: Arc<Counters>,
    stopping: watch::Sender<bool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Proxy {
    /// Starts the proxy thread for `config`; `None` when no hook has a URL.
    pub fn start(config: &ProxyConfig) -> std::io::Result<Option<Proxy>> {
        Self::start_with(config, Bounds::default())
    }

    /// [`Proxy::start`] with other bounds on waiting and in-flight calls.
    pub fn start_with(config: &ProxyConfig, bounds: Bounds) -> std::io::Result<Option<Proxy>> {
        if !config.is_on() {
            return Ok(None);
        }
        let mut urls: [Option<hyper::Uri>; Hook::ALL.len()] = Default::default();
        for ((key, url), slot) in config.urls().zip(&mut urls) {
            if let Some(url) = url {
                let uri = url.parse().map_err(|e| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        format!("{key}: {url:?}: {e}"),
                    )
                })?;
                *slot = Some(uri);
            }
        }
        let configured = urls.each_ref().map(Option::is_some);
        let counters = Arc::new(Counters::new(configured));
        let (calls, queue) = mpsc::channel(bounds.queue.max(1));
        let (stopping, stop_seen) = watch::channel(false);
        let thread = thread::spawn(Setup {
            urls,
            timeout: config.timeout,
            bounds: Bounds {
                queue: bounds.queue.max(1),
                in_flight: bounds.in_flight.max(1),
            },
            calls: queue,
            stopping: stop_seen,
            counters: counters.clone(),
        })?;
        Ok(Some(Proxy {
            inner: Arc::new(Inner {
                calls,
                configured,
                counters,
                stopping,
                thread: Mutex::new(Some(thread)),
            }),
        }))
    }

    /// True when `hook` has a URL.
    pub fn has(&self, hook: Hook) -> bool {
        self.inner.configured[hook as usize]
    }

    /// Calls `hook` with `body` (JSON), to be answered by `deadline`. Never blocks.
    /// `done` runs exactly once, on the proxy thread, or at once on the caller's thread
    /// when the call cannot be queued: `Failed(Busy)` when the queue is full,
    /// `Failed(Unreachable)` when the hook has no URL or the proxy has stopped.
    pub fn call(
        &self,
        hook: Hook,
        body: Vec<u8>,
        deadline: Instant,
        done: Box<dyn FnOnce(Outcome) + Send>,
    ) {
        let inner = &self.inner;
        inner.counters.count_call(hook);
        let pending = Pending::new(hook, done, inner.counters.clone());
        if !self.has(hook) {
            pending.finish(Outcome::Failed(Failure::Unreachable));
            return;
        }
        let call = Call {
            hook,
            body,
            deadline,
            pending,
        };
        match inner.calls.try_send(call) {
            Ok(()) => {}
            Err(TrySendError::Full(call)) => call.pending.finish(Outcome::Failed(Failure::Busy)),
            Err(TrySendError::Closed(call)) => {
                call.pending.finish(Outcome::Failed(Failure::Unreachable))
            }
        }
    }

    /// Each configured hook's calls, failures and latency.
    pub fn stats(&self) -> ProxyStats {
        self.inner.counters.snapshot()
    }

    /// Ends the proxy thread; the calls still waiting or in flight complete with
    /// `Failed(Unreachable)`, and later calls at once with the same. Waits for the thread
    /// unless called on it (from a completion). Calling it again does nothing.
    pub fn stop(&self) {
        self.inner.stopping.send_replace(true);
        let thread = self
            .inner
            .thread
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(thread) = thread {
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}
