//! wss://: the TLS client configuration of a run, and the handshake on a connected socket.
//!
//! One configuration serves every connection of the run, so it is built once from `--ca` /
//! `--insecure` and kept process-wide, next to the targets it is for. There is no default
//! trust store: every target is on this machine's loopback, where a certificate from a public
//! CA is never what a benchmark meets.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ring, verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();

/// How the server's certificate is checked.
pub enum Trust<'a> {
    /// Against the certificates of this PEM file (a self-signed test certificate, or a CA).
    CaFile(&'a Path),
    /// Not at all (`--insecure`): for loopback benchmarks only.
    Anything,
}

/// A client configuration that trusts `trust`, with ring as its crypto.
pub fn client_config(trust: Trust<'_>) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?;
    let config = match trust {
        Trust::CaFile(path) => {
            let pem = std::fs::read(path).map_err(|e| format!("--ca {}: {e}", path.display()))?;
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| format!("--ca {}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("--ca {}: {e}", path.display()))?;
            }
            if roots.is_empty() {
                return Err(format!("--ca {}: no certificate in it", path.display()));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Trust::Anything => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
            .with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// Makes `config` the one every wss:// connection of this process uses. A second call is
/// refused: the connections of one run must not differ in what they trust.
pub fn install(config: Arc<ClientConfig>) -> Result<(), String> {
    CONFIG
        .set(config)
        .map_err(|_| "the TLS configuration is already set".to_string())
}

/// The TLS handshake on `tcp`, sending `server_name` as SNI and checking the certificate
/// against it. The caller puts a timeout around this.
pub async fn handshake(
    tcp: TcpStream,
    server_name: &ServerName<'static>,
) -> Result<TlsStream<TcpStream>, String> {
    let config = CONFIG
        .get()
        .ok_or("wss:// needs --ca FILE or --insecure")?
        .clone();
    connect_with(config, tcp, server_name).await
}

/// [`handshake`] with a configuration of the caller's.
pub async fn connect_with(
    config: Arc<ClientConfig>,
    tcp: TcpStream,
    server_name: &ServerName<'static>,
) -> Result<TlsStream<TcpStream>, String> {
    TlsConnector::from(config)
        .connect(server_name.clone(), tcp)
        .await
        .map_err(|e| format!("TLS handshake: {e}"))
}

/// Accepts any certificate for any name, but still checks that the server holds the key of
/// the certificate it sent, so the handshake costs what a verified one costs on the wire.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::{self, Closed, Stream, WsConn};
    use crate::target;
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use rustls::ServerConfig;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio_rustls::TlsAcceptor;

    /// A server text frame (unmasked) of `payload`.
    fn text_frame(payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0x81];
        match payload.len() {
            n if n < 126 => f.push(n as u8),
            n if n <= 0xffff => {
                f.push(126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(payload);
        f
    }

    struct Cert {
        pem: String,
        der: CertificateDer<'static>,
        key: PrivateKeyDer<'static>,
    }

    fn cert_for(name: &str) -> Cert {
        let rcgen::CertifiedKey { cert, signing_key } =
            rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
        Cert {
            pem: cert.pem(),
            der: cert.der().clone(),
            key: PrivatePkcs8KeyDer::from(signing_key.serialize_der()).into(),
        }
    }

    fn ca_file(cert: &Cert, tag: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!(
            "neonex-loadgen-tls-{}-{tag}.pem",
            std::process::id()
        ));
        std::fs::write(&path, &cert.pem).unwrap();
        path
    }

    /// A one-connection wss:// server on 127.0.0.1 with `cert`: answers the upgrade, sends
    /// `messages`, expects the client's text `hello`, then closes with 1000 and waits for
    /// the client's close frame.
    async fn serve_once(listener: TcpListener, cert: &Cert, messages: &[Vec<u8>]) {
        let config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.der.clone()], cert.key.clone_key())
            .unwrap();
        let (tcp, _) = listener.accept().await.unwrap();
        let Ok(mut tls) = TlsAcceptor::from(Arc::new(config)).accept(tcp).await else {
            return;
        };
        let mut head = Vec::new();
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut chunk = [0u8; 1024];
            let n = tls.read(&mut chunk).await.unwrap();
            assert!(n > 0, "client closed during the upgrade");
            head.extend_from_slice(&chunk[..n]);
        }
        assert!(head.starts_with(b"GET /ws HTTP/1.1\r\n"));
        let mut out =
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
                .to_vec();
        for m in messages {
            out.extend_from_slice(&text_frame(m));
        }
        tls.write_all(&out).await.unwrap();
        let mut frame = [0u8; 11];
        tls.read_exact(&mut frame).await.unwrap();
        assert_eq!(&frame[..2], &[0x81, 0x80 | 5], "a masked 5-byte text frame");
        let text: Vec<u8> = (0..5).map(|i| frame[6 + i] ^ frame[2 + i % 4]).collect();
        assert_eq!(text, b"hello");
        tls.write_all(&[0x88, 2, 0x03, 0xe8]).await.unwrap();
        let mut close = [0u8; 8];
        tls.read_exact(&mut close).await.unwrap();
        assert_eq!(close[0], 0x88);
    }

    /// Connects to `port` over TLS with `config`, upgrades, sends `hello` and collects text
    /// messages until the server's close frame.
    async fn client(config: Arc<ClientConfig>, port: u16) -> Result<Vec<Vec<u8>>, String> {
        let target = target::parse(&format!("wss://localhost:{port}/ws"))?;
        let tcp = WsConn::tcp_connect(&target, None).await?;
        let name = target.tls.as_ref().expect("a wss:// target");
        let stream = Stream::Tls(Box::new(connect_with(config, tcp, name).await?));
        let mut conn = WsConn::upgrade(stream, &target, "/ws", 1 << 20, 7, false).await?;
        conn.queue_text(b"hello");
        conn.flush().await.map_err(|e| e.to_string())?;
        let scratch = conn::new_scratch();
        let mut got = Vec::new();
        loop {
            match conn
                .read_batch(&scratch, |text, _| {
                    got.push(text.to_vec());
                    None
                })
                .await
            {
                Ok(()) => {}
                Err(Closed::CloseFrame {
                    code: Some(1000), ..
                }) => return Ok(got),
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    fn run<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn wss_with_the_servers_certificate_as_ca() {
        let cert = cert_for("localhost");
        let path = ca_file(&cert, "ok");
        let config = client_config(Trust::CaFile(&path));
        std::fs::remove_file(&path).unwrap();
        let config = config.unwrap();
        // Larger than a TLS record (16 KiB) and than one read (64 KiB): decrypted in pieces.
        let messages = vec![b"one".to_vec(), vec![b'x'; 100_000], b"three".to_vec()];
        let got = run(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let (_, got) =
                tokio::join!(serve_once(listener, &cert, &messages), client(config, port));
            got
        });
        assert_eq!(got.unwrap(), messages);
    }

    #[test]
    fn wss_refuses_an_untrusted_certificate_unless_insecure() {
        let cert = cert_for("localhost");
        let other = ca_file(&cert_for("localhost"), "other");
        let config = client_config(Trust::CaFile(&other));
        std::fs::remove_file(&other).unwrap();
        let refused = run(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let (_, got) = tokio::join!(
                serve_once(listener, &cert, &[]),
                client(config.unwrap(), port)
            );
            got
        });
        let err = refused.unwrap_err();
        assert!(err.contains("TLS handshake"), "{err}");

        let insecure = client_config(Trust::Anything).unwrap();
        let hi = [b"hi".to_vec()];
        let got = run(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let (_, got) = tokio::join!(serve_once(listener, &cert, &hi), client(insecure, port));
            got
        });
        assert_eq!(got.unwrap(), hi);
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let path = std::env::temp_dir().join(format!(
            "neonex-loadgen-tls-{}-empty.pem",
            std::process::id()
        ));
        std::fs::write(&path, "not a certificate\n").unwrap();
        let result = client_config(Trust::CaFile(&path));
        std::fs::remove_file(&path).unwrap();
        assert!(result.unwrap_err().contains("no certificate"));
    }
}
