//! Turning frames into messages: fragment reassembly, control frames, UTF-8 and close
//! payload checks.
//!
//! An [`Assembler`] lives in each connection but holds memory only while a fragmented
//! message is arriving; an unfragmented message is handed on in place, straight from the
//! buffer it was decoded in.

use fastwebsockets::{CloseCode, OpCode};

use super::decode::FrameHeader;
use super::deflate::Inflater;
use super::{close_code, CloseReason};

/// A complete message from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// A text message, already checked to be valid UTF-8.
    Text(Payload<'a>),
    /// A binary message (the JSON protocol reserves binary frames; raw mode hands them on).
    Binary(Payload<'a>),
    /// A ping with its payload, to be echoed in a pong.
    Ping(&'a [u8]),
    /// A pong.
    Pong,
    /// A close frame with its (valid) code, if it had one.
    Close(Option<u16>),
}

/// The bytes of a message: in place in the read buffer, or reassembled from fragments.
#[derive(Debug, PartialEq, Eq)]
pub enum Payload<'a> {
    /// An unfragmented message, where it was decoded.
    InPlace(&'a mut [u8]),
    /// A message put together from fragments.
    Reassembled(Vec<u8>),
}

impl Payload<'_> {
    /// The message bytes, mutable because the JSON parser works in place.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        match self {
            Payload::InPlace(bytes) => bytes,
            Payload::Reassembled(bytes) => bytes,
        }
    }
}

/// Reassembles fragmented messages and validates what the frame decoder cannot.
#[derive(Debug, Default)]
pub struct Assembler {
    /// Boxed: a pointer while no fragmented message is under way, which is almost always.
    fragment: Option<Box<Fragment>>,
}

#[derive(Debug)]
struct Fragment {
    opcode: OpCode,
    /// Its first frame had RSV1: the whole message inflates once complete.
    compressed: bool,
    data: Vec<u8>,
}

impl Assembler {
    /// True while a fragmented message is incomplete.
    pub fn in_progress(&self) -> bool {
        self.fragment.is_some()
    }

    /// Bytes held for an incomplete fragmented message.
    pub fn held_bytes(&self) -> usize {
        self.fragment.as_ref().map_or(0, |f| f.data.capacity())
    }

    /// Takes one decoded frame (payload already unmasked) and returns the message it
    /// completes, if any. `max_message` bounds a reassembled message (1009 beyond it).
    pub fn push<'a>(
        &mut self,
        header: FrameHeader,
        payload: &'a mut [u8],
        max_message: usize,
    ) -> Result<Option<Message<'a>>, CloseReason> {
        self.push_with(header, payload, max_message, None)
    }

    /// [`Assembler::push`] on a connection that negotiated permessage-deflate: a
    /// compressed message is inflated with `inflater` once complete, within `max_message`
    /// (1009 beyond it), before its UTF-8 is checked.
    pub fn push_with<'a>(
        &mut self,
        header: FrameHeader,
        payload: &'a mut [u8],
        max_message: usize,
        inflater: Option<&mut Inflater>,
    ) -> Result<Option<Message<'a>>, CloseReason> {
        match header.opcode {
            OpCode::Ping => Ok(Some(Message::Ping(payload))),
            OpCode::Pong => Ok(Some(Message::Pong)),
            OpCode::Close => parse_close(payload).map(|code| Some(Message::Close(code))),
            OpCode::Text | OpCode::Binary => {
                if self.fragment.is_some() {
                    return Err(CloseReason::protocol("expected a continuation frame"));
                }
                let compressed = header.compressed;
                if header.fin {
                    let payload = Payload::InPlace(payload);
                    return finish(header.opcode, payload, compressed, inflater, max_message)
                        .map(Some);
                }
                let mut data = Vec::with_capacity(payload.len().max(256));
                data.extend_from_slice(payload);
                self.fragment = Some(Box::new(Fragment {
                    opcode: header.opcode,
                    compressed,
                    data,
                }));
                Ok(None)
            }
            OpCode::Continuation => {
                let Some(fragment) = self.fragment.as_mut() else {
                    return Err(CloseReason::protocol("continuation frame with no message"));
                };
                if fragment.data.len() + payload.len() > max_message {
                    self.fragment = None;
                    return Err(CloseReason {
                        code: close_code::TOO_BIG,
                        reason: "message too big",
                    });
                }
                fragment.data.extend_from_slice(payload);
                if !header.fin {
                    return Ok(None);
                }
                let Fragment {
                    opcode,
                    compressed,
                    data,
                } = *self.fragment.take().expect("checked above");
                let payload = Payload::Reassembled(data);
                finish(opcode, payload, compressed, inflater, max_message).map(Some)
            }
        }
    }
}

fn finish<'a>(
    opcode: OpCode,
    mut payload: Payload<'a>,
    compressed: bool,
    inflater: Option<&mut Inflater>,
    max_message: usize,
) -> Result<Message<'a>, CloseReason> {
    if compressed {
        let Some(inflater) = inflater else {
            return Err(CloseReason::protocol(
                "compressed message without permessage-deflate",
            ));
        };
        let inflated = inflater.inflate(payload.as_mut_slice(), max_message)?;
        payload = Payload::Reassembled(inflated);
    }
    if opcode == OpCode::Binary {
        return Ok(Message::Binary(payload));
    }
    if simdutf8::basic::from_utf8(payload.as_mut_slice()).is_err() {
        return Err(CloseReason {
            code: close_code::INVALID_DATA,
            reason: "text message is not valid UTF-8",
        });
    }
    Ok(Message::Text(payload))
}

