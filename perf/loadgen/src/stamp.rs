//! The stamp a publisher puts at the front of each message text: `SEQ:SEND_NS`, then a space
//! and `x` padding up to the requested payload size, or a JSON document of about that size
//! (`--payload document`). The receiver parses only these digits.

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

/// What follows the stamp (`--payload`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Payload {
    /// `x` repeated: the smallest work for every hub, and compresses to nothing.
    #[default]
    Pad,
    /// A market-data snapshot in JSON, other values in every row and every message: what
    /// permessage-deflate meets in practice (about 2.5 to 3 times smaller deflated).
    Document,
}

impl Payload {
    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Payload::Pad => "pad",
            Payload::Document => "document",
        }
    }
}

/// Writes the message text of `seq` with this payload kind (see [`write`] and
/// [`write_document`]).
pub fn write_payload(out: &mut String, seq: u64, sent_ns: u64, bytes: usize, kind: Payload) {
    match kind {
        Payload::Pad => write(out, seq, sent_ns, bytes),
        Payload::Document => write_document(out, seq, sent_ns, bytes),
    }
}

const SYMBOLS: [(&str, u32); 24] = [
    ("AAPL", 18_725),
    ("MSFT", 41_312),
    ("NVDA", 12_480),
    ("AMZN", 18_633),
    ("GOOGL", 17_140),
    ("META", 50_211),
    ("TSLA", 24_877),
    ("BRK.B", 41_090),
    ("JPM", 19_822),
    ("V", 27_415),
    ("UNH", 52_630),
    ("XOM", 11_204),
    ("JNJ", 15_918),
    ("PG", 16_540),
    ("MA", 45_777),
    ("HD", 35_268),
    ("COST", 72_015),
    ("ABBV", 16_902),
    ("MRK", 12_611),
    ("AVGO", 138_450),
    ("PEP", 17_033),
    ("KO", 6_188),
    ("ADBE", 48_326),
    ("NFLX", 61_540),
];

/// Writes `SEQ:SEND_NS ` and a JSON document of at most `bytes` bytes in all (at least the
/// header and one row): a level-1 market-data snapshot, a row per symbol, prices, sizes and
/// counts drawn from a generator seeded by `seq`, so that no two rows and no two messages
/// are alike.
pub fn write_document(out: &mut String, seq: u64, sent_ns: u64, bytes: usize) {
    out.clear();
    let _ = write!(
        out,
        "{seq}:{sent_ns} {{\"type\":\"snapshot\",\"feed\":\"equities-l1\",\"venue\":\"XNAS\",\
         \"currency\":\"USD\",\"session\":\"regular\",\"seq\":{seq},\"rows\":["
    );
    let mut rng = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let mut row = String::new();
    for (i, &(sym, base)) in SYMBOLS.iter().cycle().enumerate() {
        let cents = |v: i64| format!("{}.{:02}", v / 100, v % 100);
        let last = i64::from(base) + next(400) as i64 - 200;
        let spread = 1 + next(6) as i64;
        let change = next(900) as i64 - 450;
        row.clear();
        let _ = write!(
            row,
            "{}{{\"sym\":\"{sym}\",\"bid\":{},\"ask\":{},\"last\":{},\"bidSize\":{},\
             \"askSize\":{},\"volume\":{},\"change\":{}{},\"high\":{},\"low\":{},\
             \"trades\":{},\"halted\":{}}}",
            if i == 0 { "" } else { "," },
            cents(last - spread),
            cents(last + spread),
            cents(last),
            100 * (1 + next(40)),
            100 * (1 + next(40)),
            1_000_000 + next(40_000_000),
            if change < 0 { "-" } else { "" },
            cents(change.abs()),
            cents(last + 50 + next(300) as i64),
            cents(last - 50 - next(300) as i64),
            10_000 + next(90_000),
            next(50) == 0,
        );
        if i > 0 && out.len() + row.len() + 2 > bytes {
            break;
        }
        out.push_str(&row);
    }
    out.push_str("]}");
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
    fn documents_are_json_and_differ() {
        let (mut a, mut b) = (String::new(), String::new());
        write_document(&mut a, 7, 1234, 2048);
        write_document(&mut b, 8, 1235, 2048);
        assert!(a.len() <= 2048 && a.len() > 1700, "{}", a.len());
        assert_eq!(parse(a.as_bytes()), Some((7, 1234)));
        let doc: serde_json::Value = serde_json::from_str(a.split_once(' ').unwrap().1).unwrap();
        let rows = doc["rows"].as_array().unwrap();
        assert!(rows.len() >= 8);
        assert_ne!(rows[0]["last"], rows[1]["last"]);
        assert_ne!(a[5..], b[5..]);
        write_document(&mut a, 1, 1, 10);
        assert!(serde_json::from_str::<serde_json::Value>(a.split_once(' ').unwrap().1).is_ok());
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
