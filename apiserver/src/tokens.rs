//! Service account tokens. The TokenRequest API (`serviceaccounts/<name>/token`, which
//! `kubectl create token` and the kubelet's projected volumes call) signs a JWT with the
//! claims Kubernetes puts in one, and the OIDC discovery documents
//! (`/.well-known/openid-configuration`, `/openid/v1/jwks`) publish the public key, so
//! that anyone can check a token. Nothing in skiff checks them yet: requests are not
//! authenticated until TLS and authentication land.
//!
//! The key comes from `--service-account-signing-key-file` (PEM: PKCS#8 P-256 or RSA,
//! or PKCS#1 RSA, as kube-apiserver takes). Without it the first apiserver makes a P-256
//! key and keeps it in the store under [`STORED_KEY`], created only if absent, so that
//! every apiserver of the cluster signs with the same key and a backup keeps it.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use skiff_api::validation::{invalid_message, FieldError};

use crate::error::{Error, Result};
use crate::objects::{meta_str, now_rfc3339};
use crate::request::Target;
use crate::Server;
use skiff_api::ResourceType;

/// Where the generated key is kept in the store (outside `/registry/`, which holds API
/// objects).
pub const STORED_KEY: &str = "/skiff/service-account-signing-key";

/// kube-apiserver's default `--service-account-issuer` in kubeadm clusters.
pub const DEFAULT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// TokenRequest's default lifetime.
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
/// The shortest lifetime a TokenRequest may ask for (Kubernetes' limit).
pub const MIN_EXPIRATION_SECONDS: i64 = 600;
/// The longest (2^32 s, Kubernetes' limit).
pub const MAX_EXPIRATION_SECONDS: i64 = 1 << 32;

/// DER of a P-256 SubjectPublicKeyInfo up to the public point.
const P256_SPKI_PREFIX: &[u8] = &[
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
/// DER of the rsaEncryption AlgorithmIdentifier (OID 1.2.840.113549.1.1.1, NULL).
const RSA_ALGORITHM: &[u8] = &[
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
];

/// A private key that signs tokens.
pub enum SigningKey {
    /// ES256 (ECDSA P-256 with SHA-256).
    Es256(EcdsaKeyPair),
    /// RS256 (RSASSA-PKCS1-v1_5 with SHA-256).
    Rs256(RsaKeyPair),
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.algorithm())
    }
}

impl SigningKey {
    /// Parses a PEM private key; `what` names its origin in errors.
    pub fn from_pem(pem: &str, what: &str) -> std::result::Result<SigningKey, String> {
        let (label, der) = pem_block(pem)
            .ok_or_else(|| format!("{what}: no PEM block (-----BEGIN … PRIVATE KEY-----) found"))?;
        let rng = SystemRandom::new();
        match label.as_str() {
            "PRIVATE KEY" => {
                if let Ok(k) = EcdsaKeyPair::from_pkcs8(
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    &der,
                    &rng,
                ) {
                    return Ok(SigningKey::Es256(k));
                }
                RsaKeyPair::from_pkcs8(&der)
                    .map(SigningKey::Rs256)
                    .map_err(|e| format!("{what}: a PKCS#8 key that is neither P-256 nor a usable RSA key ({e}); make one with `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`"))
            }
            "RSA PRIVATE KEY" => RsaKeyPair::from_der(&der)
                .map(SigningKey::Rs256)
                .map_err(|e| format!("{what}: the RSA key is not usable: {e}")),
            "EC PRIVATE KEY" => Err(format!(
                "{what}: an SEC1 EC key; convert it to PKCS#8 with `openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.pk8`"
            )),
            other => Err(format!(
                "{what}: a PEM block of {other:?}, not a private key"
            )),
        }
    }

