//! The stamp a publisher puts at the front of each message text: `SEQ:SEND_NS`, then a space
//! and `x` padding up to the requested payload size. The receiver parses only these digits.

use std::fmt::Write;

/// Writes the message text for `seq` sent at `sent_ns` into `out` (cleared first), padded
/// to `payload_bytes` when the stamp is shorter.
pub fn write(out: &mut String, seq: u64, sent_ns: u64, payload_bytes: usize) {
    out.clear();
    let _ = write!(out, "{seq}:{sent_ns}");
    if out.len() < payload_bytes {
        out.push(' ');
        while out.len() < payload_bytes {
            out.push('x');
        }
    }
}

fn digits(b: &[u8]) -> Option<(u64, usize)> {
    let mut value: u64 = 0;
    let mut n = 0;
    while let Some(&c) = b.get(n) {
        if !c.is_ascii_digit() {
            break;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
        n += 1;
    }
    (n > 0).then_some((value, n))
}

/// Parses `SEQ:SEND_NS` from the front of `text`. The stamp must end at a non-digit or at
/// the end of `text`.
#[inline]
pub fn parse(text: &[u8]) -> Option<(u64, u64)> {
    let (seq, n) = digits(text)?;
    if text.get(n) != Some(&b':') {
        return None;
    }
    let (sent, m) = digits(&text[n + 1..])?;
    Some((seq, sent))
        .filter(|_| m > 0)
        .filter(|_| text.get(n + 1 + m).is_none_or(|c| !c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut s = String::new();
        write(&mut s, 42, 123_456_789, 64);
        assert_eq!(s.len(), 64);
        assert!(s.starts_with("42:123456789 x"));
        assert_eq!(parse(s.as_bytes()), Some((42, 123_456_789)));
        write(&mut s, u64::MAX, u64::MAX, 0);
        assert_eq!(parse(s.as_bytes()), Some((u64::MAX, u64::MAX)));
        assert_eq!(parse(br#"7:99","time":1}"#), Some((7, 99)));
    }

    #[test]
    fn rejects_non_stamps() {
        for bad in [
            &b""[..],
            b"hello",
            b"12",
            b"12:",
            b":5",
            b"1:x",
            b"99999999999999999999999:1",
        ] {
            assert_eq!(parse(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
