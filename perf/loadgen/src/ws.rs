//! A minimal RFC 6455 client: the upgrade request, masked client frames, and a parser for
//! unmasked server frames that works on whatever bytes one read brought in (frames split
//! across reads are left for the caller to keep and present again with the next read).
//!
//! The one extension it can offer is permessage-deflate (RFC 7692), for receiving: RSV1 on
//! the first frame of a data message marks it compressed, and [`Inflater`] restores it. The
//! client itself always sends uncompressed (RSV1 = 0 is always allowed). Without the
//! extension, reserved bits must be zero.

/// Continuation frame.
pub const OP_CONT: u8 = 0x0;
/// Text frame.
pub const OP_TEXT: u8 = 0x1;
/// Binary frame.
pub const OP_BINARY: u8 = 0x2;
/// Close frame.
pub const OP_CLOSE: u8 = 0x8;
/// Ping frame.
pub const OP_PING: u8 = 0x9;
/// Pong frame.
pub const OP_PONG: u8 = 0xA;

/// The server broke the framing rules, or sent more than we accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsError {
    /// A framing violation.
    Protocol(&'static str),
    /// A frame or reassembled message over the size limit.
    TooLarge(u64),
}

impl std::fmt::Display for WsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WsError::Protocol(why) => write!(f, "WebSocket protocol error: {why}"),
            WsError::TooLarge(n) => write!(f, "WebSocket message of {n} bytes is over the limit"),
        }
    }
}

/// What one complete frame (or reassembled message) means to the caller.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A whole text message.
    Text(&'a [u8]),
    /// A whole binary message.
    Binary(&'a [u8]),
    /// A whole data message with RSV1 set (permessage-deflate): still compressed, without
    /// the 4-byte tail the sender removed.
    Deflated {
        /// A text message (else binary).
        text: bool,
        /// The compressed payload.
        payload: &'a [u8],
    },
    /// A ping; the caller answers with a pong carrying the same payload.
    Ping(&'a [u8]),
    /// A pong.
    Pong,
    /// The server closes.
    Close {
        /// Close code, if the frame had one.
        code: Option<u16>,
        /// Close reason.
        reason: &'a [u8],
    },
}

#[derive(Debug, Clone, Copy)]
struct Head {
    fin: bool,
    rsv1: bool,
    opcode: u8,
    mask: Option<[u8; 4]>,
    header_len: usize,
    payload_len: usize,
}

fn parse_head(buf: &[u8], max_payload: usize, deflate: bool) -> Result<Option<Head>, WsError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    let rsv1 = b0 & 0x40 != 0;
    if b0 & 0x30 != 0 || (rsv1 && !deflate) {
        return Err(WsError::Protocol("reserved bits set"));
    }
    let fin = b0 & 0x80 != 0;
    let opcode = b0 & 0x0F;
    // RFC 7692 §6.1: only the first frame of a data message may carry RSV1.
    if rsv1 && !matches!(opcode, OP_TEXT | OP_BINARY) {
        return Err(WsError::Protocol("RSV1 on a control or continuation frame"));
    }
    let (len, mut pos) = match b1 & 0x7F {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(b), 10)
        }
        n => (u64::from(n), 2),
    };
    match opcode {
        OP_CONT | OP_TEXT | OP_BINARY => {}
        OP_CLOSE | OP_PING | OP_PONG => {
            if !fin || len > 125 {
                return Err(WsError::Protocol("bad control frame"));
            }
        }
        _ => return Err(WsError::Protocol("unknown opcode")),
    }
    if len > max_payload as u64 {
        return Err(WsError::TooLarge(len));
    }
    let mask = if b1 & 0x80 != 0 {
        if buf.len() < pos + 4 {
            return Ok(None);
        }
        let m = [buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]];
        pos += 4;
        Some(m)
    } else {
        None
    };
    Ok(Some(Head {
        fin,
        rsv1,
        opcode,
        mask,
        header_len: pos,
        payload_len: len as usize,
    }))
}

/// XORs `data` with the 4-byte `mask` (data starts at mask offset 0).
pub fn apply_mask(data: &mut [u8], mask: [u8; 4]) {
    let m = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(w) ^ m).to_ne_bytes());
    }
    // The remainder starts at a multiple of 8, hence at mask offset 0.
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

/// Appends one masked client frame (FIN set) to `out`.
pub fn encode_client_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    out.push(0x80 | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= usize::from(u16::MAX) {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], mask);
}

