//! A minimal HTTP/1.1 publisher for hubs that take messages by `POST` (nchan): one keep-alive
//! connection, requests pipelined (written back to back without waiting for answers), and
//! the answers read in order by a separate task.

use std::io;
use std::net::Ipv4Addr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::conn::WsConn;
use crate::target::Target;

/// Most bytes of one response head.
const MAX_HEAD: usize = 16 * 1024;
/// Largest response body accepted.
const MAX_BODY: usize = 1024 * 1024;

/// The writing side: queues `POST` requests and writes them.
pub struct HttpPublisher {
    write: OwnedWriteHalf,
    out: Vec<u8>,
    head: Vec<u8>,
}

/// The reading side: parses the answers in order.
pub struct HttpResponses {
    read: OwnedReadHalf,
    buf: Vec<u8>,
}

/// Connects to `target` for `POST`s to `path`.
pub async fn connect(
    target: &Target,
    path: &str,
    source: Option<Ipv4Addr>,
) -> Result<(HttpPublisher, HttpResponses), String> {
    if target.tls.is_some() {
        return Err("the HTTP publisher speaks plain HTTP only: give a ws:// URL".into());
    }
    let stream = WsConn::tcp_connect(target, source).await?;
    let (read, write) = stream.into_split();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: neonex-loadgen\r\n\
         Content-Type: text/plain\r\nContent-Length: ",
        target.host_header
    )
    .into_bytes();
    Ok((
        HttpPublisher {
            write,
            out: Vec::with_capacity(4096),
            head,
        },
        HttpResponses {
            read,
            buf: Vec::with_capacity(8192),
        },
    ))
}

impl HttpPublisher {
    /// Queues one `POST` with `body`; [`flush`](Self::flush) writes everything queued.
    pub fn queue_post(&mut self, body: &[u8]) {
        self.out.extend_from_slice(&self.head);
        self.out
            .extend_from_slice(body.len().to_string().as_bytes());
        self.out.extend_from_slice(b"\r\n\r\n");
        self.out.extend_from_slice(body);
    }

    /// Writes everything queued.
    pub async fn flush(&mut self) -> io::Result<()> {
        if !self.out.is_empty() {
            self.write.write_all(&self.out).await?;
            self.out.clear();
        }
        Ok(())
    }
}

/// One parsed response head: status code and body length; `None` if more bytes are needed.
fn parse_head(buf: &[u8]) -> Result<Option<(u16, usize, usize)>, String> {
    let Some(end) = memchr::memmem::find(buf, b"\r\n\r\n") else {
        if buf.len() > MAX_HEAD {
            return Err("HTTP response head too large".into());
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| "HTTP response head not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or("");
    let mut parts = status.split_whitespace();
    if !parts.next().unwrap_or("").starts_with("HTTP/1.") {
        return Err(format!("bad HTTP status line {status:?}"));
    }
    let code: u16 = parts
        .next()
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad HTTP status line {status:?}"))?;
    let mut len = 0usize;
    for line in lines {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        if k.trim().eq_ignore_ascii_case("content-length") {
            len = v
                .trim()
                .parse()
                .map_err(|_| format!("bad Content-Length {v:?}"))?;
        } else if k.trim().eq_ignore_ascii_case("transfer-encoding") {
            return Err("chunked HTTP responses are not supported".into());
        }
    }
    if len > MAX_BODY {
        return Err(format!("HTTP response body of {len} bytes is too large"));
    }
    Ok(Some((code, end + 4, len)))
}

impl HttpResponses {
    /// Reads answers until the connection ends, calling `on_response(status, body)` for
    /// each. Returns why it ended.
    pub async fn run(mut self, mut on_response: impl FnMut(u16, &[u8])) -> String {
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            loop {
                match parse_head(&self.buf) {
                    Ok(Some((code, head, len))) if self.buf.len() >= head + len => {
                        on_response(code, &self.buf[head..head + len]);
                        self.buf.drain(..head + len);
                    }
                    Ok(_) => break,
                    Err(e) => return e,
                }
            }
            match self.read.read(&mut chunk).await {
                Ok(0) => return "the server closed the HTTP publisher connection".into(),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => return format!("HTTP publisher read: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_response_heads() {
        let r = b"HTTP/1.1 202 Accepted\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1";
        assert_eq!(parse_head(r).unwrap(), Some((202, 70, 5)));
        assert_eq!(
            parse_head(b"HTTP/1.1 201 Created\r\nContent-Le").unwrap(),
            None
        );
        assert!(parse_head(b"SSH-2.0\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").is_err());
    }

    /// Three pipelined POSTs to a server on 127.0.0.1 that answers them in one write.
    #[test]
    fn pipelined_posts_round_trip() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while got.windows(4).filter(|w| w == b"\r\n\r\n").count() < 3 || !got.ends_with(b"c3") {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0, "client closed early");
                got.extend_from_slice(&buf[..n]);
            }
            let answer = "HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 201 Created\r\n\
                          Content-Length: 0\r\n\r\nHTTP/1.1 403 Forbidden\r\nContent-Length: 3\r\n\r\nno!";
            s.write_all(answer.as_bytes()).unwrap();
            String::from_utf8(got).unwrap()
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let statuses = rt.block_on(async {
            let target = crate::target::parse(&format!("ws://127.0.0.1:{port}/sub")).unwrap();
            let (mut publisher, responses) = connect(&target, "/pub/bench", None).await.unwrap();
            for body in ["a1", "b2", "c3"] {
                publisher.queue_post(body.as_bytes());
            }
            publisher.flush().await.unwrap();
            let mut statuses = Vec::new();
            let why = responses
                .run(|code, body| statuses.push((code, body.to_vec())))
                .await;
            assert!(why.contains("closed"), "{why}");
            statuses
        });
        assert_eq!(
            statuses,
            vec![(202, b"ok".to_vec()), (201, vec![]), (403, b"no!".to_vec())]
        );
        let requests = server.join().unwrap();
        assert!(requests.starts_with("POST /pub/bench HTTP/1.1\r\nHost: 127.0.0.1:"));
        assert_eq!(requests.matches("Content-Length: 2\r\n\r\n").count(), 3);
    }
}
