//! The local cluster's PKI, generated with `rcgen`: a CA, the API server's serving certificate, the
//! admin client certificate and the service-account signing key.
//!
//! All keys are ECDSA P-256, which kube-apiserver, kubectl, helm and kube-rs (rustls) all accept.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, date_time_ymd,
};

/// Errors while generating or writing the PKI.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// rcgen could not generate a key or a certificate.
    #[error("generating the {what}: {source}")]
    Generate {
        /// Which key or certificate.
        what: &'static str,
        /// The rcgen error.
        source: rcgen::Error,
    },
    /// A PEM file could not be written.
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// CommonName of the admin client certificate (the user `kubectl auth whoami` shows).
pub const ADMIN_USER: &str = "kubevigil-admin";

/// Where each PEM file of the PKI lives.
#[derive(Debug, Clone)]
pub struct PkiPaths {
    /// The CA certificate (`--client-ca-file`, the kubeconfig's certificate authority).
    pub ca_cert: PathBuf,
    /// The CA private key.
    pub ca_key: PathBuf,
    /// kube-apiserver's serving certificate.
    pub serving_cert: PathBuf,
    /// kube-apiserver's serving key.
    pub serving_key: PathBuf,
    /// The admin client certificate (O=system:masters).
    pub admin_cert: PathBuf,
    /// The admin client key.
    pub admin_key: PathBuf,
    /// The service-account token signing key (private).
    pub sa_key: PathBuf,
    /// The service-account token verification key (public).
    pub sa_pub: PathBuf,
}

impl PkiPaths {
    /// The standard file names inside `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            ca_cert: dir.join("ca.crt"),
            ca_key: dir.join("ca.key"),
            serving_cert: dir.join("apiserver.crt"),
            serving_key: dir.join("apiserver.key"),
            admin_cert: dir.join("admin.crt"),
            admin_key: dir.join("admin.key"),
            sa_key: dir.join("sa.key"),
            sa_pub: dir.join("sa.pub"),
        }
    }
}

fn gen_key(what: &'static str) -> Result<KeyPair, Error> {
    KeyPair::generate().map_err(|source| Error::Generate { what, source })
}

fn dn(common_name: &str, organization: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    if let Some(org) = organization {
        dn.push(DnType::OrganizationName, org);
    }
    dn
}

fn validity(params: &mut CertificateParams) {
    params.not_before = date_time_ymd(2024, 1, 1);
    params.not_after = date_time_ymd(2099, 1, 1);
}

fn write(path: &Path, contents: &str, private: bool) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt as _;
    let err = |source| Error::Write {
        path: path.to_path_buf(),
        source,
    };
    std::fs::write(path, contents).map_err(err)?;
    let mode = if private { 0o600 } else { 0o644 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(err)
}

/// Generates a fresh PKI into `dir` (which must exist) and returns where each file is.
pub fn generate(dir: &Path) -> Result<PkiPaths, Error> {
    let paths = PkiPaths::in_dir(dir);

    let ca_key = gen_key("CA key")?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name = dn("kubevigil-local-ca", None);
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut ca);
    let ca_cert = ca.self_signed(&ca_key).map_err(|source| Error::Generate {
        what: "CA certificate",
        source,
    })?;
    let issuer = Issuer::from_params(&ca, &ca_key);

    let serving_key = gen_key("serving key")?;
    let mut serving = CertificateParams::new(vec![
        "127.0.0.1".to_owned(),
        "localhost".to_owned(),
        "kubernetes".to_owned(),
        "kubernetes.default".to_owned(),
        "kubernetes.default.svc".to_owned(),
        "kubernetes.default.svc.cluster.local".to_owned(),
    ])
    .map_err(|source| Error::Generate {
        what: "serving certificate names",
        source,
    })?;
    serving.distinguished_name = dn("kube-apiserver", None);
    serving.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    validity(&mut serving);
    let serving_cert =
        serving
            .signed_by(&serving_key, &issuer)
            .map_err(|source| Error::Generate {
                what: "serving certificate",
                source,
            })?;

    let admin_key = gen_key("admin key")?;
    let mut admin = CertificateParams::default();
    admin.distinguished_name = dn(ADMIN_USER, Some("system:masters"));
    admin.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    validity(&mut admin);
    let admin_cert = admin
        .signed_by(&admin_key, &issuer)
        .map_err(|source| Error::Generate {
            what: "admin certificate",
            source,
        })?;

    let sa_key = gen_key("service-account signing key")?;

    write(&paths.ca_cert, &ca_cert.pem(), false)?;
    write(&paths.ca_key, &ca_key.serialize_pem(), true)?;
    write(&paths.serving_cert, &serving_cert.pem(), false)?;
    write(&paths.serving_key, &serving_key.serialize_pem(), true)?;
    write(&paths.admin_cert, &admin_cert.pem(), false)?;
    write(&paths.admin_key, &admin_key.serialize_pem(), true)?;
    write(&paths.sa_key, &sa_key.serialize_pem(), true)?;
    write(&paths.sa_pub, &sa_key.public_key_pem(), false)?;
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_every_file_as_pem() {
        let dir = std::env::temp_dir().join(format!("kv-pki-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let paths = generate(&dir).unwrap();
        for (path, header) in [
            (&paths.ca_cert, "BEGIN CERTIFICATE"),
            (&paths.serving_cert, "BEGIN CERTIFICATE"),
            (&paths.admin_cert, "BEGIN CERTIFICATE"),
            (&paths.admin_key, "BEGIN PRIVATE KEY"),
            (&paths.sa_key, "BEGIN PRIVATE KEY"),
            (&paths.sa_pub, "BEGIN PUBLIC KEY"),
        ] {
            let text = std::fs::read_to_string(path).unwrap();
            assert!(text.contains(header), "{} lacks {header}", path.display());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
