//! TLS on the listeners (`tls = { cert_file, key_file }`), with rustls on
//! `ring`.
//!
//! # What is served
//! TLS 1.3 and 1.2 with rustls's safe defaults; ALPN offers `h2` and
//! `http/1.1`, so a client gets HTTP/2 when it asks for it. Both listeners
//! (the API's and `metrics_listen`) serve the same certificate.
//!
//! # What is checked at start
//! [`Tls::new`] stops the start, naming the file, when a file cannot
//! be read, holds no PEM certificate or key, when the key does not belong
//! to the first certificate, or when a certificate of the chain has expired
//! or is not valid yet. The chain's trust is not checked: the server does
//! not know its clients' roots.
//!
//! # Reloading
//! On SIGHUP ([`CertificateResolver::reload`]) the certificate and key
//! files are read and checked again; new handshakes get the new pair,
//! connections already open keep theirs. A pair that fails the checks is
//! logged and the old one kept. `client_ca_file` is read at start only.
//!
//! # Client certificates
//! With `client_ca_file`, every client must present a certificate issued by
//! one of its CAs; the handshake fails otherwise. Bearer tokens are still
//! required: the certificate only admits the connection.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use zeroize::Zeroizing;

use crate::config::TlsSettings;

/// The ALPN protocols offered, most preferred first.
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Why the TLS files cannot be served; every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read.
    #[error("cannot read the TLS {what} file {}: {source}", path.display())]
    Read {
        /// `certificate`, `key` or `client CA`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file holds no usable PEM item of the kind expected.
    #[error("the TLS {what} file {} {problem}", path.display())]
    Pem {
        /// `certificate`, `key` or `client CA`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// The key does not belong to the certificate.
    #[error(
        "the TLS key file {} does not match the certificate in {} (the key's public half is not the certificate's)",
        key.display(),
        cert.display()
    )]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// A certificate of the chain has expired.
    #[error("the TLS certificate file {}: certificate {index} of the chain expired at {not_after}", path.display())]
    Expired {
        /// The certificate file.
        path: PathBuf,
        /// Which certificate (1 is the server's own).
        index: usize,
        /// Its `notAfter`, RFC 3339.
        not_after: String,
    },
    /// A certificate of the chain is not valid yet.
    #[error("the TLS certificate file {}: certificate {index} of the chain is not valid before {not_before}", path.display())]
    NotYetValid {
        /// The certificate file.
        path: PathBuf,
        /// Which certificate (1 is the server's own).
        index: usize,
        /// Its `notBefore`, RFC 3339.
        not_before: String,
    },
}

/// The ring provider every TLS object of the server is built with (never
/// the process default, which another crate of the same binary might set).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(what: &'static str, path: &Path) -> Result<Zeroizing<Vec<u8>>, TlsError> {
    std::fs::read(path).map(Zeroizing::new).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

fn pem_error(what: &'static str, path: &Path, problem: impl Into<String>) -> TlsError {
    TlsError::Pem { what, path: path.to_path_buf(), problem: problem.into() }
}

fn certificates(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(what, path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(what, path, format!("is not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(pem_error(what, path, "holds no PEM certificate (-----BEGIN CERTIFICATE-----)"));
    }
    Ok(certs)
}

/// The CA certificates of the PEM file at `path`, as the roots of a client
/// (the CLI's `--server --ca-cert`).
///
/// # Errors
/// The file cannot be read, is not PEM, holds no certificate or an
/// unusable one; the message names the file.
pub(crate) fn load_roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in certificates("CA certificate", path).map_err(|e| e.to_string())? {
        roots.add(cert).map_err(|e| {
            pem_error("CA certificate", path, format!("holds an unusable CA certificate: {e}")).to_string()
        })?;
    }
    Ok(roots)
}

fn rfc3339(t: UnixTime) -> String {
    let at = UNIX_EPOCH + Duration::from_secs(t.as_secs());
    humantime::format_rfc3339_seconds(at).to_string()
}

/// Checks that every certificate of `chain` is valid at `now`.
///
/// webpki checks a certificate's own validity period first, before any
/// issuer or trust question; verified against no trust anchor, a
/// certificate valid now fails with "unknown issuer" (ignored here), one
/// out of its period with the period's error.
fn check_validity(path: &Path, chain: &[CertificateDer<'_>], now: UnixTime) -> Result<(), TlsError> {
    let algorithms = provider().signature_verification_algorithms.all;
    for (i, der) in chain.iter().enumerate() {
        let cert = webpki::EndEntityCert::try_from(der).map_err(|e| {
            pem_error("certificate", path, format!("holds a certificate ({}) that is not X.509: {e}", i + 1))
        })?;
        let checked =
            cert.verify_for_usage(algorithms, &[], &[], now, webpki::KeyUsage::server_auth(), None, None);
        match checked {
            Err(webpki::Error::CertExpired { not_after, .. }) => {
                return Err(TlsError::Expired {
                    path: path.to_path_buf(),
                    index: i + 1,
                    not_after: rfc3339(not_after),
                })
            }
            Err(webpki::Error::CertNotValidYet { not_before, .. }) => {
                return Err(TlsError::NotYetValid {
                    path: path.to_path_buf(),
                    index: i + 1,
                    not_before: rfc3339(not_before),
                })
            }
            _ => {}
        }
    }
    Ok(())
}

/// The certificate chain and key of `settings`, read and checked: the key
/// matches the first certificate and every certificate is valid at `now`.
///
/// # Errors
/// A [`TlsError`] naming the file at fault.
pub fn load_certified_key(settings: &TlsSettings, now: SystemTime) -> Result<CertifiedKey, TlsError> {
    let chain = certificates("certificate", &settings.cert_file)?;
    let key_path = &settings.key_file;
    let key_bytes = read("key", key_path)?;
    let key = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| {
        pem_error("key", key_path, format!("holds no usable PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"))
    })?;
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| pem_error("key", key_path, format!("holds a key rustls cannot sign with: {e}")))?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(_) => return Err(TlsError::Mismatch { cert: settings.cert_file.clone(), key: key_path.clone() }),
    }
    let now = UnixTime::since_unix_epoch(now.duration_since(UNIX_EPOCH).unwrap_or_default());
    check_validity(&settings.cert_file, &certified.cert, now)?;
    Ok(certified)
}

