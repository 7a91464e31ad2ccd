//! The certificates and keys a control plane needs: a CA, a serving certificate for the
//! apiserver on 127.0.0.1, and the service-account signing key.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

/// The errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// rcgen refused to make a key or certificate.
    #[error("generating {what}: {source}")]
    Generate {
        /// What was being generated.
        what: &'static str,
        /// The error.
        #[source]
        source: rcgen::Error,
    },
}

/// PEM texts for one control plane.
pub(crate) struct Pki {
    pub(crate) ca_cert: String,
    pub(crate) serving_cert: String,
    pub(crate) serving_key: String,
    pub(crate) service_account_key: String,
    pub(crate) service_account_public_key: String,
}

fn gen_err(what: &'static str) -> impl FnOnce(rcgen::Error) -> CertError {
    move |source| CertError::Generate { what, source }
}

/// Makes a fresh CA, a serving certificate for `127.0.0.1` and `localhost` signed by it, and a
/// service-account signing key (ECDSA P-256, which the apiserver accepts for ES256 tokens).
pub(crate) fn generate() -> Result<Pki, CertError> {
    let ca_key = KeyPair::generate().map_err(gen_err("the CA key"))?;
    let mut ca_params =
        CertificateParams::new(Vec::<String>::new()).map_err(gen_err("the CA parameters"))?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "gitops-envtest CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params
        .self_signed(&ca_key)
        .map_err(gen_err("the CA certificate"))?;
    let issuer = Issuer::new(ca_params, ca_key);

    let serving_key = KeyPair::generate().map_err(gen_err("the serving key"))?;
    let mut serving_params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .map_err(gen_err("the serving certificate parameters"))?;
    serving_params
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    serving_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let serving_cert = serving_params
        .signed_by(&serving_key, &issuer)
        .map_err(gen_err("the serving certificate"))?;

    let service_account_key =
        KeyPair::generate().map_err(gen_err("the service-account signing key"))?;

    Ok(Pki {
        ca_cert: ca_cert.pem(),
        serving_cert: serving_cert.pem(),
        serving_key: serving_key.serialize_pem(),
        service_account_key: service_account_key.serialize_pem(),
        service_account_public_key: service_account_key.public_key_pem(),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn makes_pem_texts() {
        let pki = super::generate().unwrap();
        assert!(pki.ca_cert.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(pki.serving_cert.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(pki.serving_key.contains("PRIVATE KEY"));
        assert!(pki.service_account_key.contains("PRIVATE KEY"));
        assert_ne!(pki.serving_key, pki.service_account_key);
        assert!(pki.service_account_public_key.contains("PUBLIC KEY"));
    }
}
