//! One client WebSocket connection on a tokio `TcpStream`, with batched reads.
//!
//! All connections of a worker thread share one 64 KiB read buffer: a connection waits for
//! readiness, then reads synchronously (`try_read`) into the shared buffer and parses every
//! complete frame in it before the next await. Only the incomplete tail of a read (part of a
//! frame) is copied into the connection's own `pending` buffer, to be put back in front of the
//! next read. So 100k idle connections cost no 64 KiB each.
//!
//! A wss:// connection reads through rustls instead: it decrypts into the same shared
//! buffer, borrowed only while rustls is polled.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, Interest, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;

use crate::clock;
use crate::inflate::{self, Inflater};
use crate::target::Target;
use crate::tls;
use crate::ws::{self, Deflate, Event, FrameReader, Rng, WsError};

/// Bytes read per `read` call.
pub const READ_CHUNK: usize = 64 * 1024;

/// A worker thread's shared read buffer.
pub type Scratch = RefCell<Vec<u8>>;

/// A new scratch buffer.
pub fn new_scratch() -> Scratch {
    RefCell::new(vec![0u8; READ_CHUNK])
}

/// Why a connection stopped.
#[derive(Debug, Clone)]
pub enum Closed {
    /// The server closed TCP without a close frame.
    Eof,
    /// The server sent a close frame.
    CloseFrame {
        /// Close code.
        code: Option<u16>,
        /// Close reason.
        reason: String,
    },
    /// An I/O or protocol error.
    Error(String),
}

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Closed::Eof => write!(f, "connection closed by the server (EOF, no close frame)"),
            Closed::CloseFrame { code, reason } => match code {
                Some(c) => write!(f, "close frame {c} {reason:?}"),
                None => write!(f, "close frame without code"),
            },
            Closed::Error(e) => write!(f, "{e}"),
        }
    }
}

/// Where a connection's compressed messages are inflated.
enum Inflating {
    /// permessage-deflate not negotiated: RSV1 is refused by the frame reader.
    Off,
    /// The server resets its window per message: the worker thread's shared inflater.
    Shared,
    /// The server keeps its window across messages: this connection's own inflater.
    Own(Box<Inflater>),
}

/// A connection's socket: plain TCP (ws://) or TLS over TCP (wss://).
pub enum Stream {
    /// ws://.
    Plain(TcpStream),
    /// wss://; boxed, as rustls' state is some kilobytes.
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref().0,
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A client WebSocket connection.
pub struct WsConn {
    stream: Stream,
    reader: FrameReader,
    pending: Vec<u8>,
    out: Vec<u8>,
    rng: Rng,
    /// We sent a close frame: the server's close frame is its answer, not to be echoed.
    closing: bool,
    deflate: Option<Deflate>,
    inflating: Inflating,
    max_message: usize,
    /// Bytes read from the socket after the upgrade response (frames, headers included).
    bytes_read: u64,
}

impl WsConn {
    /// Opens the TCP connection (from `source` if given). The caller puts a timeout
    /// around this.
    pub async fn tcp_connect(
        target: &Target,
        source: Option<Ipv4Addr>,
    ) -> Result<TcpStream, String> {
        let socket = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
        if let Some(src) = source {
            set_bind_address_no_port(&socket);
            socket
                .bind(SocketAddr::new(src.into(), 0))
                .map_err(|e| format!("bind {src}: {e}"))?;
        }
        let stream = socket
            .connect(target.addr.into())
            .await
            .map_err(|e| format!("connect {}: {e}", target.addr))?;
        stream
            .set_nodelay(true)
            .map_err(|e| format!("nodelay: {e}"))?;
        Ok(stream)
    }