    /// A new P-256 key, as PKCS#8 PEM.
    pub fn generate_pem() -> Result<String> {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &SystemRandom::new(),
        )
        .map_err(|_| Error::internal("generating a service account signing key failed"))?;
        Ok(pem_encode("PRIVATE KEY", pkcs8.as_ref()))
    }

    /// The JWS `alg`.
    pub fn algorithm(&self) -> &'static str {
        match self {
            SigningKey::Es256(_) => "ES256",
            SigningKey::Rs256(_) => "RS256",
        }
    }

    /// The DER SubjectPublicKeyInfo of the public key.
    fn public_key_info(&self) -> Vec<u8> {
        match self {
            SigningKey::Es256(k) => [P256_SPKI_PREFIX, k.public_key().as_ref()].concat(),
            SigningKey::Rs256(k) => {
                let mut bits = vec![0u8];
                bits.extend_from_slice(k.public().as_ref());
                let body = [RSA_ALGORITHM, &der(0x03, &bits)].concat();
                der(0x30, &body)
            }
        }
    }

    /// Kubernetes' key id: the unpadded base64url SHA-256 of the public key's DER.
    pub fn key_id(&self) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(self.public_key_info()))
    }

    /// The public key as a JWK (RFC 7517), as `/openid/v1/jwks` lists it.
    pub fn jwk(&self) -> Value {
        let mut jwk = match self {
            SigningKey::Es256(k) => {
                let point = k.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256",
                       "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                       "y": URL_SAFE_NO_PAD.encode(&point[33..65])})
            }
            SigningKey::Rs256(k) => {
                let c = signature::RsaPublicKeyComponents::<Vec<u8>>::from(k.public());
                json!({"kty": "RSA",
                       "n": URL_SAFE_NO_PAD.encode(strip_zeros(&c.n)),
                       "e": URL_SAFE_NO_PAD.encode(strip_zeros(&c.e))})
            }
        };
        jwk["use"] = json!("sig");
        jwk["alg"] = json!(self.algorithm());
        jwk["kid"] = json!(self.key_id());
        jwk
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        let rng = SystemRandom::new();
        let failed = |_| Error::internal("signing the token failed");
        match self {
            SigningKey::Es256(k) => Ok(k.sign(&rng, message).map_err(failed)?.as_ref().to_vec()),
            SigningKey::Rs256(k) => {
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut sig)
                    .map_err(failed)?;
                Ok(sig)
            }
        }
    }
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let first = b.iter().position(|x| *x != 0).unwrap_or(b.len());
    &b[first..]
}

/// One DER TLV.
fn der(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = body.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(body);
    out
}

/// The first PEM block: its label and decoded body.
fn pem_block(pem: &str) -> Option<(String, Vec<u8>)> {
    let start = pem.find("-----BEGIN ")?;
    let rest = &pem[start + "-----BEGIN ".len()..];
    let label_end = rest.find("-----")?;
    let label = rest[..label_end].to_string();
    let body = &rest[label_end + 5..];
    let end = body.find(&format!("-----END {label}-----"))?;
    let b64: String = body[..end].chars().filter(|c| !c.is_whitespace()).collect();
    Some((label, STANDARD.decode(b64).ok()?))
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// What a token is for, as the TokenRequest's spec says after defaulting.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenSpec {
    /// `spec.audiences` (the apiserver's own when empty).
    pub audiences: Vec<String>,
    /// `spec.expirationSeconds`.
    pub expiration_seconds: i64,
}

