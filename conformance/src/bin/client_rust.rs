//! The Rust SDK's conformance client: one client API call, given as a JSON
//! command line, through `raftoral_client`; prints one JSON line and exits.
//! Every SDK has one like it (conformance/WORKERS.md, "Client mode"), so a
//! scenario can make any language signal or resolve the workflows that any
//! other language runs.
//!
//! Usage: `conformance-client-rust '<json>'` with `RAFTORAL_SIDECAR_URL` set.
//! `{"op":"signal","workflow_id":W,"name":N,"payload":P,"key":K?}` prints
//! `{"ok":true,"duplicate":D}`; `{"op":"resolve","id":A,"payload":P}` and
//! `{"op":"reject","id":A,"message":M,"type":T}` print `{"ok":true}`. A
//! refusal prints `{"ok":false,"error":MESSAGE,"code":CODE}` (exit 0); a bad
//! command line exits with status 2.

use std::process::ExitCode;

use anyhow::Context as _;
use bytes::Bytes;
use raftoral_client::{ClientError, RaftoralClient};
use serde::Deserialize;
use serde_json::{Value, json};

/// One command of the client mode.
#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
enum Command {
    Signal {
        workflow_id: String,
        name: String,
        #[serde(default)]
        payload: Value,
        #[serde(default)]
        key: Option<String>,
    },
    Resolve {
        id: String,
        #[serde(default)]
        payload: Value,
    },
    Reject {
        id: String,
        message: String,
        #[serde(default = "rejected", rename = "type")]
        error_type: String,
    },
}

fn rejected() -> String {
    "Rejected".into()
}

/// The gRPC code's canonical name (`NOT_FOUND`), as every client prints it.
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The `code` of a refusal: the gRPC code's name, else the error's kind.
fn error_code(e: &ClientError) -> String {
    if let Some(code) = e.code() {
        return code_name(code).to_owned();
    }
    match e {
        ClientError::Connect { .. } => "UNAVAILABLE".into(),
        ClientError::Codec(_) => "INVALID_ARGUMENT".into(),
        other => format!("{other:?}")
            .split(|c: char| !c.is_alphanumeric())
            .next()
            .unwrap_or("ClientError")
            .to_owned(),
    }
}

async fn run(url: &str, command: Command) -> Result<Value, ClientError> {
    let client = RaftoralClient::connect(url).await?;
    match command {
        Command::Signal {
            workflow_id,
            name,
            payload,
            key,
        } => {
            let payload = Bytes::from(serde_json::to_vec(&payload)?);
            let sent = client
                .signal_workflow_raw(&workflow_id, &name, payload, key.as_deref())
                .await?;
            Ok(json!({"ok": true, "duplicate": sent.duplicate}))
        }
        Command::Resolve { id, payload } => {
            client.resolve_awakeable(&id, &payload).await?;
            Ok(json!({"ok": true}))
        }
        Command::Reject {
            id,
            message,
            error_type,
        } => {
            client.reject_awakeable(&id, &error_type, &message).await?;
            Ok(json!({"ok": true}))
        }
    }
}

/// The sidecar's URL and the command, or why the command line is wrong.
fn parse() -> anyhow::Result<(String, Command)> {
    let mut args = std::env::args().skip(1);
    let (Some(line), None) = (args.next(), args.next()) else {
        anyhow::bail!("usage: conformance-client-rust '<json command>'");
    };
    let url = std::env::var("RAFTORAL_SIDECAR_URL").context("RAFTORAL_SIDECAR_URL is not set")?;
    let command = serde_json::from_str(&line).with_context(|| format!("bad command {line:?}"))?;
    Ok((url, command))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let (url, command) = match parse() {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("conformance-client-rust: {e:#}");
            return ExitCode::from(2);
        }
    };
    let out = match run(&url, command).await {
        Ok(out) => out,
        Err(e) => json!({"ok": false, "error": e.to_string(), "code": error_code(&e)}),
    };
    println!("{out}");
    ExitCode::SUCCESS
}
