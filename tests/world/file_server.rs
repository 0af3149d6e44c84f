//! A file served on loopback, as an XMPP server's HTTP upload serves it.

/// Serve `body` as `content_type` at `/upload/cat.png`; its URL.
pub async fn serve(body: &'static [u8], content_type: &'static str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let port = listener.local_addr().expect("local addr").port();
    let app = axum::Router::new().route(
        "/upload/cat.png",
        axum::routing::get(move || async move { ([("content-type", content_type)], body) }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://127.0.0.1:{port}/upload/cat.png")
}
