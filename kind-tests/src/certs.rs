//! The local cluster's PKI, generated with `rcgen`: a CA, the API server's and the kubelet's
//! serving certificates, client certificates for the admin and each node component (kubelet,
//! kube-scheduler, kube-proxy, with the identities the default RBAC binds), and the
//! service-account signing key.
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

/// Addresses the API server's certificate names besides loopback: the bridge address where pods
/// reach it and the `kubernetes` Service's ClusterIP.
pub const APISERVER_IPS: &[&str] = &["10.244.0.1", "10.96.0.1"];

/// A client identity of a node component: certificate and key files.
#[derive(Debug, Clone)]
pub struct ClientCert {
    /// The certificate.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

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
    /// The kubelet's serving certificate (the API server connects to it for logs and exec).
    pub kubelet_serving_cert: PathBuf,
    /// The kubelet's serving key.
    pub kubelet_serving_key: PathBuf,
    /// The kubelet's client identity (`system:node:<node>`, group `system:nodes`).
    pub kubelet: ClientCert,
    /// kube-scheduler's client identity (`system:kube-scheduler`).
    pub scheduler: ClientCert,
    /// kube-proxy's client identity (`system:kube-proxy`).
    pub proxy: ClientCert,
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
            kubelet_serving_cert: dir.join("kubelet-serving.crt"),
            kubelet_serving_key: dir.join("kubelet-serving.key"),
            kubelet: ClientCert {
                cert: dir.join("kubelet.crt"),
                key: dir.join("kubelet.key"),
            },
            scheduler: ClientCert {
                cert: dir.join("scheduler.crt"),
                key: dir.join("scheduler.key"),
            },
            proxy: ClientCert {
                cert: dir.join("proxy.crt"),
                key: dir.join("proxy.key"),
            },
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

/// Signs a certificate for `params` with a new key; returns the certificate and key PEM.
fn sign(
    what: &'static str,
    mut params: CertificateParams,
    issuer: &Issuer<'_, &KeyPair>,
) -> Result<(String, String), Error> {
    let key = gen_key(what)?;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    validity(&mut params);
    let cert = params
        .signed_by(&key, issuer)
        .map_err(|source| Error::Generate { what, source })?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A serving certificate for `names` (DNS names or IP addresses).
fn serving(
    what: &'static str,
    common_name: &str,
    names: Vec<String>,
    issuer: &Issuer<'_, &KeyPair>,
) -> Result<(String, String), Error> {
    let mut params =
        CertificateParams::new(names).map_err(|source| Error::Generate { what, source })?;
    params.distinguished_name = dn(common_name, None);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    sign(what, params, issuer)
}

/// A client certificate for user `common_name` in group `organization`.
fn client(
    what: &'static str,
    common_name: &str,
    organization: Option<&str>,
    issuer: &Issuer<'_, &KeyPair>,
) -> Result<(String, String), Error> {
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(common_name, organization);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    sign(what, params, issuer)
}

fn write_pair(cert: &Path, key: &Path, (cert_pem, key_pem): (String, String)) -> Result<(), Error> {
    write(cert, &cert_pem, false)?;
    write(key, &key_pem, true)
}

/// Generates a fresh PKI into `dir` (which must exist) for a node named `node_name` and returns
/// where each file is.
pub fn generate(dir: &Path, node_name: &str) -> Result<PkiPaths, Error> {
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
    write(&paths.ca_cert, &ca_cert.pem(), false)?;
    write(&paths.ca_key, &ca_key.serialize_pem(), true)?;

    let mut apiserver_names: Vec<String> = [
        "127.0.0.1",
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    .iter()
    .chain(APISERVER_IPS)
    .map(|s| (*s).to_owned())
    .collect();
    apiserver_names.dedup();
    write_pair(
        &paths.serving_cert,
        &paths.serving_key,
        serving(
            "serving certificate",
            "kube-apiserver",
            apiserver_names,
            &issuer,
        )?,
    )?;
    write_pair(
        &paths.kubelet_serving_cert,
        &paths.kubelet_serving_key,
        serving(
            "kubelet serving certificate",
            node_name,
            vec![
                APISERVER_IPS[0].to_owned(),
                "127.0.0.1".to_owned(),
                node_name.to_owned(),
            ],
            &issuer,
        )?,
    )?;
    write_pair(
        &paths.admin_cert,
        &paths.admin_key,
        client(
            "admin certificate",
            ADMIN_USER,
            Some("system:masters"),
            &issuer,
        )?,
    )?;
    write_pair(
        &paths.kubelet.cert,
        &paths.kubelet.key,
        client(
            "kubelet client certificate",
            &format!("system:node:{node_name}"),
            Some("system:nodes"),
            &issuer,
        )?,
    )?;
    write_pair(
        &paths.scheduler.cert,
        &paths.scheduler.key,
        client(
            "scheduler client certificate",
            "system:kube-scheduler",
            None,
            &issuer,
        )?,
    )?;
    write_pair(
        &paths.proxy.cert,
        &paths.proxy.key,
        client(
            "kube-proxy client certificate",
            "system:kube-proxy",
            None,
            &issuer,
        )?,
    )?;

    let sa_key = gen_key("service-account signing key")?;
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
        let paths = generate(&dir, "node-a").unwrap();
        for (path, header) in [
            (&paths.ca_cert, "BEGIN CERTIFICATE"),
            (&paths.serving_cert, "BEGIN CERTIFICATE"),
            (&paths.admin_cert, "BEGIN CERTIFICATE"),
            (&paths.admin_key, "BEGIN PRIVATE KEY"),
            (&paths.sa_key, "BEGIN PRIVATE KEY"),
            (&paths.sa_pub, "BEGIN PUBLIC KEY"),
            (&paths.kubelet_serving_cert, "BEGIN CERTIFICATE"),
            (&paths.kubelet.cert, "BEGIN CERTIFICATE"),
            (&paths.scheduler.key, "BEGIN PRIVATE KEY"),
            (&paths.proxy.cert, "BEGIN CERTIFICATE"),
        ] {
            let text = std::fs::read_to_string(path).unwrap();
            assert!(text.contains(header), "{} lacks {header}", path.display());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