/// Defaults and checks a TokenRequest's spec as Kubernetes does.
pub fn token_spec(name: &str, body: &Value, default_audiences: &[String]) -> Result<TokenSpec> {
    let spec = &body["spec"];
    let audiences: Vec<String> = spec["audiences"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .filter(|a: &Vec<String>| !a.is_empty())
        .unwrap_or_else(|| default_audiences.to_vec());
    let expiration = &spec["expirationSeconds"];
    let expiration_seconds = if expiration.is_null() {
        DEFAULT_EXPIRATION_SECONDS
    } else {
        expiration.as_i64().unwrap_or(0)
    };
    let mut errors = Vec::new();
    if expiration_seconds < MIN_EXPIRATION_SECONDS {
        errors.push(FieldError::invalid(
            "spec.expirationSeconds",
            expiration,
            "may not specify a duration less than 10 minutes",
        ));
    } else if expiration_seconds > MAX_EXPIRATION_SECONDS {
        errors.push(FieldError::invalid(
            "spec.expirationSeconds",
            expiration,
            "may not specify a duration larger than 2^32 seconds",
        ));
    }
    if !errors.is_empty() {
        return Err(Error::invalid_request(invalid_message(
            "TokenRequest.authentication.k8s.io",
            name,
            &errors,
        )));
    }
    Ok(TokenSpec {
        audiences,
        expiration_seconds,
    })
}

/// Signs service account tokens and publishes the key that checks them.
#[derive(Debug)]
pub struct TokenIssuer {
    key: SigningKey,
    /// `--service-account-issuer`: the `iss` claim.
    pub issuer: String,
    /// `--api-audiences`: the audiences of a TokenRequest that names none.
    pub audiences: Vec<String>,
}

/// The `kubernetes.io` claim: what the token is bound to.
#[derive(Debug, Clone, Default)]
pub struct Binding {
    /// The namespace of the service account.
    pub namespace: String,
    /// The service account's name and uid.
    pub service_account: (String, String),
    /// The pod (name, uid) the token is bound to, if any.
    pub pod: Option<(String, String)>,
    /// The secret (name, uid) the token is bound to, if any.
    pub secret: Option<(String, String)>,
    /// The node (name, uid): the bound node, or the bound pod's node.
    pub node: Option<(String, String)>,
}

impl TokenIssuer {
    /// An issuer signing with `key`.
    pub fn new(key: SigningKey, issuer: String, audiences: Vec<String>) -> TokenIssuer {
        TokenIssuer {
            key,
            issuer,
            audiences,
        }
    }

    /// A signed JWT for `binding`, valid from `now` for the spec's lifetime.
    pub fn sign(&self, spec: &TokenSpec, binding: &Binding, now: i64, jti: &str) -> Result<String> {
        let named = |(name, uid): &(String, String)| json!({"name": name, "uid": uid});
        let mut k8s = json!({
            "namespace": binding.namespace,
            "serviceaccount": named(&binding.service_account),
        });
        if let Some(p) = &binding.pod {
            k8s["pod"] = named(p);
        }
        if let Some(s) = &binding.secret {
            k8s["secret"] = named(s);
        }
        if let Some(n) = &binding.node {
            k8s["node"] = named(n);
        }
        let claims = json!({
            "aud": spec.audiences,
            "exp": now + spec.expiration_seconds,
            "iat": now,
            "iss": self.issuer,
            "jti": jti,
            "kubernetes.io": k8s,
            "nbf": now,
            "sub": format!("system:serviceaccount:{}:{}", binding.namespace, binding.service_account.0),
        });
        let header = json!({"alg": self.key.algorithm(), "kid": self.key.key_id()});
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = self.key.sign(signing_input.as_bytes())?;
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig)))
    }

    /// `/openid/v1/jwks`.
    pub fn jwks(&self) -> Value {
        json!({"keys": [self.key.jwk()]})
    }

    /// `/.well-known/openid-configuration`.
    pub fn openid_configuration(&self) -> Value {
        json!({
            "issuer": self.issuer,
            "jwks_uri": format!("{}/openid/v1/jwks", self.issuer.trim_end_matches('/')),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [self.key.algorithm()],
        })
    }
}

