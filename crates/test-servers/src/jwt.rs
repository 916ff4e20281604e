//! JWTs signed by a key the test generates, for testing the JWT auth method
//! of a fixture server (see [`OpenBao::enable_jwt`](crate::openbao::OpenBao::enable_jwt)).
//!
//! ES256 (ECDSA P-256 with SHA-256) on `ring`, which the workspace already
//! builds for TLS: no other crypto crate is needed.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use credstore_test_servers::jwt::JwtSigner;
//!
//! let signer = JwtSigner::generate();
//! assert!(signer.public_key_pem().starts_with("-----BEGIN PUBLIC KEY-----\n"));
//! let jwt = signer.token("my-app", "vault", SystemTime::now() + Duration::from_secs(600));
//! assert_eq!(jwt.split('.').count(), 3);
//! ```

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

/// The DER prefix of a P-256 `SubjectPublicKeyInfo` (id-ecPublicKey,
/// prime256v1), before the 65-byte uncompressed point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86,
    0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// An ES256 signing key made for one test run.
pub struct JwtSigner {
    key: EcdsaKeyPair,
    rng: SystemRandom,
}

impl fmt::Debug for JwtSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtSigner").finish_non_exhaustive()
    }
}

impl JwtSigner {
    /// A fresh random P-256 key.
    ///
    /// # Panics
    /// When the system has no randomness.
    pub fn generate() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("generate key");
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("load generated key");
        Self { key, rng }
    }

    /// The public key as a PEM `PUBLIC KEY` (SubjectPublicKeyInfo), as the
    /// JWT auth method's `jwt_validation_pubkeys` takes it.
    pub fn public_key_pem(&self) -> String {
        let mut der = P256_SPKI_PREFIX.to_vec();
        der.extend_from_slice(self.key.public_key().as_ref());
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).unwrap_or_default());
            pem.push('\n');
        }
        pem.push_str("-----END PUBLIC KEY-----\n");
        pem
    }

    /// Signs `claims` (a JSON object) as a compact JWS with the header
    /// `{"alg":"ES256","typ":"JWT"}`.
    ///
    /// # Panics
    /// When signing fails (it does not, with a valid key).
    pub fn sign(&self, claims: &serde_json::Value) -> String {
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let header = b64(br#"{"alg":"ES256","typ":"JWT"}"#);
        let payload = b64(claims.to_string().as_bytes());
        let signing_input = format!("{header}.{payload}");
        let signature = self.key.sign(&self.rng, signing_input.as_bytes()).expect("sign");
        format!("{signing_input}.{}", b64(signature.as_ref()))
    }

    /// A token for `subject` and `audience`, issued now (`iat`, `nbf`) and
    /// expiring at `expires_at` (`exp`, whole seconds), with a random `jti`.
    pub fn token(&self, subject: &str, audience: &str, expires_at: SystemTime) -> String {
        let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let now = SystemTime::now();
        // A token that is already expired was also issued in the past.
        let issued = secs(now).min(secs(expires_at).saturating_sub(60));
        self.sign(&serde_json::json!({
            "sub": subject,
            "aud": audience,
            "iat": issued,
            "nbf": issued,
            "exp": secs(expires_at),
            "jti": crate::openbao::random_hex(8),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};

    #[test]
    fn tokens_verify_with_the_public_key() {
        let signer = JwtSigner::generate();
        let jwt = signer.token("app", "vault", SystemTime::now());
        let (input, sig) = jwt.rsplit_once('.').unwrap();
        let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(sig).unwrap();
        let pem = signer.public_key_pem();
        let der: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = base64::engine::general_purpose::STANDARD.decode(der).unwrap();
        assert_eq!(&der[..26], &P256_SPKI_PREFIX);
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &der[26..]).verify(input.as_bytes(), &sig).unwrap();
        let payload = input.split('.').nth(1).unwrap();
        let claims: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap(),
        )
        .unwrap();
        assert_eq!((claims["sub"].as_str(), claims["aud"].as_str()), (Some("app"), Some("vault")));
        assert!(claims["iat"].as_u64() <= claims["exp"].as_u64());
    }
}
