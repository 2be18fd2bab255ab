//! The TLS client configuration of a `rediss://` client, built once per
//! client: the system's trusted roots (or a private CA), and optionally a
//! client certificate for mutual TLS.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

/// PEM files given by the caller, read at construction.
#[derive(Default)]
pub struct TlsFiles<'a> {
    pub ca_file: Option<&'a Path>,
    pub cert_file: Option<&'a Path>,
    pub key_file: Option<&'a Path>,
}

impl TlsFiles<'_> {
    pub fn any(&self) -> bool {
        self.ca_file.is_some() || self.cert_file.is_some() || self.key_file.is_some()
    }
}

fn read(option: &str, path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|err| format!("{option}: cannot read {}: {err}", path.display()))
}

fn certificates(option: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read(option, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| {
            format!(
                "{option}: {} is not a PEM certificate: {err}",
                path.display()
            )
        })?;
    if certs.is_empty() {
        return Err(format!(
            "{option}: {} holds no PEM certificate",
            path.display()
        ));
    }
    Ok(certs)
}

fn roots(ca_file: Option<&Path>) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in certificates("tls_ca_file", path)? {
                store.add(cert).map_err(|err| {
                    format!("tls_ca_file: {} is not a usable CA: {err}", path.display())
                })?;
            }
        }
        None => {
            // Unreadable system certificates are skipped: an empty store
            // only means every server certificate is refused at connection,
            // which says "certificate" where the operator will look.
            let system = rustls_native_certs::load_native_certs();
            store.add_parsable_certificates(system.certs);
        }
    }
    Ok(store)
}

/// The client configuration, or a sentence naming the bad option.
pub fn client_config(files: &TlsFiles<'_>) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| format!("TLS is unavailable: {err}"))?
        .with_root_certificates(roots(files.ca_file)?);
    let config = match (files.cert_file, files.key_file) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert), Some(key)) => {
            let chain = certificates("tls_cert_file", cert)?;
            let key_pem = read("tls_key_file", key)?;
            let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|err| {
                format!(
                    "tls_key_file: {} is not a PEM private key: {err}",
                    key.display()
                )
            })?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|err| format!("tls_cert_file and tls_key_file do not match: {err}"))?
        }
        _ => {
            return Err(
                "tls_cert_file and tls_key_file go together (mutual TLS needs both)".to_string(),
            )
        }
    };
    Ok(Arc::new(config))
}
