//! Who may call the API: the holder of `api.key`, or, without one, a client on this host.

use super::ApiError;
use crate::forwarded::ClientAddress;
use crate::http::RequestHead;

/// Checks that the caller may use the API. Without a key, only a `client` on this host
/// may ([`ClientAddress::local`]: a request relayed by a proxy never is, unless the proxy
/// is trusted and names a loopback client).
pub fn authorize(
    request: &RequestHead,
    key: Option<&str>,
    client: &ClientAddress,
) -> Result<(), ApiError> {
    let Some(key) = key else {
        if client.local {
            return Ok(());
        }
        return Err(ApiError::new(
            403,
            "forbidden",
            "no api.key is configured, so the API answers loopback clients only (and no request relayed by an untrusted proxy)",
        ));
    };
    let offered = request
        .api_key
        .as_deref()
        .or_else(|| crate::auth::bearer_token(request))
        .ok_or_else(|| {
            ApiError::new(
                401,
                "unauthorized",
                "send the API key as Authorization: Bearer KEY or X-API-Key: KEY",
            )
        })?;
    if constant_time_eq(offered.as_bytes(), key.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::new(401, "unauthorized", "wrong API key"))
    }
}

/// Compares without leaking, through timing, how much of the key was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, byte) in b.iter().enumerate() {
        diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ byte);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_or_loopback_is_required() {
        let loopback = &ClientAddress {
            addr: "127.0.0.1:5000".parse().unwrap(),
            local: true,
        };
        let remote = &ClientAddress {
            addr: "10.1.2.3:5000".parse().unwrap(),
            local: false,
        };
        let bare = RequestHead {
            method: "GET".into(),
            path: "/api/rooms".into(),
            ..RequestHead::default()
        };
        assert!(authorize(&bare, None, loopback).is_ok());
        assert_eq!(authorize(&bare, None, remote).unwrap_err().status, 403);
        assert_eq!(
            authorize(&bare, Some("k"), loopback).unwrap_err().status,
            401
        );
        let bearer = RequestHead {
            authorization: Some("Bearer k".into()),
            ..bare.clone()
        };
        assert!(authorize(&bearer, Some("k"), remote).is_ok());
        let header = RequestHead {
            api_key: Some("wrong".into()),
            ..bare
        };
        assert_eq!(
            authorize(&header, Some("k"), remote).unwrap_err().status,
            401
        );
    }
}