/// The server's certificate, swapped whole on reload: every handshake takes
/// the pair current when it starts.
pub struct CertificateResolver {
    settings: TlsSettings,
    current: RwLock<Arc<CertifiedKey>>,
}

impl std::fmt::Debug for CertificateResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateResolver")
            .field("cert_file", &self.settings.cert_file)
            .field("key_file", &self.settings.key_file)
            .finish_non_exhaustive()
    }
}

impl CertificateResolver {
    /// Reads and checks the files of `settings` ([`load_certified_key`]).
    ///
    /// # Errors
    /// As for [`load_certified_key`].
    pub fn new(settings: &TlsSettings) -> Result<Self, TlsError> {
        let key = load_certified_key(settings, SystemTime::now())?;
        Ok(Self { settings: settings.clone(), current: RwLock::new(Arc::new(key)) })
    }

    /// Reads and checks the certificate and key files again; on success new
    /// handshakes get the new pair, on failure the old one stays.
    ///
    /// # Errors
    /// As for [`load_certified_key`].
    pub fn reload(&self) -> Result<(), TlsError> {
        let key = load_certified_key(&self.settings, SystemTime::now())?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(key);
        Ok(())
    }

    /// The certificate and key files.
    pub fn settings(&self) -> &TlsSettings {
        &self.settings
    }
}

impl ResolvesServerCert for CertificateResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap_or_else(PoisonError::into_inner).clone())
    }
}

/// The listeners' TLS: the rustls configuration and the resolver that
/// [reloads](CertificateResolver::reload) the certificate.
#[derive(Debug, Clone)]
pub struct Tls {
    /// What every handshake is made with.
    pub config: Arc<ServerConfig>,
    /// The certificate in use.
    pub resolver: Arc<CertificateResolver>,
}

