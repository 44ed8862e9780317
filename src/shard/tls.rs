//! One connection's TLS session, driven over the shard's own buffers.
//!
//! rustls does no I/O here. The reader hands it what the socket gave the shard's read
//! buffer and takes the plaintext out into the shard's plaintext buffer, which then goes
//! the way a plain connection's bytes go (HTTP request, then frames). The flusher seals
//! the connection's queued frames into records and writes those to the socket. So a TLS
//! connection reads and writes in the same passes and with the same bounds as a plain
//! one, and a plain one pays only for the empty `Option` that would hold this.

use std::io::{self, IoSlice, Read, Write};
use std::os::fd::RawFd;
use std::sync::Arc;

use rustls::{ServerConfig, ServerConnection};

use super::outbound::{Outbound, Written};
use super::sys;

/// Most sealed bytes (and, during the handshake, plaintext) the session holds for the
/// socket. Past it, frames wait in the connection's queue, where its bounds apply.
const SEALED_LIMIT: usize = 32 * 1024;

/// What a pass of decryption gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decrypted {
    /// Plaintext bytes at the front of the buffer.
    pub len: usize,
    /// The client closed its side of the session (`close_notify`): no more will come.
    pub ended: bool,
    /// The buffer filled before everything received was decrypted: call again.
    pub more: bool,
}

/// The session failed: a protocol error, or a client that is not speaking TLS. An alert
/// may be waiting to be sent ([`TlsSession::send_alert`]).
#[derive(Debug)]
pub(crate) struct Failed(pub String);

pub(crate) struct TlsSession {
    conn: ServerConnection,
    /// `close_notify` is sealed: nothing more can be.
    closed: bool,
}

impl TlsSession {
    pub fn new(config: Arc<ServerConfig>) -> Result<TlsSession, rustls::Error> {
        let mut conn = ServerConnection::new(config)?;
        conn.set_buffer_limit(Some(SEALED_LIMIT));
        Ok(TlsSession {
            conn,
            closed: false,
        })
    }

    /// Takes in what the socket gave (`received`, consumed as far as this goes) and puts
    /// the plaintext in `plain`. Handshake records it must answer make
    /// [`TlsSession::wants_write`] true.
    pub fn decrypt(&mut self, received: &mut &[u8], plain: &mut [u8]) -> Result<Decrypted, Failed> {
        let mut len = 0;
        loop {
            // What was decrypted is taken first: rustls refuses to read more while its
            // own plaintext buffer is full.
            while len < plain.len() {
                match self.conn.reader().read(&mut plain[len..]) {
                    Ok(0) => return Ok(Decrypted::ended(len)),
                    Ok(n) => len += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => return Ok(Decrypted::ended(len)),
                }
            }
            if len == plain.len() {
                return Ok(Decrypted {
                    len,
                    ended: false,
                    more: true,
                });
            }
            // An empty read would tell rustls the stream has ended.
            if received.is_empty() {
                return Ok(Decrypted {
                    len,
                    ended: false,
                    more: false,
                });
            }
            match self.conn.read_tls(received) {
                Ok(0) => return Ok(Decrypted::ended(len)),
                Ok(_) => {}
                Err(e) => return Err(Failed(e.to_string())),
            }
            if let Err(e) = self.conn.process_new_packets() {
                return Err(Failed(e.to_string()));
            }
        }
    }

    /// True while sealed records wait for the socket.
    pub fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// Sends what waits, an alert after a failure included, as far as the socket takes
    /// it now: the connection is about to be dropped.
    pub fn send_alert(&mut self, fd: RawFd) {
        while self.conn.wants_write() {
            if self.conn.write_tls(&mut Socket(fd)).is_err() {
                return;
            }
        }
    }

    /// Seals what `out` has queued into records and writes them to `fd`, until both are
    /// empty or the socket is full. `closing`: once everything is written, the session
    /// is closed with `close_notify`, so that the client tells the end of the stream
    /// from a cut. Counts the socket's calls and the sealed bytes it took.
    pub fn write(&mut self, out: &mut Outbound, fd: RawFd, closing: bool) -> io::Result<Written> {
        let mut written = Written {
            calls: 0,
            bytes: 0,
            drained: false,
        };
        loop {
            // Records already sealed go first, handshake messages among them.
            while self.conn.wants_write() {
                written.calls += 1;
                match self.conn.write_tls(&mut Socket(fd)) {
                    Ok(n) => written.bytes += n as u64,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(written),
                    Err(e) => return Err(e),
                }
            }
            if out.is_empty() {
                if closing && !self.closed {
                    self.conn.send_close_notify();
                    self.closed = true;
                    continue;
                }
                written.drained = true;
                return Ok(written);
            }
            // Seals as much as the session's limit allows; the rest of the queue waits
            // until the socket has taken these records.
            let mut writer = self.conn.writer();
            let sealed = out.write_with(|slices| writer.write_vectored(slices))?;
            if sealed.bytes == 0 && !self.conn.wants_write() {
                // Nothing could be sealed, nor is anything waiting to make room.
                return Ok(written);
            }
        }
    }
}

impl Decrypted {
    fn ended(len: usize) -> Decrypted {
        Decrypted {
            len,
            ended: true,
            more: false,
        }
    }
}

/// The connection's socket as rustls writes to it: never blocking, many records in one
/// call.
struct Socket(RawFd);

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        sys::send_vectored(self.0, &[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        sys::send_vectored(self.0, bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
