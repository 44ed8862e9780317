//! Wall-clock time, as the hub stamps it on messages.

use serde_json::Value;

/// Seconds since the Unix epoch.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Asserts `time` is an integer within a few seconds of now.
pub fn assert_time_now(msg: &Value) {
    let time = msg["time"]
        .as_i64()
        .unwrap_or_else(|| panic!("`time` is not an integer in {msg}"));
    assert!(
        (time - now_secs()).abs() <= 5,
        "`time` {time} is not near now ({}) in {msg}",
        now_secs()
    );
}
