//! A TCP connection driven by hand: HTTP requests written byte for byte, then frames the
//! test builds itself, and everything the server answers read back exactly.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

use crate::frames::{parse_frame, Frame};
use crate::http::{upgrade_request, HttpResponse, WS_ACCEPT};
use crate::wait::TIMEOUT;

/// How reading a raw connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// A close frame with this code (None: empty close payload) and reason.
    Close(Option<u16>, String),
    /// End of stream without a close frame.
    Eof,
    /// The connection was reset (or another read error).
    Reset(String),
}

/// A TCP connection driven by hand.
pub struct RawClient {
    pub stream: TcpStream,
    buf: Vec<u8>,
    /// Frames read, in order, for diagnostics.
    pub seen: Vec<Frame>,
}

impl RawClient {
    pub async fn connect(addr: SocketAddr) -> RawClient {
        RawClient::once_connected(TcpStream::connect(addr)).await
    }

    /// Connects with a small receive buffer (set before connecting, so the window is
    /// small from the start).
    pub async fn connect_with_rcvbuf(addr: SocketAddr, rcvbuf: u32) -> RawClient {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(rcvbuf).unwrap();
        RawClient::once_connected(socket.connect(addr)).await
    }

    /// Connects from `source`, another address of the loopback range (127.0.0.2, ...), so
    /// the hub sees a peer other than 127.0.0.1.
    pub async fn connect_from(addr: SocketAddr, source: IpAddr) -> RawClient {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(source, 0)).unwrap();
        RawClient::once_connected(socket.connect(addr)).await
    }

    async fn once_connected(connecting: impl Future<Output = io::Result<TcpStream>>) -> RawClient {
        let stream = tokio::time::timeout(TIMEOUT, connecting)
            .await
            .expect("TCP connect timed out")
            .expect("TCP connect failed");
        stream.set_nodelay(true).unwrap();
        RawClient {
            stream,
            buf: Vec::new(),
            seen: Vec::new(),
        }
    }

    /// Connects and upgrades `target`; panics unless the answer is 101 with the right
    /// accept key.
    pub async fn upgraded(addr: SocketAddr, target: &str) -> RawClient {
        let mut raw = RawClient::connect(addr).await;
        raw.upgrade(target).await;
        raw
    }

    /// Sends the upgrade request for `target` and checks the 101 answer.
    pub async fn upgrade(&mut self, target: &str) {
        self.write(upgrade_request(target).as_bytes()).await;
        let head = self.read_head().await;
        assert!(
            head.starts_with("HTTP/1.1 101"),
            "upgrade of {target} answered: {head}"
        );
        assert!(
            head.contains(WS_ACCEPT),
            "101 without the right Sec-WebSocket-Accept: {head}"
        );
    }

    pub async fn write(&mut self, bytes: &[u8]) {
        tokio::time::timeout(TIMEOUT, self.stream.write_all(bytes))
            .await
            .expect("raw write timed out")
            .expect("raw write failed");
    }

    /// Writes, ignoring errors (the server may already have closed).
    pub async fn write_lenient(&mut self, bytes: &[u8]) {
        let _ = tokio::time::timeout(TIMEOUT, self.stream.write_all(bytes)).await;
    }

    /// Reads more bytes into the buffer. Ok(0) at end of stream.
    async fn fill(&mut self, deadline: Instant) -> Result<usize, String> {
        let mut chunk = [0u8; 16 * 1024];
        match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
            Err(_) => Err("timeout".to_owned()),
            Ok(Err(e)) => Err(e.to_string()),
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(n)
            }
        }
    }

    /// Reads an HTTP response head (through the blank line); leaves the rest buffered.
    pub async fn read_head(&mut self) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end + 4]).into_owned();
                self.buf.drain(..end + 4);
                return head;
            }
            match self.fill(deadline).await {
                Ok(0) => panic!(
                    "connection ended before a complete HTTP head: {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
                Ok(_) => {}
                Err(e) => panic!(
                    "no complete HTTP head ({e}); got {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
            }
        }
    }

    /// Sends `request` and reads the response (body by Content-Length).
    pub async fn http(addr: SocketAddr, request: &str) -> HttpResponse {
        RawClient::connect(addr).await.exchange(request).await
    }

    /// Sends `request` on this connection and reads the response (body by
    /// Content-Length); after a 101 the connection goes on with frames.
    pub async fn exchange(&mut self, request: &str) -> HttpResponse {
        self.write(request.as_bytes()).await;
        let mut response = HttpResponse::from_head(self.read_head().await);
        let length = response.content_length();
        let deadline = Instant::now() + TIMEOUT;
        while self.buf.len() < length {
            match self.fill(deadline).await {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => panic!("reading the body: {e}"),
            }
        }
        // After a 101 what follows is frames, left buffered for `next_frame`.
        if response.status != 101 {
            response.body = String::from_utf8_lossy(&std::mem::take(&mut self.buf)).into_owned();
        }
        response
    }

    /// The next frame, or how the stream ended. Panics on timeout.
    pub async fn next_frame(&mut self, timeout: Duration) -> Result<Frame, End> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((frame, used)) = parse_frame(&self.buf) {
                self.buf.drain(..used);
                self.seen.push(frame.clone());
                return Ok(frame);
            }
            match self.fill(deadline).await {
                Ok(0) => return Err(End::Eof),
                Ok(_) => {}
                Err(e) if e == "timeout" => panic!(
                    "raw client: no complete frame within {timeout:?} (buffered {} bytes; frames so far {:?})",
                    self.buf.len(),
                    self.seen_summary()
                ),
                Err(e) => return Err(End::Reset(e)),
            }
        }
    }

    /// The next text frame as JSON, skipping pings. Panics on anything else.
    pub async fn recv_json(&mut self) -> Value {
        loop {
            match self.next_frame(TIMEOUT).await {
                Ok(f) if f.opcode == 0x9 || f.opcode == 0xA => continue,
                Ok(f) if f.opcode == 0x1 => return f.json(),
                other => panic!("raw client: expected a text frame, got {other:?}"),
            }
        }
    }

    /// Reads frames until a close frame or the end of the stream (within `timeout`).
    pub async fn read_to_end(&mut self, timeout: Duration) -> End {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_frame(left).await {
                Ok(f) if f.opcode == 0x8 => return End::Close(f.close_code(), f.close_reason()),
                Ok(_) => continue,
                Err(end) => return end,
            }
        }
    }

    /// Reads everything up to the end of the stream: the bytes not yet consumed (already
    /// buffered or newly arrived) and how the stream ended (`End::Eof` or `End::Reset`).
    /// `Err` if the stream is still open after `timeout`.
    pub async fn read_until_eof(&mut self, timeout: Duration) -> Result<(Vec<u8>, End), String> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.fill(deadline).await {
                Ok(0) => return Ok((std::mem::take(&mut self.buf), End::Eof)),
                Ok(_) => {}
                Err(e) if e == "timeout" => {
                    return Err(format!(
                        "the stream is still open after {timeout:?} ({} bytes unread)",
                        self.buf.len()
                    ))
                }
                Err(e) => return Ok((std::mem::take(&mut self.buf), End::Reset(e))),
            }
        }
    }

    /// Reads until a close frame and returns its code; panics if the stream ends first.
    pub async fn expect_close_code(&mut self) -> u16 {
        match self.read_to_end(TIMEOUT).await {
            End::Close(Some(code), _) => code,
            other => panic!(
                "expected a close frame with a code, got {other:?} after frames {:?}",
                self.seen_summary()
            ),
        }
    }

    fn seen_summary(&self) -> Vec<String> {
        self.seen.iter().map(Frame::summary).collect()
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
