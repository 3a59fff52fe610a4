//! Lists bigger than one store answer: an unpaged list is read from the store in pages
//! and streamed, and is the same as the paged list; pages of a paged list are all read
//! at the first page's revision, whatever is written in between.

use std::collections::BTreeMap;

use anyhow::{ensure, Context, Result};
use futures::StreamExt;
use serde_json::{json, Value};
use skiff_tests::control_plane::ControlPlane;

const CMS: &str = "/api/v1/namespaces/default/configmaps";
/// 600 ConfigMaps of 10 KB: 6 MB, over the store client's 4 MiB message limit and over
/// one store page of 500 objects.
const OBJECTS: usize = 600;
const DATA_BYTES: usize = 10_000;

async fn get(client: &reqwest::Client, url: &str, accept: &str) -> Result<(u16, Value)> {
    let resp = client.get(url).header("accept", accept).send().await?;
    let code = resp.status().as_u16();
    let bytes = resp.bytes().await?;
    let v = serde_json::from_slice(&bytes)
        .with_context(|| format!("{url}: not JSON: {}", String::from_utf8_lossy(&bytes)))?;
    Ok((code, v))
}

/// Every page of `url` with `limit`, as (list resourceVersion, items) per page.
async fn pages(client: &reqwest::Client, url: &str, limit: usize) -> Result<Vec<(Value, Value)>> {
    let mut out = Vec::new();
    let mut cont = String::new();
    loop {
        let mut page_url = format!("{url}?limit={limit}");
        if !cont.is_empty() {
            page_url.push_str(&format!("&continue={cont}"));
        }
        let (code, v) = get(client, &page_url, "application/json").await?;
        ensure!(code == 200, "{page_url}: {code} {v}");
        out.push((v["metadata"]["resourceVersion"].clone(), v["items"].clone()));
        match v["metadata"]["continue"].as_str() {
            Some(c) if !c.is_empty() => cont = c.to_string(),
            _ => return Ok(out),
        }
    }
}

fn names(items: &Value) -> Vec<String> {
    items
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|o| o["metadata"]["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_lists_are_streamed_and_pages_stay_on_one_revision() {
    let cp = ControlPlane::start(1).await.unwrap();
    body(&cp).await.unwrap();
}

async fn body(cp: &ControlPlane) -> Result<()> {
    let client = skiff_tests::http::client();
    let url = format!("{}{CMS}", cp.url(0));
    let data = "x".repeat(DATA_BYTES);
    let created = futures::stream::iter(0..OBJECTS)
        .map(|i| {
            let (client, url, data) = (client.clone(), url.clone(), data.clone());
            async move {
                let parity = if i % 2 == 0 { "even" } else { "odd" };
                let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": format!("cm-{i:04}"), "labels": {"parity": parity}},
                    "data": {"k": data}});
                let resp = client.post(&url).json(&cm).send().await?;
                ensure!(
                    resp.status().as_u16() == 201,
                    "create {i}: {}",
                    resp.status()
                );
                Ok(())
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<Result<()>>>()
        .await;
    created.into_iter().collect::<Result<Vec<()>>>()?;

    // Unpaged: every object, in key order, at one resourceVersion.
    let (code, all) = get(&client, &url, "application/json").await?;
    ensure!(code == 200, "unpaged list: {code} {all}");
    let expected: Vec<String> = (0..OBJECTS).map(|i| format!("cm-{i:04}")).collect();
    assert_eq!(names(&all["items"]), expected);
    assert_eq!(all["kind"], "ConfigMapList");
    assert_eq!(all["apiVersion"], "v1");
    assert!(
        all["metadata"].get("continue").is_none(),
        "{}",
        all["metadata"]
    );
    let rv = all["metadata"]["resourceVersion"].clone();
    assert!(rv.as_str().is_some_and(|s| !s.is_empty()), "{rv}");

    // The same list in pages is the same objects, byte for byte, at the same revision.
    let paged = pages(&client, &url, 100).await?;
    assert_eq!(paged.len(), OBJECTS / 100);
    let mut items = Vec::new();
    for (page_rv, page_items) in &paged {
        assert_eq!(page_rv, &rv);
        items.extend(page_items.as_array().cloned().unwrap_or_default());
    }
    assert_eq!(Value::Array(items), all["items"]);

    // A selector filters every store page.
    let (code, even) = get(
        &client,
        &format!("{url}?labelSelector=parity%3Deven"),
        "application/json",
    )
    .await?;
    ensure!(code == 200, "selected list: {code} {even}");
    let even_names: Vec<String> = expected.iter().step_by(2).cloned().collect();
    assert_eq!(names(&even["items"]), even_names);

    // A Table (kubectl get) has one row per object.
    let (code, table) = get(
        &client,
        &url,
        "application/json;as=Table;v=1;g=meta.k8s.io,application/json",
    )
    .await?;
    ensure!(code == 200, "table list: {code} {table}");
    assert_eq!(table["kind"], "Table");
    assert_eq!(table["rows"].as_array().map(Vec::len), Some(OBJECTS));
    assert!(table["columnDefinitions"]
        .as_array()
        .is_some_and(|c| !c.is_empty()));
    assert!(
        table["metadata"]["resourceVersion"].is_string(),
        "{}",
        table["metadata"]
    );

    // Writes between pages are not seen by the rest of a paged list.
    let first = pages_first(&client, &url).await?;
    let changed = json!({"data": {"k": "changed"}});
    let resp = client
        .patch(format!("{url}/cm-0599"))
        .header("content-type", "application/merge-patch+json")
        .body(changed.to_string())
        .send()
        .await?;
    ensure!(resp.status().is_success(), "patch: {}", resp.status());
    let resp = client
        .post(&url)
        .json(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm-9999"}}))
        .send()
        .await?;
    ensure!(resp.status().as_u16() == 201, "create: {}", resp.status());
    let mut rest_rvs = BTreeMap::new();
    let mut rest = Vec::new();
    let mut cont = first.1;
    while let Some(token) = cont {
        let (code, v) = get(
            &client,
            &format!("{url}?limit=200&continue={token}"),
            "application/json",
        )
        .await?;
        ensure!(code == 200, "continued list: {code} {v}");
        *rest_rvs
            .entry(v["metadata"]["resourceVersion"].to_string())
            .or_insert(0) += 1;
        rest.extend(v["items"].as_array().cloned().unwrap_or_default());
        cont = v["metadata"]["continue"]
            .as_str()
            .filter(|c| !c.is_empty())
            .map(str::to_string);
    }
    assert_eq!(
        rest_rvs.keys().cloned().collect::<Vec<_>>(),
        vec![first.0.to_string()],
        "every continued page has the first page's resourceVersion"
    );
    let last = rest.last().context("no items after the first page")?;
    assert_eq!(last["metadata"]["name"], "cm-0599");
    assert_eq!(
        last["data"]["k"],
        data.as_str(),
        "the update is after the snapshot"
    );
    assert_eq!(rest.len(), OBJECTS - 200);
    Ok(())
}

/// The first page of 200: its resourceVersion and continue token.
async fn pages_first(client: &reqwest::Client, url: &str) -> Result<(Value, Option<String>)> {
    let (code, v) = get(client, &format!("{url}?limit=200"), "application/json").await?;
    ensure!(code == 200, "first page: {code} {v}");
    Ok((
        v["metadata"]["resourceVersion"].clone(),
        v["metadata"]["continue"].as_str().map(str::to_string),
    ))
}