    /// Opens the TCP connection (from `source` if given) and, for wss://, does the TLS
    /// handshake on it. The caller puts a timeout around this.
    pub async fn connect(target: &Target, source: Option<Ipv4Addr>) -> Result<Stream, String> {
        let tcp = Self::tcp_connect(target, source).await?;
        match &target.tls {
            None => Ok(Stream::Plain(tcp)),
            Some(name) => Ok(Stream::Tls(Box::new(tls::handshake(tcp, name).await?))),
        }
    }

    /// Sends the upgrade request for `request_target` and waits for the `101`. Bytes after
    /// the response head are kept as the first frames. The caller puts a timeout around this.
    /// With `offer_deflate`, permessage-deflate is offered; see [`deflate`](Self::deflate)
    /// for what the server accepted.
    pub async fn upgrade(
        mut stream: Stream,
        target: &Target,
        request_target: &str,
        max_message: usize,
        seed: u64,
        offer_deflate: bool,
    ) -> Result<Self, String> {
        let mut rng = Rng::new(seed);
        let request = ws::upgrade_request(
            &target.host_header,
            request_target,
            &rng.key(),
            offer_deflate,
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("send upgrade request: {e}"))?;
        stream
            .flush()
            .await
            .map_err(|e| format!("send upgrade request: {e}"))?;
        let mut head = Vec::with_capacity(512);
        let mut chunk = [0u8; 4096];
        let used = loop {
            let n = stream
                .read(&mut chunk)
                .await
                .map_err(|e| format!("read upgrade response: {e}"))?;
            if n == 0 {
                return Err("server closed during the upgrade".into());
            }
            head.extend_from_slice(&chunk[..n]);
            if let Some(used) = ws::parse_upgrade_response(&head)? {
                break used;
            }
        };
        let deflate = ws::parse_extensions(&head[..used], offer_deflate)?;
        head.drain(..used);
        let mut reader = FrameReader::new(max_message);
        let inflating = match deflate {
            None => Inflating::Off,
            Some(d) if d.server_no_context_takeover => Inflating::Shared,
            Some(_) => Inflating::Own(Box::default()),
        };
        if deflate.is_some() {
            reader.accept_deflate();
        }
        Ok(Self {
            stream,
            reader,
            pending: head,
            out: Vec::new(),
            rng,
            closing: false,
            deflate,
            inflating,
            max_message,
            bytes_read: 0,
        })
    }

    /// The permessage-deflate parameters the server accepted, if it did.
    pub fn deflate(&self) -> Option<Deflate> {
        self.deflate
    }

    /// Bytes read from the socket since the upgrade response.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// Queues a text message; [`flush`](Self::flush) sends everything queued in one write.
    pub fn queue_text(&mut self, payload: &[u8]) {
        let mask = self.rng.mask();
        ws::encode_client_frame(&mut self.out, ws::OP_TEXT, payload, mask);
    }

    /// Writes everything queued.
    pub async fn flush(&mut self) -> io::Result<()> {
        if !self.out.is_empty() {
            self.stream.write_all(&self.out).await?;
            if let Stream::Tls(s) = &mut self.stream {
                s.flush().await?;
            }
            self.out.clear();
        }
        Ok(())
    }

    /// Sends a close frame (best effort) and shuts the write side.
    pub async fn close(mut self) {
        let mask = self.rng.mask();
        ws::encode_client_frame(&mut self.out, ws::OP_CLOSE, &1000u16.to_be_bytes(), mask);
        let _ = self.flush().await;
        let _ = self.stream.shutdown().await;
    }

