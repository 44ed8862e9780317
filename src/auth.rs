//! Who is connecting: JWT verification for the upgrade request.
//!
//! The token comes from the `token` query parameter or an `Authorization: Bearer` header.
//! Exactly one algorithm is accepted, the one the configuration implies: HS256 with a
//! shared secret, RS256 or ES256 with a PEM public key. A token naming any other
//! algorithm, `none` included, is refused, as are expired, not-yet-valid, badly signed and
//! malformed ones; the claim `sub` (string or number) is the user id.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::config::{AuthConfig, ConfigError};
use crate::http::RequestHead;
use crate::ids::is_valid_user_id;

/// Checks tokens against the configured key.
pub struct Authenticator {
    key: DecodingKey,
    validation: Validation,
}

/// Why a token was refused (answered with HTTP 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `token` parameter and no bearer header.
    #[error("missing token")]
    Missing,
    /// The token failed verification; the text says how.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// The token's `sub` is not a usable user id.
    #[error("invalid token: sub must be a string or number of 1 to 128 bytes")]
    BadSubject,
}

#[derive(Deserialize)]
struct Claims {
    sub: serde_json::Value,
}

impl Authenticator {
    /// Builds the authenticator for `config`, or `None` when authentication is off.
    pub fn new(config: &AuthConfig) -> Result<Option<Authenticator>, ConfigError> {
        let (key, algorithm) = match (&config.jwt_secret, &config.jwt_public_key) {
            (None, None) => return Ok(None),
            (Some(_), Some(_)) => {
                return Err(ConfigError::invalid(
                    "auth.jwt_public_key",
                    "auth.jwt_secret and auth.jwt_public_key exclude each other",
                ))
            }
            (Some(secret), None) => {
                if secret.is_empty() {
                    return Err(ConfigError::invalid(
                        "auth.jwt_secret",
                        "auth.jwt_secret must not be empty",
                    ));
                }
                (
                    DecodingKey::from_secret(secret.as_bytes()),
                    Algorithm::HS256,
                )
            }
            (None, Some(pem)) => {
                if let Ok(key) = DecodingKey::from_rsa_pem(pem.as_bytes()) {
                    (key, Algorithm::RS256)
                } else if let Ok(key) = DecodingKey::from_ec_pem(pem.as_bytes()) {
                    (key, Algorithm::ES256)
                } else {
                    return Err(ConfigError::invalid(
                        "auth.jwt_public_key",
                        "auth.jwt_public_key: not a PEM RSA or EC (P-256) public key",
                    ));
                }
            }
        };
        let mut validation = Validation::new(algorithm);
        validation.leeway = config.leeway.as_secs();
        validation.validate_nbf = true;
        // `sub` is required by `Claims` itself: the crate's own check wants it a string, and
        // a numeric `sub` is a user id too.
        validation.set_required_spec_claims(&["exp"]);
        match &config.audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        if let Some(issuer) = &config.issuer {
            validation.set_issuer(&[issuer]);
        }
        Ok(Some(Authenticator { key, validation }))
    }

    /// Verifies the token of an upgrade request and returns its user id.
    pub fn authenticate(&self, request: &RequestHead) -> Result<String, AuthError> {
        let token = bearer_token(request)
            .map(str::to_owned)
            .or_else(|| request.query_param("token"))
            .ok_or(AuthError::Missing)?;
        let data = jsonwebtoken::decode::<Claims>(&token, &self.key, &self.validation)
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        let user = match data.claims.sub {
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n) => n.to_string(),
            _ => return Err(AuthError::BadSubject),
        };
        if !is_valid_user_id(&user) {
            return Err(AuthError::BadSubject);
        }
        Ok(user)
    }
}

