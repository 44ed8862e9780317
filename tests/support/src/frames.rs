//! WebSocket frames built and parsed by hand, as RFC 6455 section 5.2 lays them out, for
//! the frames tungstenite refuses to send and for reading exactly what the server wrote.

use serde_json::Value;

/// Builds a WebSocket frame with the shortest length encoding. `rsv` holds the three
/// reserved bits in the low bits (RSV1 = 4). With `mask`, the payload is masked with it.
pub fn frame(fin: bool, rsv: u8, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push((u8::from(fin) << 7) | ((rsv & 7) << 4) | (opcode & 0x0f));
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= u16::MAX as usize => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

pub const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A final, masked frame, as a client must send.
pub fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame(true, 0, opcode, payload, Some(MASK))
}

/// A masked text frame holding `value` as JSON.
pub fn masked_json(value: &Value) -> Vec<u8> {
    masked(0x1, value.to_string().as_bytes())
}

/// The payload of a close frame: `code` and `reason`, which may be any bytes.
pub fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason);
    payload
}

/// A masked close frame with `code`.
pub fn masked_close(code: u16, reason: &str) -> Vec<u8> {
    masked(0x8, &close_payload(code, reason.as_bytes()))
}

/// A frame the server sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub rsv: u8,
    pub opcode: u8,
    pub masked: bool,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The code of a close frame.
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == 0x8 && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }

    pub fn close_reason(&self) -> String {
        String::from_utf8_lossy(self.payload.get(2..).unwrap_or_default()).into_owned()
    }

    pub fn json(&self) -> Value {
        assert_eq!(self.opcode, 0x1, "not a text frame: {self:?}");
        serde_json::from_slice(&self.payload)
            .unwrap_or_else(|e| panic!("text frame is not JSON ({e}): {self:?}"))
    }

    /// A line for a failure message: the start of a text, the code of a close, or the
    /// opcode and size of anything else.
    pub fn summary(&self) -> String {
        match self.opcode {
            0x1 => String::from_utf8_lossy(&self.payload)
                .chars()
                .take(120)
                .collect(),
            0x8 => format!("close {:?} {:?}", self.close_code(), self.close_reason()),
            op => format!("opcode {op:#x} ({} bytes)", self.payload.len()),
        }
    }
}

/// Parses one frame from the front of `buf`: the frame and the bytes it took.
pub fn parse_frame(buf: &[u8]) -> Option<(Frame, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let fin = buf[0] & 0x80 != 0;
    let rsv = (buf[0] >> 4) & 7;
    let opcode = buf[0] & 0x0f;
    let masked = buf[1] & 0x80 != 0;
    let (len, mut at) = match buf[1] & 0x7f {
        126 => {
            if buf.len() < 4 {
                return None;
            }
            (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4)
        }
        127 => {
            if buf.len() < 10 {
                return None;
            }
            (
                u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize,
                10,
            )
        }
        n => (n as usize, 2),
    };
    let key = if masked {
        if buf.len() < at + 4 {
            return None;
        }
        let key = [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
        at += 4;
        Some(key)
    } else {
        None
    };
    if buf.len() < at + len {
        return None;
    }
    let mut payload = buf[at..at + len].to_vec();
    if let Some(key) = key {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= key[i % 4];
        }
    }
    Some((
        Frame {
            fin,
            rsv,
            opcode,
            masked,
            payload,
        },
        at + len,
    ))
}
