//! reqwest for tests, through skiff's builder (which installs the TLS crypto provider
//! that building any reqwest client in this workspace needs).

/// A plain reqwest client.
pub fn client() -> reqwest::Client {
    skiff_client::reqwest_builder()
        .build()
        .expect("a reqwest client with default settings builds")
}

/// `reqwest::get`, through [`client`].
pub async fn get(url: impl reqwest::IntoUrl) -> reqwest::Result<reqwest::Response> {
    client().get(url).send().await
}