/// The token of an `Authorization: Bearer TOKEN` header (a JWT here, the API key in
/// [`crate::api`]).
pub(crate) fn bearer_token(request: &RequestHead) -> Option<&str> {
    let value = request.authorization.as_deref()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn config(secret: &str) -> AuthConfig {
        AuthConfig {
            jwt_secret: Some(secret.into()),
            leeway: Duration::from_secs(5),
            ..AuthConfig::default()
        }
    }

    fn request(token: &str) -> RequestHead {
        RequestHead {
            query: Some(format!("token={token}")),
            ..RequestHead::default()
        }
    }

    fn hs256(claims: serde_json::Value, secret: &str) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    #[test]
    fn a_valid_token_yields_its_subject_string_or_number() {
        let auth = Authenticator::new(&config("s3cret")).unwrap().unwrap();
        let t = hs256(
            serde_json::json!({"sub": "ann", "exp": now() + 60}),
            "s3cret",
        );
        assert_eq!(auth.authenticate(&request(&t)).unwrap(), "ann");
        let t = hs256(serde_json::json!({"sub": 42, "exp": now() + 60}), "s3cret");
        let bearer = RequestHead {
            authorization: Some(format!("Bearer {t}")),
            ..RequestHead::default()
        };
        assert_eq!(auth.authenticate(&bearer).unwrap(), "42");
    }

    #[test]
    fn bad_tokens_are_refused() {
        let auth = Authenticator::new(&config("s3cret")).unwrap().unwrap();
        let expired = hs256(serde_json::json!({"sub": "a", "exp": now() - 60}), "s3cret");
        let early = hs256(
            serde_json::json!({"sub": "a", "exp": now() + 600, "nbf": now() + 300}),
            "s3cret",
        );
        let wrong_key = hs256(serde_json::json!({"sub": "a", "exp": now() + 60}), "other");
        let no_exp = hs256(serde_json::json!({"sub": "a"}), "s3cret");
        let no_sub = hs256(serde_json::json!({"exp": now() + 60}), "s3cret");
        // {"alg":"none"} with the same claims and an empty signature.
        let none = format!(
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.",
            base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                format!(r#"{{"sub":"a","exp":{}}}"#, now() + 60)
            )
        );
        for token in [
            expired,
            early,
            wrong_key,
            no_exp,
            no_sub,
            none,
            "garbage".into(),
        ] {
            assert!(auth.authenticate(&request(&token)).is_err(), "{token}");
        }
        assert_eq!(
            auth.authenticate(&RequestHead::default()),
            Err(AuthError::Missing)
        );
    }

    #[test]
    fn leeway_covers_small_clock_skew() {
        let auth = Authenticator::new(&config("k")).unwrap().unwrap();
        let just_expired = hs256(serde_json::json!({"sub": "a", "exp": now() - 2}), "k");
        assert!(auth.authenticate(&request(&just_expired)).is_ok());
    }

    #[test]
    fn audience_and_issuer_are_checked_when_configured() {
        let mut c = config("k");
        c.audience = Some("neonex".into());
        c.issuer = Some("https://auth.example".into());
        let auth = Authenticator::new(&c).unwrap().unwrap();
        let good = hs256(
            serde_json::json!({"sub": "a", "exp": now() + 60, "aud": "neonex", "iss": "https://auth.example"}),
            "k",
        );
        let bad_aud = hs256(
            serde_json::json!({"sub": "a", "exp": now() + 60, "aud": "other", "iss": "https://auth.example"}),
            "k",
        );
        assert!(auth.authenticate(&request(&good)).is_ok());
        assert!(auth.authenticate(&request(&bad_aud)).is_err());
    }

    #[test]
    fn configuration_mistakes_are_reported() {
        assert!(Authenticator::new(&AuthConfig::default())
            .unwrap()
            .is_none());
        assert!(Authenticator::new(&config("")).is_err());
        let both = AuthConfig {
            jwt_public_key: Some("x".into()),
            ..config("k")
        };
        assert!(Authenticator::new(&both).is_err());
        let junk = AuthConfig {
            jwt_public_key: Some("not a pem".into()),
            ..AuthConfig::default()
        };
        assert!(Authenticator::new(&junk).is_err());
    }
}
