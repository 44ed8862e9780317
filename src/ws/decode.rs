//! Decoding one client frame from the front of a byte buffer.
//!
//! The decoder works on whatever contiguous bytes the caller has (the shard's read buffer,
//! or a connection's saved partial frame), checks every rule of RFC 6455 section 5 that a
//! header can break, and unmasks the payload in place. It never allocates: a frame that
//! is not all there yet is reported as [`Decoded::Incomplete`] with its full size when the
//! header is known, so the caller can keep exactly that many bytes.

use fastwebsockets::{unmask, OpCode};

use super::CloseReason;

/// A frame header, after validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Last frame of its message.
    pub fin: bool,
    /// The frame's opcode.
    pub opcode: OpCode,
    /// RSV1: the first frame of a compressed message (permessage-deflate).
    pub compressed: bool,
    /// Bytes of header, mask included; the payload starts here.
    pub header_len: usize,
    /// Bytes of payload.
    pub payload_len: usize,
}

impl FrameHeader {
    /// Header plus payload.
    pub fn frame_len(&self) -> usize {
        self.header_len + self.payload_len
    }
}

/// What the front of the buffer holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A whole frame; its payload (unmasked) is `buf[header_len..frame_len()]`.
    Frame(FrameHeader),
    /// Not a whole frame yet.
    Incomplete {
        /// The size of the whole frame, once its header has arrived.
        frame_len: Option<usize>,
    },
}

/// Decodes the frame at the start of `buf`, unmasking its payload in place when complete.
///
/// `max_payload` is the largest payload accepted; a larger frame is refused with 1009 as
/// soon as its length field is read, before any of its payload is kept.
pub fn decode_frame(buf: &mut [u8], max_payload: usize) -> Result<Decoded, CloseReason> {
    decode_frame_with(buf, max_payload, false)
}

/// [`decode_frame`] for a connection that negotiated permessage-deflate (`deflate`):
/// RSV1 then marks the first frame of a compressed message, and is still refused on a
/// control or continuation frame (RFC 7692 section 6.1).
pub fn decode_frame_with(
    buf: &mut [u8],
    max_payload: usize,
    deflate: bool,
) -> Result<Decoded, CloseReason> {
    if buf.len() < 2 {
        return Ok(Decoded::Incomplete { frame_len: None });
    }
    let (b0, b1) = (buf[0], buf[1]);
    let fin = b0 & 0x80 != 0;
    let compressed = b0 & 0x40 != 0;
    if b0 & 0x30 != 0 || (compressed && !deflate) {
        return Err(CloseReason::protocol("reserved bits set"));
    }
    let opcode =
        OpCode::try_from(b0 & 0x0f).map_err(|_| CloseReason::protocol("unknown opcode"))?;
    if compressed && !matches!(opcode, OpCode::Text | OpCode::Binary) {
        return Err(CloseReason::protocol(
            "RSV1 set on a frame that starts no message",
        ));
    }
    if b1 & 0x80 == 0 {
        return Err(CloseReason::protocol("client frames must be masked"));
    }
    let control = matches!(opcode, OpCode::Close | OpCode::Ping | OpCode::Pong);
    let (length_field, len_bytes) = match b1 & 0x7f {
        126 => (None, 2),
        127 => (None, 8),
        n => (Some(n as u64), 0),
    };
    if control && (!fin || length_field.is_none()) {
        return Err(CloseReason::protocol(if fin {
            "control frame too long"
        } else {
            "fragmented control frame"
        }));
    }
    let header_len = 2 + len_bytes + 4;
    if buf.len() < 2 + len_bytes {
        return Ok(Decoded::Incomplete { frame_len: None });
    }
    let payload_len = match len_bytes {
        0 => length_field.unwrap_or_default(),
        2 => u16::from_be_bytes([buf[2], buf[3]]) as u64,
        _ => u64::from_be_bytes(buf[2..10].try_into().expect("eight bytes")),
    };
    if payload_len >> 63 != 0 {
        return Err(CloseReason::protocol("frame length has its top bit set"));
    }
    if payload_len > max_payload as u64 {
        return Err(CloseReason {
            code: super::close_code::TOO_BIG,
            reason: "message too big",
        });
    }
    let header = FrameHeader {
        fin,
        opcode,
        compressed,
        header_len,
        payload_len: payload_len as usize,
    };
    if buf.len() < header.frame_len() {
        return Ok(Decoded::Incomplete {
            frame_len: Some(header.frame_len()),
        });
    }
    let mask: [u8; 4] = buf[header_len - 4..header_len]
        .try_into()
        .expect("four bytes");
    unmask(&mut buf[header_len..header.frame_len()], mask);
    Ok(Decoded::Frame(header))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame, as a browser would send it.
    pub(crate) fn client_frame(b0: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut out = vec![b0];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n < 65536 => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    #[test]
    fn decodes_and_unmasks_a_text_frame() {
        let mut buf = client_frame(0x81, b"hello", [1, 2, 3, 4]);
        buf.extend_from_slice(b"next");
        let Decoded::Frame(h) = decode_frame(&mut buf, 1024).unwrap() else {
            panic!("expected a frame")
        };
        assert!(h.fin);
        assert_eq!(h.opcode, OpCode::Text);
        assert_eq!(&buf[h.header_len..h.frame_len()], b"hello");
        assert_eq!(&buf[h.frame_len()..], b"next");
    }

    #[test]
    fn extended_lengths_are_read() {
        for len in [126usize, 300, 65_535, 65_536, 100_000] {
            let payload = vec![b'a'; len];
            let mut buf = client_frame(0x82, &payload, [9, 8, 7, 6]);
            let Decoded::Frame(h) = decode_frame(&mut buf, 1 << 20).unwrap() else {
                panic!("expected a frame")
            };
            assert_eq!(h.payload_len, len);
            assert!(buf[h.header_len..].iter().all(|&b| b == b'a'));
        }
    }

    #[test]
    fn partial_frames_report_their_full_size() {
        let full = client_frame(0x81, &[b'x'; 200], [0; 4]);
        for cut in [0, 1, 3] {
            let mut part = full[..cut].to_vec();
            assert_eq!(
                decode_frame(&mut part, 1024).unwrap(),
                Decoded::Incomplete { frame_len: None }
            );
        }
        let mut part = full[..100].to_vec();
        assert_eq!(
            decode_frame(&mut part, 1024).unwrap(),
            Decoded::Incomplete {
                frame_len: Some(full.len())
            }
        );
    }

    #[test]
    fn protocol_violations_close_with_1002() {
        let cases: [(&str, Vec<u8>); 6] = [
            ("unmasked", vec![0x81, 0x02, b'h', b'i']),
            ("reserved bits", client_frame(0xC1, b"x", [1; 4])),
            ("unknown opcode", client_frame(0x83, b"x", [1; 4])),
            ("fragmented ping", client_frame(0x09, b"x", [1; 4])),
            ("long ping", client_frame(0x89, &[0; 126], [1; 4])),
            (
                "2^63 length",
                vec![0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4],
            ),
        ];
        for (name, mut frame) in cases {
            let err = decode_frame(&mut frame, 1 << 20).unwrap_err();
            assert_eq!(err.code, 1002, "{name}");
        }
    }

    #[test]
    fn oversize_frames_close_with_1009_before_their_payload_arrives() {
        let mut header_only = client_frame(0x81, &[0; 2000], [0; 4]);
        header_only.truncate(8);
        assert_eq!(decode_frame(&mut header_only, 1000).unwrap_err().code, 1009);
    }
}
