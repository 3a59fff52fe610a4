//! Service account tokens through the real `kubectl create token` (the TokenRequest API),
//! checked against the keys the apiservers publish at `/openid/v1/jwks`: two apiservers
//! on one store sign with the same stored key, the claims are Kubernetes' (subject,
//! audiences, lifetime, the bound pod), and bad requests get Kubernetes' errors.

use anyhow::{ensure, Context, Result};
use serde_json::Value;
use skiff_tests::control_plane::ControlPlane;
use skiff_tests::jwt;

fn stderr_of(cp: &ControlPlane, args: &[&str]) -> Result<String> {
    let out = cp.kubectl(args)?;
    ensure!(!out.status.success(), "kubectl {args:?} succeeded");
    Ok(String::from_utf8_lossy(&out.stderr).into_owned())
}

/// `kubectl create token builder` bound to pod `name`, with `uid` when given.
fn bound_to<'a>(name: &'a str, uid: Option<&'a str>) -> Vec<&'a str> {
    let mut args = vec!["create", "token", "builder", "--bound-object-kind", "Pod"];
    args.extend(["--bound-object-name", name]);
    if let Some(uid) = uid {
        args.extend(["--bound-object-uid", uid]);
    }
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_create_token_signs_tokens_the_published_keys_verify() -> Result<()> {
    let cp = ControlPlane::start(2).await?;
    let jwks: Value =
        serde_json::from_str(&cp.kubectl_ok(&["get", "--raw", "/openid/v1/jwks"])?)?;
    let other = skiff_tests::http::get(format!("{}/openid/v1/jwks", cp.url(1)))
        .await?
        .text()
        .await?;
    ensure!(
        serde_json::from_str::<Value>(&other)? == jwks,
        "the second apiserver publishes another key: {other} vs {jwks}"
    );
    let discovery: Value = serde_json::from_str(&cp.kubectl_ok(&[
        "get",
        "--raw",
        "/.well-known/openid-configuration",
    ])?)?;
    ensure!(discovery["issuer"] == "https://kubernetes.default.svc.cluster.local");
    ensure!(discovery["jwks_uri"]
        .as_str()
        .is_some_and(|u| u.ends_with("/openid/v1/jwks")));

    cp.kubectl_ok(&["create", "serviceaccount", "builder"])?;
    let account: Value = serde_json::from_str(&cp.kubectl_ok(&[
        "get",
        "serviceaccount",
        "builder",
        "-o",
        "json",
    ])?)?;
    let before = jiff::Timestamp::now().as_second();
    let token = cp.kubectl_ok(&[
        "create",
        "token",
        "builder",
        "--audience",
        "vault",
        "--duration",
        "15m",
    ])?;
    let claims = jwt::verify(&token, &jwks)?;
    ensure!(
        claims["sub"] == "system:serviceaccount:default:builder",
        "{claims}"
    );
    ensure!(claims["aud"] == serde_json::json!(["vault"]), "{claims}");
    ensure!(claims["iss"] == discovery["issuer"], "{claims}");
    let iat = claims["iat"].as_i64().context("iat")?;
    ensure!(iat >= before - 1, "issued at {iat}, asked at {before}");
    ensure!(claims["exp"].as_i64() == Some(iat + 900), "{claims}");
    ensure!(
        claims["kubernetes.io"]["serviceaccount"]["uid"] == account["metadata"]["uid"],
        "{claims}"
    );
    // Without an audience the token is for the apiserver itself (its issuer).
    let plain = jwt::verify(&cp.kubectl_ok(&["create", "token", "builder"])?, &jwks)?;
    ensure!(
        plain["aud"] == serde_json::json!([discovery["issuer"]]),
        "{plain}"
    );
    ensure!(
        plain["exp"]
            .as_i64()
            .zip(plain["iat"].as_i64())
            .map(|(e, i)| e - i)
            == Some(3600),
        "the default lifetime is an hour: {plain}"
    );

    // Bound to a pod: the claim names it, and the uid must be the pod's.
    cp.kubectl_ok(&[
        "run",
        "holder",
        "--image=busybox",
        "--restart=Never",
        "--overrides",
        r#"{"spec":{"serviceAccountName":"builder"}}"#,
    ])?;
    let pod_uid = cp.kubectl_ok(&["get", "pod", "holder", "-o", "jsonpath={.metadata.uid}"])?;
    let bound = cp.kubectl_ok(&bound_to("holder", Some(&pod_uid)))?;
    let bound = jwt::verify(&bound, &jwks)?;
    ensure!(
        bound["kubernetes.io"]["pod"] == serde_json::json!({"name": "holder", "uid": pod_uid}),
        "{bound}"
    );
    let wrong_uid = stderr_of(&cp, &bound_to("holder", Some("0000")))?;
    ensure!(
        wrong_uid.contains("does not match the UID in record"),
        "{wrong_uid}"
    );
    let no_pod = stderr_of(&cp, &bound_to("ghost", None))?;
    ensure!(no_pod.contains(r#"pods "ghost" not found"#), "{no_pod}");

    let no_account = stderr_of(&cp, &["create", "token", "nobody"])?;
    ensure!(
        no_account.contains(r#"serviceaccounts "nobody" not found"#),
        "{no_account}"
    );
    let short = stderr_of(&cp, &["create", "token", "builder", "--duration", "5m"])?;
    ensure!(
        short.contains("may not specify a duration less than 10 minutes"),
        "{short}"
    );
    // The forged claims of a changed token do not verify.
    let parts: Vec<&str> = token.trim().split('.').collect();
    let forged = format!("{}.{}.{}", parts[0], parts[0], parts[2]);
    ensure!(
        jwt::verify(&forged, &jwks).is_err(),
        "a forged token verified"
    );
    Ok(())
}
