//! Service account tokens as a client checks them: a JWS in compact form, verified
//! against the apiserver's published keys (`/openid/v1/jwks`) with ring, independently
//! of the apiserver's own code.

use anyhow::{bail, ensure, Context, Result};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::signature;
use serde_json::Value;

/// The claims of `token` once its signature checks out against the key of `jwks` that
/// its header names.
pub fn verify(token: &str, jwks: &Value) -> Result<Value> {
    let parts: Vec<&str> = token.trim().split('.').collect();
    ensure!(parts.len() == 3, "not a compact JWS: {token:?}");
    let decode = |s: &str| URL_SAFE_NO_PAD.decode(s).context("base64url");
    let header: Value = serde_json::from_slice(&decode(parts[0])?)?;
    let kid = header["kid"].as_str().context("the header has no kid")?;
    let jwk = jwks["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|k| k["kid"] == kid)
        .with_context(|| format!("no key {kid} in {jwks}"))?;
    let field = |f: &str| decode(jwk[f].as_str().unwrap_or_default());
    let signed = format!("{}.{}", parts[0], parts[1]);
    let sig = decode(parts[2])?;
    let checked = match (header["alg"].as_str(), jwk["kty"].as_str()) {
        (Some("ES256"), Some("EC")) => {
            let point = [vec![4u8], field("x")?, field("y")?].concat();
            signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(signed.as_bytes(), &sig)
        }
        (Some("RS256"), Some("RSA")) => signature::RsaPublicKeyComponents {
            n: field("n")?,
            e: field("e")?,
        }
        .verify(
            &signature::RSA_PKCS1_2048_8192_SHA256,
            signed.as_bytes(),
            &sig,
        ),
        (alg, kty) => bail!("alg {alg:?} with a key of type {kty:?}"),
    };
    if checked.is_err() {
        bail!("the token's signature does not verify with key {kid}");
    }
    Ok(serde_json::from_slice(&decode(parts[1])?)?)
}
