//! The server's TLS setup: the certificate chain and key that `tls.cert` and `tls.key`
//! name, made into the rustls configuration that new connections start from.
//!
//! Everything that can be wrong with the files is found here, once, when the settings are
//! checked, so that a hub never starts with TLS it cannot speak: each error names the key
//! at fault. The same loading runs again on [`ServerTls::reload`] (SIGHUP for `neonex
//! serve`), where a failure keeps the configuration in use: a certificate renewal gone
//! wrong must not take the listener down.
//!
//! The crypto is rustls's `ring` provider, with TLS 1.3 and 1.2, and ALPN `http/1.1`, the
//! one protocol a WebSocket upgrade is made over.

use std::path::Path;
use std::sync::{Arc, RwLock};

use rustls::crypto::ring;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

use crate::config::{ConfigError, TlsConfig};

/// The rustls configuration that `files` describe; `None` when TLS is off.
pub(crate) fn load(files: &TlsConfig) -> Result<Option<Arc<ServerConfig>>, ConfigError> {
    let (cert, key) = match (&files.cert, &files.key) {
        (None, None) => return Ok(None),
        (Some(cert), Some(key)) => (cert, key),
        (Some(_), None) => return Err(unpaired("tls.key", "tls.cert")),
        (None, Some(_)) => return Err(unpaired("tls.cert", "tls.key")),
    };
    let chain = read_chain(cert)?;
    let private_key = read_key(key)?;
    let provider = Arc::new(ring::default_provider());
    let versions = [&rustls::version::TLS13, &rustls::version::TLS12];
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|e| ConfigError::invalid("tls.cert", format!("tls.cert: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, private_key)
        .map_err(|e| unusable(cert, key, e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(Arc::new(config)))
}

fn unpaired(missing: &'static str, set: &str) -> ConfigError {
    ConfigError::invalid(
        missing,
        format!("{missing} is not set: {set} and {missing} go together (TLS needs both the certificate and its key)"),
    )
}

fn read_file(key: &'static str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| {
        ConfigError::invalid(key, format!("{key}: cannot read {}: {e}", path.display()))
    })
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let pem = read_file("tls.cert", path)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            ConfigError::invalid(
                "tls.cert",
                format!("tls.cert: {} is not valid PEM: {e}", path.display()),
            )
        })?;
    if chain.is_empty() {
        return Err(ConfigError::invalid(
            "tls.cert",
            format!(
                "tls.cert: no certificate in {} (expected a PEM \"BEGIN CERTIFICATE\" section)",
                path.display()
            ),
        ));
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, ConfigError> {
    let pem = read_file("tls.key", path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        let why = match e {
            pem::Error::NoItemsFound => {
                "no private key (expected a PEM \"BEGIN PRIVATE KEY\", \"BEGIN RSA PRIVATE KEY\" or \"BEGIN EC PRIVATE KEY\" section)".to_owned()
            }
            other => format!("not a valid PEM private key: {other}"),
        };
        ConfigError::invalid("tls.key", format!("tls.key: {}: {why}", path.display()))
    })
}

/// The certificate and key were read but rustls cannot serve with them: most often a
/// key that is not the certificate's.
fn unusable(cert: &Path, key: &Path, e: rustls::Error) -> ConfigError {
    let message = match e {
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => format!(
            "tls.key: the private key in {} does not match the certificate in {}",
            key.display(),
            cert.display()
        ),
        other => format!(
            "tls.key: cannot use the key in {} with the certificate in {}: {other}",
            key.display(),
            cert.display()
        ),
    };
    ConfigError::invalid("tls.key", message)
}

/// The configuration new connections start from, and the files it was read from.
///
/// Each accept reads it once (a read lock and a reference count); a reload swaps it, and
/// connections already open keep the one they started with.
pub(crate) struct ServerTls {
    files: TlsConfig,
    current: RwLock<Arc<ServerConfig>>,
}

impl ServerTls {
    pub fn new(files: TlsConfig, config: Arc<ServerConfig>) -> ServerTls {
        ServerTls {
            files,
            current: RwLock::new(config),
        }
    }

    /// What the next connection starts from.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reads the files again; new connections use what they now hold. On an error the
    /// configuration in use stays.
    pub fn reload(&self) -> Result<(), ConfigError> {
        let config = load(&self.files)?.expect("TLS stays on while the hub runs");
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = config;
        Ok(())
    }
}