/// Per-connection parsing state: only a fragmented message in progress lives here.
#[derive(Debug)]
pub struct FrameReader {
    frag: Vec<u8>,
    frag_opcode: Option<u8>,
    frag_rsv1: bool,
    max_message: usize,
    deflate: bool,
}

impl FrameReader {
    /// A reader that refuses frames or messages over `max_message` bytes, and RSV1.
    pub fn new(max_message: usize) -> Self {
        Self {
            frag: Vec::new(),
            frag_opcode: None,
            frag_rsv1: false,
            max_message,
            deflate: false,
        }
    }

    /// Accepts RSV1 on data messages from now on (permessage-deflate was negotiated): they
    /// come out as [`Event::Deflated`].
    pub fn accept_deflate(&mut self) {
        self.deflate = true;
    }

    /// Parses every complete frame at the start of `buf`, calling `on` for each event, and
    /// returns how many bytes were used. The rest (an incomplete frame) must be presented
    /// again, followed by more bytes. Stops after a close frame. Masked server frames are
    /// unmasked in place.
    pub fn feed(
        &mut self,
        buf: &mut [u8],
        mut on: impl FnMut(Event<'_>),
    ) -> Result<usize, WsError> {
        let mut pos = 0;
        while let Some(head) = parse_head(&buf[pos..], self.max_message, self.deflate)? {
            let total = head.header_len + head.payload_len;
            if buf.len() - pos < total {
                break;
            }
            let (start, end) = (pos + head.header_len, pos + total);
            pos = end;
            let payload = &mut buf[start..end];
            if let Some(mask) = head.mask {
                apply_mask(payload, mask);
            }
            let payload: &[u8] = payload;
            match head.opcode {
                OP_TEXT | OP_BINARY => {
                    if self.frag_opcode.is_some() {
                        return Err(WsError::Protocol("data frame inside a fragmented message"));
                    }
                    if head.fin {
                        on(data_event(head.opcode, head.rsv1, payload));
                    } else {
                        self.frag_opcode = Some(head.opcode);
                        self.frag_rsv1 = head.rsv1;
                        self.frag.clear();
                        self.frag.extend_from_slice(payload);
                    }
                }
                OP_CONT => {
                    let Some(opcode) = self.frag_opcode else {
                        return Err(WsError::Protocol("continuation without a message"));
                    };
                    let len = self.frag.len() + payload.len();
                    if len > self.max_message {
                        return Err(WsError::TooLarge(len as u64));
                    }
                    self.frag.extend_from_slice(payload);
                    if head.fin {
                        self.frag_opcode = None;
                        on(data_event(opcode, self.frag_rsv1, &self.frag));
                        self.frag.clear();
                    }
                }
                OP_PING => on(Event::Ping(payload)),
                OP_PONG => on(Event::Pong),
                _ => {
                    let (code, reason) = match payload {
                        [a, b, rest @ ..] => (Some(u16::from_be_bytes([*a, *b])), rest),
                        _ => (None, &payload[..0]),
                    };
                    on(Event::Close { code, reason });
                    break;
                }
            }
        }
        Ok(pos)
    }
}

fn data_event(opcode: u8, rsv1: bool, payload: &[u8]) -> Event<'_> {
    if rsv1 {
        Event::Deflated {
            text: opcode == OP_TEXT,
            payload,
        }
    } else if opcode == OP_TEXT {
        Event::Text(payload)
    } else {
        Event::Binary(payload)
    }
}

/// The permessage-deflate offer: any server window, and `client_max_window_bits` so that
/// servers that want to limit our window may say so (we never compress, so any value is fine).
pub const DEFLATE_OFFER: &str = "permessage-deflate; client_max_window_bits";

/// The HTTP/1.1 upgrade request; with `deflate`, it offers [`DEFLATE_OFFER`].
pub fn upgrade_request(host: &str, request_target: &str, key: &str, deflate: bool) -> String {
    let offer = if deflate {
        format!("Sec-WebSocket-Extensions: {DEFLATE_OFFER}\r\n")
    } else {
        String::new()
    };
    format!(
        "GET {request_target} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\
         {offer}User-Agent: neonex-loadgen\r\n\r\n"
    )
}

