//! The machine's floors, measured in the same run as everything else: what
//! one fsync and one round trip between two processes cost here. A durable
//! step cannot be cheaper than the first; the sidecar adds at least the
//! second to every step (the app and the sidecar are two processes).

use std::io::Write as _;
use std::process::Stdio;
use std::time::Instant;

use anyhow::Context;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::stats::{Latency, Recorder};

/// Bytes per record or message: about one checkpoint.
pub const PAYLOAD: usize = 300;

/// Both floors.
#[derive(Debug, Serialize)]
pub struct Floors {
    /// `write` + `fdatasync` of one record appended to a preallocated file
    /// (the log's own pattern).
    pub fsync: Latency,
    /// One message to another process over loopback TCP (nodelay) and its
    /// echo back, both sides on tokio.
    pub process_round_trip: Latency,
}

/// Measures both floors with `samples` samples each.
pub async fn measure(samples: u64) -> anyhow::Result<Floors> {
    let fsync = tokio::task::spawn_blocking(move || fsync_floor(samples)).await??;
    let process_round_trip = round_trip_floor(samples).await?;
    Ok(Floors {
        fsync,
        process_round_trip,
    })
}

fn fsync_floor(samples: u64) -> anyhow::Result<Latency> {
    let dir = tempfile::tempdir()?;
    let mut file = std::fs::File::create(dir.path().join("floor.bin"))?;
    let len = (samples + 100) * PAYLOAD as u64;
    rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, len)
        .context("preallocate")?;
    file.sync_all()?;
    let record = [7u8; PAYLOAD];
    let mut recorder = Recorder::new();
    for i in 0..samples + 100 {
        let t = Instant::now();
        file.write_all(&record)?;
        file.sync_data()?;
        if i >= 100 {
            recorder.record(t.elapsed());
        }
    }
    Ok(recorder.summary())
}

async fn round_trip_floor(samples: u64) -> anyhow::Result<Latency> {
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .arg("echo")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("spawn the echo process")?;
    let stdout = child.stdout.take().context("echo stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).await?;
    let mut stream = TcpStream::connect(line.trim()).await?;
    stream.set_nodelay(true)?;
    let mut buf = [0u8; PAYLOAD];
    let mut recorder = Recorder::new();
    for i in 0..samples + 100 {
        let t = Instant::now();
        stream.write_all(&buf).await?;
        stream.read_exact(&mut buf).await?;
        if i >= 100 {
            recorder.record(t.elapsed());
        }
    }
    drop(stream);
    let _ = child.kill().await;
    Ok(recorder.summary())
}

/// The other process of the round-trip floor: prints its address, then
/// echoes fixed-size messages on one connection.
pub async fn echo() -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("{}", listener.local_addr()?);
    let (mut stream, _) = listener.accept().await?;
    stream.set_nodelay(true)?;
    let mut buf = [0u8; PAYLOAD];
    while stream.read_exact(&mut buf).await.is_ok() {
        stream.write_all(&buf).await?;
    }
    Ok(())
}