/// The key the apiservers of a cluster sign with: the file's, else the store's, made
/// by whichever apiserver asks first.
pub async fn load_key(
    file: Option<&std::path::Path>,
    client: &etcd_client::Client,
) -> Result<SigningKey> {
    if let Some(path) = file {
        let pem = std::fs::read_to_string(path).map_err(|e| {
            Error::Config(format!(
                "--service-account-signing-key-file {}: {e}",
                path.display()
            ))
        })?;
        let what = format!("--service-account-signing-key-file {}", path.display());
        return SigningKey::from_pem(&pem, &what).map_err(Error::Config);
    }
    let pem = SigningKey::generate_pem()?;
    // Create-if-absent, else read: a retry after a lost answer reads what the first
    // attempt wrote.
    let resp = crate::storage::retry(|| {
        let mut kv = client.kv_client();
        let put = etcd_client::Txn::new()
            .when([etcd_client::Compare::create_revision(
                STORED_KEY,
                etcd_client::CompareOp::Equal,
                0,
            )])
            .and_then([etcd_client::TxnOp::put(STORED_KEY, pem.clone(), None)])
            .or_else([etcd_client::TxnOp::get(STORED_KEY, None)]);
        async move { kv.txn(put).await }
    })
    .await?;
    if resp.succeeded() {
        tracing::info!(key = STORED_KEY, "made the service account signing key");
        return SigningKey::from_pem(&pem, STORED_KEY).map_err(Error::Config);
    }
    let stored = resp
        .op_responses()
        .into_iter()
        .find_map(|op| match op {
            etcd_client::TxnOpResponse::Get(g) => g.kvs().first().map(|kv| kv.value().to_vec()),
            _ => None,
        })
        .ok_or_else(|| Error::internal(format!("{STORED_KEY} vanished while being read")))?;
    let pem = String::from_utf8_lossy(&stored);
    SigningKey::from_pem(&pem, &format!("the store's {STORED_KEY}")).map_err(|e| {
        Error::Config(format!(
            "{e}; delete {STORED_KEY} with etcdctl to make a new one (tokens signed with the old key stop verifying)"
        ))
    })
}

fn lookup(plural: &str) -> &'static ResourceType {
    ResourceType::lookup("", "v1", plural).expect("core types are served")
}

fn target(plural: &str, namespace: Option<&str>, name: &str) -> Target {
    Target {
        rt: lookup(plural),
        namespace: namespace.map(str::to_string),
        name: Some(name.to_string()),
        subresource: None,
    }
}

fn name_and_uid(obj: &Value) -> (String, String) {
    let s = |f: &str| meta_str(obj, f).unwrap_or_default().to_string();
    (s("name"), s("uid"))
}

