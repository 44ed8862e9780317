//! Accepting connections on this shard's listener.
//!
//! Every shard binds its own listener on the same address with `SO_REUSEPORT`: the kernel
//! spreads new connections across the shards by a hash of their addresses, so accepting
//! needs no hand-off between threads and a connection lives and dies on the shard that
//! accepted it.

use std::rc::Rc;
use std::time::Duration;

use monoio::io::CancelHandle;
use monoio::net::TcpListener;

use super::context::Ctx;
use super::{lifecycle, Shard};

/// Pause after an accept error (out of descriptors, most likely) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);

/// Starts accepting on `listener` until the shard shuts down.
pub(crate) fn start(shard: &Rc<Shard>, listener: std::net::TcpListener) {
    if shard.is_stopping() {
        return;
    }
    match TcpListener::from_std(listener) {
        Ok(listener) => {
            let cancel = shard.accept_canceller.borrow().handle();
            monoio::spawn(accept_loop(shard.clone(), listener, cancel));
        }
        Err(e) => tracing::error!(shard = shard.index, error = %e, "cannot use listener"),
    }
}

async fn accept_loop(shard: Rc<Shard>, listener: TcpListener, cancel: CancelHandle) {
    loop {
        match listener.cancelable_accept(cancel.clone()).await {
            Ok((stream, remote)) => Ctx::with(&shard, |cx| lifecycle::adopt(cx, stream, remote)),
            Err(_) if shard.is_stopping() => break,
            Err(e) => {
                tracing::warn!(shard = shard.index, error = %e, "accept failed");
                monoio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}