/// Validates a close frame's payload: empty, or a permitted code and a UTF-8 reason.
fn parse_close(payload: &[u8]) -> Result<Option<u16>, CloseReason> {
    match payload {
        [] => Ok(None),
        [_] => Err(CloseReason::protocol("close payload of one byte")),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !CloseCode::from(code).is_allowed() {
                return Err(CloseReason::protocol("close code not allowed"));
            }
            if simdutf8::basic::from_utf8(reason).is_err() {
                return Err(CloseReason {
                    code: close_code::INVALID_DATA,
                    reason: "close reason is not valid UTF-8",
                });
            }
            Ok(Some(code))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(fin: bool, opcode: OpCode, len: usize) -> FrameHeader {
        FrameHeader {
            fin,
            opcode,
            compressed: false,
            header_len: 6,
            payload_len: len,
        }
    }

    fn push<'a>(
        a: &mut Assembler,
        fin: bool,
        op: OpCode,
        data: &'a mut [u8],
    ) -> Result<Option<Message<'a>>, CloseReason> {
        let h = header(fin, op, data.len());
        a.push(h, data, 64)
    }

    #[test]
    fn unfragmented_text_is_handed_on_in_place() {
        let mut a = Assembler::default();
        let mut data = *b"hello";
        let msg = push(&mut a, true, OpCode::Text, &mut data).unwrap();
        assert_eq!(
            msg,
            Some(Message::Text(Payload::InPlace(&mut b"hello".to_vec())))
        );
        assert!(!a.in_progress());
    }

    #[test]
    fn fragments_are_joined_and_control_frames_may_interleave() {
        let mut a = Assembler::default();
        assert_eq!(
            push(&mut a, false, OpCode::Text, &mut b"hel".to_vec()).unwrap(),
            None
        );
        assert_eq!(
            push(&mut a, true, OpCode::Ping, &mut b"p".to_vec()).unwrap(),
            Some(Message::Ping(b"p"))
        );
        assert_eq!(
            push(&mut a, false, OpCode::Continuation, &mut b"lo ".to_vec()).unwrap(),
            None
        );
        let mut last = b"you".to_vec();
        let done = push(&mut a, true, OpCode::Continuation, &mut last).unwrap();
        assert_eq!(
            done,
            Some(Message::Text(Payload::Reassembled(b"hello you".to_vec())))
        );
        assert!(!a.in_progress());
    }

    #[test]
    fn sequencing_errors_are_protocol_errors() {
        let mut a = Assembler::default();
        let err = push(&mut a, true, OpCode::Continuation, &mut b"x".to_vec()).unwrap_err();
        assert_eq!(err.code, 1002);

        let mut a = Assembler::default();
        push(&mut a, false, OpCode::Text, &mut b"x".to_vec()).unwrap();
        let err = push(&mut a, true, OpCode::Text, &mut b"y".to_vec()).unwrap_err();
        assert_eq!(err.code, 1002);
    }

    #[test]
    fn reassembly_is_bounded() {
        let mut a = Assembler::default();
        push(&mut a, false, OpCode::Text, &mut [b'a'; 40]).unwrap();
        let err = push(&mut a, true, OpCode::Continuation, &mut [b'a'; 40]).unwrap_err();
        assert_eq!(err.code, 1009);
        assert!(!a.in_progress());
    }

    #[test]
    fn invalid_utf8_closes_with_1007_even_across_fragments() {
        let mut a = Assembler::default();
        let err = push(&mut a, true, OpCode::Text, &mut [0xff, 0xfe]).unwrap_err();
        assert_eq!(err.code, 1007);

        let mut a = Assembler::default();
        // "é" is C3 A9: split across two fragments it is valid, truncated it is not.
        push(&mut a, false, OpCode::Text, &mut [0xc3]).unwrap();
        assert!(push(&mut a, true, OpCode::Continuation, &mut [0xa9]).is_ok());
        push(&mut a, false, OpCode::Text, &mut [0xc3]).unwrap();
        let err = push(&mut a, true, OpCode::Continuation, &mut [b'a']).unwrap_err();
        assert_eq!(err.code, 1007);
    }

    #[test]
    fn close_payloads_are_validated() {
        let mut a = Assembler::default();
        assert_eq!(
            push(&mut a, true, OpCode::Close, &mut []).unwrap(),
            Some(Message::Close(None))
        );
        let mut ok = [0x03, 0xe8, b'b', b'y', b'e'];
        assert_eq!(
            push(&mut a, true, OpCode::Close, &mut ok).unwrap(),
            Some(Message::Close(Some(1000)))
        );
        for bad in [
            vec![0x03],
            vec![0x03, 0xed],
            vec![0x00, 0x0a],
            vec![0x03, 0xec],
        ] {
            let mut bad = bad;
            let err = push(&mut a, true, OpCode::Close, &mut bad).unwrap_err();
            assert_eq!(err.code, 1002, "{bad:?}");
        }
        let err = push(&mut a, true, OpCode::Close, &mut [0x03, 0xe8, 0xff]).unwrap_err();
        assert_eq!(err.code, 1007);
    }

    #[test]
    fn binary_messages_are_handed_on_with_their_bytes() {
        let mut a = Assembler::default();
        assert_eq!(
            push(&mut a, true, OpCode::Binary, &mut [1, 2, 3]).unwrap(),
            Some(Message::Binary(Payload::InPlace(&mut [1, 2, 3])))
        );
    }
}