impl Server {
    /// POST `serviceaccounts/{name}/token`: a TokenRequest answered with a signed token
    /// for the account, bound to a Pod, Secret or Node when the request names one.
    pub async fn create_token(&self, t: &Target, body: Value) -> Result<Value> {
        let namespace = t.namespace.clone().unwrap_or_default();
        let name = t.name.clone().unwrap_or_default();
        let spec = token_spec(&name, &body, &self.tokens.audiences)?;
        let account = self
            .get(&target("serviceaccounts", Some(&namespace), &name))
            .await?;
        let mut binding = Binding {
            namespace: namespace.clone(),
            service_account: name_and_uid(&account),
            ..Binding::default()
        };
        let bound = &body["spec"]["boundObjectRef"];
        if !bound.is_null() {
            let kind = bound["kind"].as_str().unwrap_or_default();
            let bound_name = bound["name"].as_str().unwrap_or_default();
            let api_version = bound["apiVersion"].as_str().unwrap_or("v1");
            let (plural, scope) = match (kind, api_version) {
                ("Pod", "v1") => ("pods", Some(namespace.as_str())),
                ("Secret", "v1") => ("secrets", Some(namespace.as_str())),
                ("Node", "v1") => ("nodes", None),
                _ => {
                    return Err(Error::bad_request(format!(
                        "cannot bind token for object of kind {kind:?} ({api_version}): only v1 Pod, Secret and Node"
                    )))
                }
            };
            let obj = self.get(&target(plural, scope, bound_name)).await?;
            let (_, uid) = name_and_uid(&obj);
            if let Some(want) = bound["uid"].as_str().filter(|u| !u.is_empty()) {
                if want != uid {
                    return Err(Error::conflict_because(
                        lookup(plural),
                        bound_name,
                        &format!("the UID in the bound object reference ({want}) does not match the UID in record. The object might have been deleted and then recreated"),
                    ));
                }
            }
            let named = (bound_name.to_string(), uid);
            match kind {
                "Pod" => {
                    if let Some(node) = obj["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
                        // The node's uid tells a token from a node that was replaced under the
                        // same name; a node that is gone leaves the claim out.
                        if let Ok(n) = self.get(&target("nodes", None, node)).await {
                            binding.node = Some(name_and_uid(&n));
                        }
                    }
                    binding.pod = Some(named);
                }
                "Secret" => binding.secret = Some(named),
                _ => binding.node = Some(named),
            }
        }
        let now = jiff::Timestamp::now().as_second();
        let token = self
            .tokens
            .sign(&spec, &binding, now, &crate::handlers::new_uid())?;
        let expires = jiff::Timestamp::from_second(now + spec.expiration_seconds)
            .map_err(|e| Error::internal(e.to_string()))?;
        let mut answer = json!({
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": name, "namespace": namespace, "creationTimestamp": now_rfc3339()},
            "spec": {"audiences": spec.audiences, "expirationSeconds": spec.expiration_seconds},
            "status": {"token": token, "expirationTimestamp": expires.to_string()},
        });
        if !bound.is_null() {
            answer["spec"]["boundObjectRef"] = bound.clone();
        }
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Made with `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`; its
    /// key id was computed by openssl (`openssl pkey -pubout -outform DER | openssl
    /// dgst -sha256 -binary | basenc --base64url`), not by this module.
    const EC_KEY: &str = include_str!("tokens/ec.pem");
    const EC_KID: &str = include_str!("tokens/ec.kid");
    /// A 2048-bit RSA key in PKCS#1 form (`openssl genrsa -traditional`), and its key id.
    const RSA_KEY: &str = include_str!("tokens/rsa.pem");
    const RSA_KID: &str = include_str!("tokens/rsa.kid");

    fn verify(token: &str, jwk: &Value) -> Value {
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3, "a JWS in compact form");
        let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        let input = format!("{}.{}", parts[0], parts[1]);
        let b = |f: &str| URL_SAFE_NO_PAD.decode(jwk[f].as_str().unwrap()).unwrap();
        match jwk["kty"].as_str().unwrap() {
            "EC" => {
                let point = [vec![4u8], b("x"), b("y")].concat();
                signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(input.as_bytes(), &sig)
                    .expect("the EC signature verifies")
            }
            _ => signature::RsaPublicKeyComponents {
                n: b("n"),
                e: b("e"),
            }
            .verify(
                &signature::RSA_PKCS1_2048_8192_SHA256,
                input.as_bytes(),
                &sig,
            )
            .expect("the RSA signature verifies"),
        }
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["kid"], jwk["kid"]);
        assert_eq!(header["alg"], jwk["alg"]);
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap()
    }

    fn binding() -> Binding {
        Binding {
            namespace: "ns".into(),
            service_account: ("builder".into(), "sa-uid".into()),
            pod: Some(("web-0".into(), "pod-uid".into())),
            secret: None,
            node: Some(("w1".into(), "node-uid".into())),
        }
    }

    #[test]
    fn key_ids_are_kubernetes_key_ids() {
        let ec = SigningKey::from_pem(EC_KEY, "ec.pem").unwrap();
        assert_eq!(ec.algorithm(), "ES256");
        assert_eq!(ec.key_id(), EC_KID.trim());
        let rsa = SigningKey::from_pem(RSA_KEY, "rsa.pem").unwrap();
        assert_eq!(rsa.algorithm(), "RS256");
        assert_eq!(rsa.key_id(), RSA_KID.trim());
    }

    #[test]
    fn tokens_verify_with_the_published_key_and_carry_kubernetes_claims() {
        for pem in [EC_KEY, RSA_KEY, &SigningKey::generate_pem().unwrap()] {
            let key = SigningKey::from_pem(pem, "test").unwrap();
            let issuer = TokenIssuer::new(key, DEFAULT_ISSUER.into(), vec!["api".into()]);
            let spec = TokenSpec {
                audiences: vec!["vault".into()],
                expiration_seconds: 900,
            };
            let token = issuer.sign(&spec, &binding(), 1_000_000, "j-1").unwrap();
            let claims = verify(&token, &issuer.jwks()["keys"][0]);
            assert_eq!(claims["sub"], "system:serviceaccount:ns:builder");
            assert_eq!(claims["aud"], json!(["vault"]));
            assert_eq!(claims["iss"], DEFAULT_ISSUER);
            assert_eq!(claims["iat"], 1_000_000);
            assert_eq!(claims["exp"], 1_000_900);
            assert_eq!(claims["jti"], "j-1");
            let k8s = &claims["kubernetes.io"];
            assert_eq!(k8s["namespace"], "ns");
            assert_eq!(
                k8s["serviceaccount"],
                json!({"name": "builder", "uid": "sa-uid"})
            );
            assert_eq!(k8s["pod"], json!({"name": "web-0", "uid": "pod-uid"}));
            assert_eq!(k8s["node"], json!({"name": "w1", "uid": "node-uid"}));
            assert!(k8s.get("secret").is_none());
        }
    }

    #[test]
    fn a_tampered_token_does_not_verify() {
        let key = SigningKey::from_pem(EC_KEY, "ec.pem").unwrap();
        let jwk = key.jwk();
        let issuer = TokenIssuer::new(key, DEFAULT_ISSUER.into(), vec![]);
        let spec = TokenSpec {
            audiences: vec!["a".into()],
            expiration_seconds: 600,
        };
        let token = issuer.sign(&spec, &binding(), 5, "j").unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let forged_claims = URL_SAFE_NO_PAD.encode(
            String::from_utf8(URL_SAFE_NO_PAD.decode(parts[1]).unwrap())
                .unwrap()
                .replace("builder", "admin"),
        );
        let forged = format!("{}.{}.{}", parts[0], forged_claims, parts[2]);
        let result = std::panic::catch_unwind(|| verify(&forged, &jwk));
        assert!(result.is_err(), "a changed claim must break the signature");
    }

    #[test]
    fn specs_are_defaulted_and_checked_as_kubernetes_does() {
        let defaults = vec!["https://kubernetes.default.svc.cluster.local".to_string()];
        let spec = token_spec("default", &json!({"spec": {}}), &defaults).unwrap();
        assert_eq!(spec.audiences, defaults);
        assert_eq!(spec.expiration_seconds, 3600);
        let spec = token_spec(
            "default",
            &json!({"spec": {"audiences": ["x"], "expirationSeconds": 600}}),
            &defaults,
        )
        .unwrap();
        assert_eq!(
            (spec.audiences, spec.expiration_seconds),
            (vec!["x".to_string()], 600)
        );
        let short = token_spec(
            "default",
            &json!({"spec": {"expirationSeconds": 300}}),
            &defaults,
        )
        .unwrap_err();
        assert_eq!(
            short.to_status().message,
            "TokenRequest.authentication.k8s.io \"default\" is invalid: spec.expirationSeconds: Invalid value: 300: may not specify a duration less than 10 minutes"
        );
        assert!(token_spec(
            "default",
            &json!({"spec": {"expirationSeconds": (1i64 << 32) + 1}}),
            &defaults
        )
        .is_err());
    }

    #[test]
    fn keys_that_cannot_sign_are_named() {
        let e = SigningKey::from_pem("nothing here", "/etc/k.pem").unwrap_err();
        assert!(
            e.contains("/etc/k.pem") && e.contains("no PEM block"),
            "{e}"
        );
        let sec1 = "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n";
        let e = SigningKey::from_pem(sec1, "k").unwrap_err();
        assert!(e.contains("openssl pkcs8 -topk8"), "{e}");
        let cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(SigningKey::from_pem(cert, "k")
            .unwrap_err()
            .contains("not a private key"));
    }

    #[test]
    fn generated_keys_roundtrip_through_pem() {
        let pem = SigningKey::generate_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let a = SigningKey::from_pem(&pem, "stored").unwrap();
        let b = SigningKey::from_pem(&pem, "stored").unwrap();
        assert_eq!(a.key_id(), b.key_id());
        assert_eq!(a.algorithm(), "ES256");
    }
}
