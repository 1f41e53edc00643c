//! `connect_retrying`: gives up after the attempts asked for when nothing
//! listens, with that said in the error; connects once something does.

use std::time::Duration;

use raftoral_client::{ClientError, RaftoralClient, StreamOptions};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[tokio::test]
async fn gives_up_after_the_attempts_with_the_count_in_the_error() {
    let url = format!("http://127.0.0.1:{}", free_port());
    let err = RaftoralClient::connect_retrying(
        &url,
        StreamOptions::default(),
        3,
        Duration::from_millis(1),
    )
    .await
    .err()
    .expect("nothing listens there");
    match err {
        ClientError::Connect { reason, .. } => {
            assert!(reason.contains("gave up after 3 attempts"), "{reason}")
        }
        other => panic!("expected a connect error, got {other:?}"),
    }
}

#[tokio::test]
async fn connects_once_the_sidecar_listens() -> anyhow::Result<()> {
    // A plain TCP listener accepts the connection; the client connects
    // lazily beyond that, which is all connect needs here.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let accept = tokio::spawn(async move { listener.accept().await.map(|_| ()) });
    RaftoralClient::connect_retrying(&url, StreamOptions::default(), 3, Duration::from_millis(1))
        .await?;
    accept.abort();
    Ok(())
}
