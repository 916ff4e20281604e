//! Test certificates made with rcgen: a root CA, an intermediate CA signed
//! by it, and server and client certificates signed by the intermediate.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// A root CA and an intermediate CA.
pub struct Pki {
    root: CertifiedIssuer<'static, KeyPair>,
    intermediate: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate issued by a [`Pki`], with its key.
pub struct Leaf {
    /// The certificate then the intermediate: a full chain.
    pub chain_pem: String,
    /// The private key (PKCS#8).
    pub key_pem: String,
}

impl Leaf {
    /// The chain and the key in one PEM text (a client identity).
    pub fn identity_pem(&self) -> String {
        format!("{}{}", self.chain_pem, self.key_pem)
    }
}

fn ca_params(name: &str) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    p
}

impl Pki {
    pub fn new(name: &str) -> Self {
        let root =
            CertifiedIssuer::self_signed(ca_params(&format!("{name} root")), KeyPair::generate().unwrap())
                .unwrap();
        let intermediate = CertifiedIssuer::signed_by(
            ca_params(&format!("{name} intermediate")),
            KeyPair::generate().unwrap(),
            &root,
        )
        .unwrap();
        Self { root, intermediate }
    }

    /// The root certificate, the only one a client trusts.
    pub fn root_pem(&self) -> String {
        self.root.pem()
    }

    fn leaf(&self, names: &[&str], usage: ExtendedKeyUsagePurpose) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        p.distinguished_name.push(DnType::CommonName, names[0]);
        p.extended_key_usages = vec![usage];
        let cert = p.signed_by(&key, &self.intermediate).unwrap();
        Leaf { chain_pem: format!("{}{}", cert.pem(), self.intermediate.pem()), key_pem: key.serialize_pem() }
    }

    /// A server certificate for `names` (DNS names or IP addresses).
    pub fn server(&self, names: &[&str]) -> Leaf {
        self.leaf(names, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate named `name`.
    pub fn client(&self, name: &str) -> Leaf {
        self.leaf(&[name], ExtendedKeyUsagePurpose::ClientAuth)
    }
}