/// What the server accepted of our permessage-deflate offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deflate {
    /// The server starts every message with an empty window: one inflater may serve many
    /// connections, reset before each message. Without it the server keeps its sliding
    /// window across messages, and so must the connection's inflater.
    pub server_no_context_takeover: bool,
    /// The server's window, 8 to 15 (15 when it did not say).
    pub server_max_window_bits: u8,
}

/// The extension the server accepted, from a `101` response head (`head` up to the blank
/// line): `Ok(None)` without one, `Err` for anything we did not offer or cannot honour.
pub fn parse_extensions(head: &[u8], offered: bool) -> Result<Option<Deflate>, String> {
    let head = String::from_utf8_lossy(head);
    let mut values = Vec::new();
    for line in head.lines().skip(1) {
        if let Some((k, v)) = line.split_once(':') {
            if k.trim().eq_ignore_ascii_case("sec-websocket-extensions") {
                values.extend(v.split(',').map(str::trim).filter(|x| !x.is_empty()));
            }
        }
    }
    let mut found = None;
    for ext in values {
        let mut params = ext.split(';').map(str::trim);
        let name = params.next().unwrap_or("");
        if !name.eq_ignore_ascii_case("permessage-deflate") || !offered {
            return Err(format!(
                "server answered an extension we did not offer: {ext:?}"
            ));
        }
        if found.is_some() {
            return Err("server accepted permessage-deflate twice".into());
        }
        let mut d = Deflate {
            server_no_context_takeover: false,
            server_max_window_bits: 15,
        };
        for p in params.filter(|p| !p.is_empty()) {
            let (key, value) = match p.split_once('=') {
                Some((k, v)) => (k.trim(), Some(v.trim().trim_matches('"'))),
                None => (p, None),
            };
            let bits = |v: Option<&str>| {
                v.and_then(|v| v.parse::<u8>().ok())
                    .filter(|b| (8..=15).contains(b))
                    .ok_or_else(|| format!("bad {key} in {ext:?}"))
            };
            match key.to_ascii_lowercase().as_str() {
                "server_no_context_takeover" => d.server_no_context_takeover = true,
                // We never compress, so what the server asks of our side changes nothing.
                "client_no_context_takeover" => {}
                "client_max_window_bits" => {
                    bits(value)?;
                }
                "server_max_window_bits" => d.server_max_window_bits = bits(value)?,
                _ => return Err(format!("unknown permessage-deflate parameter in {ext:?}")),
            }
        }
        found = Some(d);
    }
    Ok(found)
}

/// Most bytes of a response head we wait for.
pub const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// Looks for a complete response head in `buf`: `Ok(Some(len))` when it is a `101`,
/// `Ok(None)` when more bytes are needed, `Err` for any other answer.
///
/// `Sec-WebSocket-Accept` is not verified (that needs SHA-1; the peer is a server we run).
pub fn parse_upgrade_response(buf: &[u8]) -> Result<Option<usize>, String> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > MAX_RESPONSE_HEAD {
            return Err("upgrade response head too large".into());
        }
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&buf[..end]);
    let status_line = head.lines().next().unwrap_or("");
    let mut parts = status_line.split_whitespace();
    let version = parts.next().unwrap_or("");
    let code = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") || code != "101" {
        return Err(format!("upgrade refused: {status_line:?}"));
    }
    let upgrades = head.lines().skip(1).any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("upgrade") && v.trim().eq_ignore_ascii_case("websocket")
        })
    });
    if !upgrades {
        return Err("101 response without Upgrade: websocket".into());
    }
    Ok(Some(end + 4))
}