impl Tls {
    /// Reads and checks the files of `settings`.
    ///
    /// # Errors
    /// A [`TlsError`] naming the file at fault.
    pub fn new(settings: &TlsSettings) -> Result<Self, TlsError> {
        let resolver = Arc::new(CertificateResolver::new(settings)?);
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions");
        let builder = match &settings.client_ca_file {
            None => builder.with_no_client_auth(),
            Some(path) => {
                let mut roots = RootCertStore::empty();
                for cert in certificates("client CA", path)? {
                    roots.add(cert).map_err(|e| {
                        pem_error("client CA", path, format!("holds an unusable CA certificate: {e}"))
                    })?;
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                    .build()
                    .map_err(|e| pem_error("client CA", path, format!("cannot verify clients: {e}")))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_cert_resolver(resolver.clone());
        config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        Ok(Self { config: Arc::new(config), resolver })
    }

    /// Reloads the certificate on every SIGHUP until the process ends,
    /// logging the outcome (a failed reload keeps the old certificate).
    #[cfg(unix)]
    pub fn reload_on_sighup(&self) -> std::io::Result<tokio::task::JoinHandle<()>> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangups = signal(SignalKind::hangup())?;
        let resolver = self.resolver.clone();
        Ok(tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                let files = resolver.settings();
                match resolver.reload() {
                    Ok(()) => tracing::info!(
                        cert_file = %files.cert_file.display(),
                        "SIGHUP: TLS certificate reloaded; new connections use it"
                    ),
                    Err(e) => {
                        tracing::error!(error = %e, "SIGHUP: TLS certificate not reloaded; keeping the previous one")
                    }
                }
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Files {
        dir: tempfile::TempDir,
    }

    impl Files {
        fn new() -> Self {
            Self { dir: tempfile::tempdir().unwrap() }
        }
        fn write(&self, name: &str, text: &str) -> PathBuf {
            let p = self.dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        }
        /// A [`valid`] pair, written as `c.pem` and `k.pem`.
        fn valid_pair(&self) -> (PathBuf, PathBuf) {
            let (cert, key) = valid();
            (self.write("c.pem", &cert), self.write("k.pem", &key))
        }
    }

    /// A self-signed certificate valid from 2020 to 2200, and its key.
    fn valid() -> (String, String) {
        self_signed((2020, 1, 1), (2200, 1, 1))
    }

    fn self_signed(not_before: (i32, u8, u8), not_after: (i32, u8, u8)) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        params.not_before = rcgen::date_time_ymd(not_before.0, not_before.1, not_before.2);
        params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn settings(cert: PathBuf, key: PathBuf) -> TlsSettings {
        TlsSettings { cert_file: cert, key_file: key, client_ca_file: None }
    }

    #[test]
    fn a_valid_pair_loads_and_offers_h2_then_http1() {
        let f = Files::new();
        let (c, k) = f.valid_pair();
        let tls = Tls::new(&settings(c, k)).unwrap();
        assert_eq!(tls.config.alpn_protocols, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
        assert!(!format!("{tls:?}").contains("PRIVATE KEY"));
    }

    #[test]
    fn a_key_of_another_certificate_is_refused_naming_both_files() {
        let f = Files::new();
        let (cert, _) = valid();
        let (_, other_key) = valid();
        let s = settings(f.write("c.pem", &cert), f.write("k.pem", &other_key));
        let err = Tls::new(&s).unwrap_err();
        assert!(matches!(err, TlsError::Mismatch { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains("k.pem") && text.contains("c.pem") && text.contains("does not match"),
            "{text}"
        );
    }

    #[test]
    fn an_expired_or_future_certificate_is_refused_with_its_dates() {
        let f = Files::new();
        let cases = [
            ("old.pem", (2020, 1, 1), (2021, 6, 1), "expired at 2021-06-01T00:00:00Z"),
            ("new.pem", (2190, 1, 1), (2200, 1, 1), "not valid before 2190-01-01"),
        ];
        for (file, not_before, not_after, says) in cases {
            let (cert, key) = self_signed(not_before, not_after);
            let s = settings(f.write(file, &cert), f.write("k.pem", &key));
            let err = Tls::new(&s).unwrap_err().to_string();
            assert!(err.contains(file) && err.contains(says), "{file}: {err}");
        }
    }

    #[test]
    fn unreadable_or_empty_files_are_named() {
        let f = Files::new();
        let (c, k) = f.valid_pair();
        let missing = f.dir.path().join("missing.pem");
        let err = Tls::new(&settings(missing.clone(), k.clone())).unwrap_err();
        assert!(matches!(&err, TlsError::Read { what: "certificate", .. }), "{err:?}");
        assert!(err.to_string().contains("missing.pem"), "{err}");
        assert!(std::error::Error::source(&err).is_some(), "the I/O error is kept as the source");
        let err = Tls::new(&settings(c.clone(), missing)).unwrap_err().to_string();
        assert!(err.starts_with("cannot read the TLS key file") && err.contains("missing.pem"), "{err}");
        let err = Tls::new(&settings(k.clone(), k.clone())).unwrap_err().to_string();
        assert!(err.contains("k.pem holds no PEM certificate"), "{err}");
        let err = Tls::new(&settings(c.clone(), c.clone())).unwrap_err().to_string();
        assert!(
            err.contains("TLS key file") && err.contains("c.pem holds no usable PEM private key"),
            "{err}"
        );
        let mut with_ca = settings(c, k);
        with_ca.client_ca_file = Some(f.write("ca.pem", "not pem"));
        let err = Tls::new(&with_ca).unwrap_err().to_string();
        assert!(err.contains("client CA file") && err.contains("ca.pem"), "{err}");
    }

    #[test]
    fn reload_swaps_the_pair_and_a_bad_pair_keeps_the_old_one() {
        let f = Files::new();
        let (c, k) = f.valid_pair();
        let resolver = CertificateResolver::new(&settings(c, k)).unwrap();
        let first = resolver.current.read().unwrap().clone();
        let (cert2, key2) = valid();
        f.write("c.pem", &cert2);
        // The new certificate with the old key: refused, the old pair kept.
        assert!(matches!(resolver.reload(), Err(TlsError::Mismatch { .. })));
        assert_eq!(resolver.current.read().unwrap().cert, first.cert);
        f.write("k.pem", &key2);
        resolver.reload().unwrap();
        let second = resolver.current.read().unwrap().clone();
        assert_ne!(second.cert, first.cert);
        assert_eq!(
            second.end_entity_cert().unwrap().as_ref(),
            CertificateDer::from_pem_slice(cert2.as_bytes()).unwrap().as_ref()
        );
    }
}
