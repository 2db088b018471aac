//! TLS for target connections: the rustls connector a target's `sslmode` asks for.
//!
//! It owns the mapping from [`SslMode`] to a rustls client configuration (native roots plus an
//! optional `ca_file` for `verify-full`, encrypt-only for `require`). It does not open
//! connections; `db` and `db::login` hand the connector to tokio-postgres.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::SetupError;
use crate::config::{SslMode, TargetConfig};

/// The TLS connector of a target, kept for cancel requests, which open a new connection
/// with the same security as the original one.
#[derive(Clone)]
pub enum Tls {
    None,
    Rustls(MakeRustlsConnect),
}

pub(super) fn make_tls(config: &TargetConfig) -> Result<Tls, SetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls_err = |e: rustls::Error| SetupError::Tls {
        target: config.name.clone(),
        message: e.to_string(),
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(tls_err)?;
    let client_config = match config.sslmode {
        SslMode::Disable => return Ok(Tls::None),
        SslMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider)))
            .with_no_client_auth(),
        SslMode::VerifyFull => {
            let mut roots = rustls::RootCertStore::empty();
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
            if let Some(path) = &config.ca_file {
                let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                    .and_then(|it| it.collect())
                    .map_err(|source| SetupError::CaFile {
                        target: config.name.clone(),
                        path: path.display().to_string(),
                        source,
                    })?;
                roots.add_parsable_certificates(certs);
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    Ok(Tls::Rustls(MakeRustlsConnect::new(client_config)))
}

/// libpq's `sslmode=require`: encrypt, but do not verify who is at the other end.
/// Handshake signatures are still checked, so the session key is really the server's.
#[derive(Debug)]
struct EncryptOnly(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
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
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
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
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