    /// Sets the socket's receive buffer (`SO_RCVBUF`, which the kernel doubles): small, a
    /// client that stops reading soon closes its TCP window; large, it can take in a
    /// backlog at once. Best effort.
    pub fn set_recv_buffer(&self, bytes: usize) {
        use std::os::fd::AsRawFd;
        let size = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        // SAFETY: a valid socket fd, a pointer to a c_int and its size.
        unsafe {
            libc::setsockopt(
                self.stream.tcp().as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }

    /// Ends the connection at once, like a client that vanished: no close frame, the socket
    /// is closed. With `reset`, `SO_LINGER` 0 makes the kernel send RST instead of FIN (and
    /// keep no TIME_WAIT); without it the kernel sends FIN, or RST anyway when received
    /// data is still unread.
    pub fn abort(self, reset: bool) {
        if reset {
            set_linger_zero(self.stream.tcp());
        }
        drop(self);
    }

    /// Starts the closing handshake (close frame 1000) and waits, at most `timeout`, for the
    /// server to answer it and close the TCP connection, so that the server is the side that
    /// closes first (RFC 6455 §7.1.1; the TIME_WAIT state stays on its side). Returns true
    /// when the server closed in time; the connection is dropped either way.
    pub async fn close_gracefully(mut self, scratch: &Scratch, timeout: Duration) -> bool {
        self.closing = true;
        let mask = self.rng.mask();
        ws::encode_client_frame(&mut self.out, ws::OP_CLOSE, &1000u16.to_be_bytes(), mask);
        if self.flush().await.is_err() {
            return false;
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.read_batch(scratch, |_, _| None)).await {
                Err(_) => return false,
                Ok(Ok(())) | Ok(Err(Closed::CloseFrame { .. })) => {}
                Ok(Err(_)) => return true,
            }
        }
    }

    /// Waits until the socket is readable, does one read of up to 64 KiB into `scratch`,
    /// and calls `on_text(message, receive_time_ns)` for every complete text message in it.
    /// All messages of one read share one receive timestamp, taken right after the read.
    /// When `on_text` returns a text, it is sent back as a text message (protocol-level
    /// keep-alives). Pings are answered with pongs. Returns `Err` once the connection is over.
    pub async fn read_batch(
        &mut self,
        scratch: &Scratch,
        mut on_text: impl FnMut(&[u8], u64) -> Option<&'static [u8]>,
    ) -> Result<(), Closed> {
        self.read_batch_flagged(scratch, |text, now, _| on_text(text, now))
            .await
    }

    /// [`read_batch`](Self::read_batch), also telling `on_text(message, receive_time_ns,
    /// compressed)` whether each message arrived compressed (it gets the inflated text).
    pub async fn read_batch_flagged(
        &mut self,
        scratch: &Scratch,
        mut on_text: impl FnMut(&[u8], u64, bool) -> Option<&'static [u8]>,
    ) -> Result<(), Closed> {
        let kept = self.pending.len();
        {
            let mut buf = scratch.borrow_mut();
            if buf.len() < kept + READ_CHUNK {
                buf.resize(kept + READ_CHUNK, 0);
            }
        }
        let read = match &mut self.stream {
            Stream::Plain(stream) => {
                if let Err(e) = stream.readable().await {
                    return Err(Closed::Error(format!("readable: {e}")));
                }
                read_draining(stream, &mut scratch.borrow_mut()[kept..kept + READ_CHUNK])
            }
            // Other connections of this thread use the scratch buffer while this one waits,
            // so it is borrowed per poll, never across the wait.
            Stream::Tls(stream) => match poll_fn(|cx| {
                let mut buf = scratch.borrow_mut();
                let mut dst = ReadBuf::new(&mut buf[kept..kept + READ_CHUNK]);
                Pin::new(stream.as_mut())
                    .poll_read(cx, &mut dst)
                    .map_ok(|()| dst.filled().len())
            })
            .await
            {
                // A server that closes TCP without close_notify: what a plain EOF is.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
                other => other,
            },
        };
        let mut result = Ok(());
        {
            let mut buf = scratch.borrow_mut();
            match read {
                Ok(0) => result = Err(Closed::Eof),
                Ok(n) => {
                    let now = clock::now_ns();
                    self.bytes_read += n as u64;
                    buf[..kept].copy_from_slice(&self.pending);
                    let filled = kept + n;
                    let (out, rng, closing) = (&mut self.out, &mut self.rng, self.closing);
                    let (inflating, max) = (&mut self.inflating, self.max_message);
                    let mut close = None;
                    let mut bad_deflate = None;
                    let fed = self.reader.feed(&mut buf[..filled], |event| match event {
                        Event::Text(text) => {
                            if let Some(reply) = on_text(text, now, false) {
                                ws::encode_client_frame(out, ws::OP_TEXT, reply, rng.mask());
                            }
                        }
                        Event::Deflated { text, payload } => {
                            if bad_deflate.is_some() {
                                return;
                            }
                            let mut deliver = |inf: &mut Inflater, fresh: bool| match inf
                                .inflate(payload, max, fresh)
                            {
                                Ok(msg) if text => on_text(msg, now, true),
                                Ok(_) => None,
                                Err(e) => {
                                    bad_deflate = Some(e);
                                    None
                                }
                            };
                            let reply = match inflating {
                                Inflating::Shared => inflate::with_shared(|i| deliver(i, true)),
                                Inflating::Own(i) => deliver(i, false),
                                Inflating::Off => {
                                    bad_deflate = Some(WsError::Protocol("RSV1 without deflate"));
                                    None
                                }
                            };
                            if let Some(reply) = reply {
                                ws::encode_client_frame(out, ws::OP_TEXT, reply, rng.mask());
                            }
                        }
                        Event::Binary(_) | Event::Pong => {}
                        Event::Ping(payload) => {
                            ws::encode_client_frame(out, ws::OP_PONG, payload, rng.mask());
                        }
                        Event::Close { code, reason } => {
                            if !closing {
                                let echo = code.map(u16::to_be_bytes);
                                let echo: &[u8] = echo.as_ref().map_or(&[], |c| c);
                                ws::encode_client_frame(out, ws::OP_CLOSE, echo, rng.mask());
                            }
                            close = Some(Closed::CloseFrame {
                                code,
                                reason: String::from_utf8_lossy(reason).into_owned(),
                            });
                        }
                    });
                    self.pending.clear();
                    let fed = match bad_deflate {
                        Some(e) => Err(e),
                        None => fed,
                    };
                    match fed {
                        Ok(used) if close.is_none() => {
                            self.pending.extend_from_slice(&buf[used..filled]);
                        }
                        Ok(_) => result = Err(close.unwrap_or(Closed::Eof)),
                        Err(e) => result = Err(Closed::Error(e.to_string())),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => result = Err(Closed::Error(format!("read: {e}"))),
            }
        }
        if !self.out.is_empty() {
            if let Err(e) = self.flush().await {
                if result.is_ok() {
                    result = Err(Closed::Error(format!("write: {e}")));
                }
            }
        }
        result
    }
}

/// Reads once. A short read means the socket's receive queue is now empty, so the stream's
/// readiness is cleared right away: the next `readable().await` then waits for the next
/// epoll event instead of costing a `recv` that returns `EAGAIN`. (Data that arrives after
/// the read raises a new edge-triggered event, which sets readiness again.)
fn read_draining(stream: &TcpStream, dst: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    let result = stream.try_io(Interest::READABLE, || {
        got = stream.try_read(dst)?;
        if got > 0 && got < dst.len() {
            Err(io::ErrorKind::WouldBlock.into())
        } else {
            Ok(got)
        }
    });
    match result {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock && got > 0 => Ok(got),
        other => other,
    }
}

/// `SO_LINGER` on with a zero timeout: closing the socket resets the connection. Best effort.
fn set_linger_zero(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket fd, a pointer to a linger struct and its size.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// Lets many sockets bound to the same source address share ephemeral ports: the port is
/// chosen at connect time, per destination (IP_BIND_ADDRESS_NO_PORT). Best effort.
fn set_bind_address_no_port(socket: &TcpSocket) {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: a valid socket fd, a pointer to a c_int and its size.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}