/// Standard base64 (with padding), enough for the 16-byte key.
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A small xorshift generator for masks and keys (unpredictability is not a goal here).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded generator; a zero seed is replaced.
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A fresh frame mask.
    pub fn mask(&mut self) -> [u8; 4] {
        (self.next_u64() as u32).to_ne_bytes()
    }

    /// A fresh `Sec-WebSocket-Key`.
    pub fn key(&mut self) -> String {
        let mut raw = [0u8; 16];
        raw[..8].copy_from_slice(&self.next_u64().to_ne_bytes());
        raw[8..].copy_from_slice(&self.next_u64().to_ne_bytes());
        base64(&raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
        let len = payload.len();
        if len < 126 {
            out.push(len as u8);
        } else if len <= 65535 {
            out.push(126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        out.extend_from_slice(payload);
        out
    }

    #[derive(Debug, PartialEq)]
    enum Owned {
        Text(Vec<u8>),
        Deflated(bool, Vec<u8>),
        Binary(Vec<u8>),
        Ping(Vec<u8>),
        Pong,
        Close(Option<u16>, Vec<u8>),
    }

    fn own(ev: Event<'_>) -> Owned {
        match ev {
            Event::Text(t) => Owned::Text(t.to_vec()),
            Event::Deflated { text, payload } => Owned::Deflated(text, payload.to_vec()),
            Event::Binary(b) => Owned::Binary(b.to_vec()),
            Event::Ping(p) => Owned::Ping(p.to_vec()),
            Event::Pong => Owned::Pong,
            Event::Close { code, reason } => Owned::Close(code, reason.to_vec()),
        }
    }

    /// Feeds `stream` in pieces of `step` bytes, keeping the unused tail like a connection.
    fn feed_in_pieces(stream: &[u8], step: usize) -> Vec<Owned> {
        let mut reader = FrameReader::new(1 << 20);
        let mut pending = Vec::new();
        let mut events = Vec::new();
        for piece in stream.chunks(step) {
            pending.extend_from_slice(piece);
            let used = reader.feed(&mut pending, |e| events.push(own(e))).unwrap();
            pending.drain(..used);
        }
        assert!(pending.is_empty());
        events
    }

    #[test]
    fn parses_frames_split_anywhere() {
        let big = vec![b'a'; 70_000];
        let mid = vec![b'b'; 300];
        let mut stream = Vec::new();
        stream.extend(server_frame(OP_TEXT, true, b"{\"type\":\"welcome\"}"));
        stream.extend(server_frame(OP_PING, true, b"p"));
        stream.extend(server_frame(OP_TEXT, true, &mid));
        stream.extend(server_frame(OP_BINARY, true, &big));
        stream.extend(server_frame(OP_TEXT, false, b"hel"));
        stream.extend(server_frame(OP_PING, true, b""));
        stream.extend(server_frame(OP_CONT, false, b"lo "));
        stream.extend(server_frame(OP_CONT, true, b"world"));
        stream.extend(server_frame(OP_PONG, true, b""));
        stream.extend(server_frame(
            OP_CLOSE,
            true,
            &[0x03, 0xE8, b'b', b'y', b'e'],
        ));
        let expected = vec![
            Owned::Text(b"{\"type\":\"welcome\"}".to_vec()),
            Owned::Ping(b"p".to_vec()),
            Owned::Text(mid.clone()),
            Owned::Binary(big.clone()),
            Owned::Ping(Vec::new()),
            Owned::Text(b"hello world".to_vec()),
            Owned::Pong,
            Owned::Close(Some(1000), b"bye".to_vec()),
        ];
        for step in [1, 2, 3, 7, 64, 1000, 65536, stream.len()] {
            assert_eq!(feed_in_pieces(&stream, step), expected, "step {step}");
        }
    }

    #[test]
    fn unmasks_masked_server_frames() {
        let mut frame = Vec::new();
        encode_client_frame(&mut frame, OP_TEXT, b"masked text here", [1, 2, 3, 4]);
        let mut got = Vec::new();
        let used = FrameReader::new(1024)
            .feed(&mut frame, |e| got.push(own(e)))
            .unwrap();
        assert_eq!(used, frame.len());
        assert_eq!(got, vec![Owned::Text(b"masked text here".to_vec())]);
    }

    #[test]
    fn client_frames_are_masked_with_right_lengths() {
        for len in [0usize, 5, 125, 126, 65535, 65536, 100_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mask = [0xA1, 0xB2, 0xC3, 0xD4];
            let mut out = Vec::new();
            encode_client_frame(&mut out, OP_TEXT, &payload, mask);
            assert_eq!(out[0], 0x81);
            assert_ne!(out[1] & 0x80, 0, "mask bit");
            let (hl, plen) = match out[1] & 0x7F {
                126 => (4, u16::from_be_bytes([out[2], out[3]]) as usize),
                127 => (
                    10,
                    u64::from_be_bytes(out[2..10].try_into().unwrap()) as usize,
                ),
                n => (2, n as usize),
            };
            assert_eq!(plen, len);
            assert_eq!(&out[hl..hl + 4], &mask);
            let body = &out[hl + 4..];
            assert_eq!(body.len(), len);
            for (i, b) in body.iter().enumerate() {
                assert_eq!(b ^ mask[i % 4], payload[i]);
            }
        }
    }

    #[test]
    fn rejects_violations() {
        let mut r = FrameReader::new(100);
        assert!(r.feed(&mut [0xC1, 0x00], |_| {}).is_err(), "rsv1");
        assert!(r.feed(&mut [0x83, 0x00], |_| {}).is_err(), "opcode 3");
        assert!(
            r.feed(&mut [0x09, 0x00], |_| {}).is_err(),
            "fragmented ping"
        );
        assert!(
            r.feed(&mut [0x80, 0x00], |_| {}).is_err(),
            "stray continuation"
        );
        let mut big = server_frame(OP_TEXT, true, &[b'x'; 101]);
        assert_eq!(
            FrameReader::new(100).feed(&mut big, |_| {}),
            Err(WsError::TooLarge(101))
        );
    }

    #[test]
    fn rsv1_marks_compressed_messages_once_deflate_is_accepted() {
        let mut stream = server_frame(OP_TEXT, true, b"zz");
        stream[0] |= 0x40;
        assert!(FrameReader::new(100)
            .feed(&mut stream.clone(), |_| {})
            .is_err());
        let mut frag = server_frame(OP_TEXT, false, b"ab");
        frag[0] |= 0x40;
        stream.extend(frag);
        stream.extend(server_frame(OP_CONT, true, b"cd"));
        stream.extend(server_frame(OP_TEXT, true, b"plain"));
        let mut r = FrameReader::new(100);
        r.accept_deflate();
        let mut got = Vec::new();
        assert_eq!(r.feed(&mut stream, |e| got.push(own(e))), Ok(stream.len()));
        assert_eq!(
            got,
            vec![
                Owned::Deflated(true, b"zz".to_vec()),
                Owned::Deflated(true, b"abcd".to_vec()),
                Owned::Text(b"plain".to_vec()),
            ]
        );
        for bad in [
            [0xC9, 0x00], // ping with RSV1
            [0x40, 0x00], // continuation with RSV1 (and no message)
            [0xA1, 0x00], // RSV2
        ] {
            let mut r = FrameReader::new(100);
            r.accept_deflate();
            assert!(r.feed(&mut bad.clone(), |_| {}).is_err(), "{bad:x?}");
        }
    }

    #[test]
    fn offers_and_parses_permessage_deflate() {
        let req = upgrade_request("h", "/ws", "k", true);
        assert!(req.contains(
            "\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        ));
        assert!(!upgrade_request("h", "/ws", "k", false).contains("Extensions"));
        let head = |ext: &str| format!("HTTP/1.1 101 OK\r\nUpgrade: websocket\r\n{ext}");
        assert_eq!(parse_extensions(head("").as_bytes(), true), Ok(None));
        // neonex
        let neonex = head(
            "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; \
             client_no_context_takeover",
        );
        assert_eq!(
            parse_extensions(neonex.as_bytes(), true),
            Ok(Some(Deflate {
                server_no_context_takeover: true,
                server_max_window_bits: 15
            }))
        );
        // uWebSockets' dedicated compressor keeps its window; header names in any case
        let uws = head("sec-websocket-extensions: permessage-deflate; client_max_window_bits=15; server_max_window_bits=\"12\"");
        assert_eq!(
            parse_extensions(uws.as_bytes(), true),
            Ok(Some(Deflate {
                server_no_context_takeover: false,
                server_max_window_bits: 12
            }))
        );
        assert!(
            parse_extensions(neonex.as_bytes(), false).is_err(),
            "not offered"
        );
        for bad in [
            "Sec-WebSocket-Extensions: x-webkit-deflate-frame",
            "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=7",
            "Sec-WebSocket-Extensions: permessage-deflate; mystery",
            "Sec-WebSocket-Extensions: permessage-deflate, permessage-deflate",
        ] {
            assert!(
                parse_extensions(head(bad).as_bytes(), true).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn upgrade_response() {
        let ok = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n\x81\x02hi";
        assert_eq!(parse_upgrade_response(ok), Ok(Some(ok.len() - 4)));
        assert_eq!(parse_upgrade_response(b"HTTP/1.1 101 Swi"), Ok(None));
        assert!(parse_upgrade_response(b"HTTP/1.1 404 Not Found\r\n\r\n").is_err());
        assert!(parse_upgrade_response(b"HTTP/1.1 101 OK\r\nX: y\r\n\r\n").is_err());
    }

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(Rng::new(7).key().len(), 24);
    }
}
