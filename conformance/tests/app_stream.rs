//! Bad input on the app stream: each gets a structured error, and other
//! workflows go on.

use std::time::Duration;

use futures::StreamExt;
use raftoral_client::proto::sidecar::v1::{
    CheckpointProposal, ErrorCode, ExecuteWorkflowRequest, HeartbeatRequest, HeldRun,
    RegisterWorkflowRequest, StreamError, WorkflowResult, WorkflowStreamRequest,
    WorkflowStreamResponse, app_service_client::AppServiceClient,
    workflow_stream_request::Message as AppMsg, workflow_stream_response::Message as SidecarMsg,
};
use raftoral_client::{RaftoralClient, WorkflowStatus};
use raftoral_conformance::{DEADLINE, Sidecar, StepsInput, Worker, steps_sum};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

struct RawApp {
    tx: mpsc::Sender<WorkflowStreamRequest>,
    rx: tonic::Streaming<WorkflowStreamResponse>,
}

impl RawApp {
    async fn open(url: &str) -> anyhow::Result<RawApp> {
        let mut client = AppServiceClient::connect(url.to_owned()).await?;
        let (tx, rx) = mpsc::channel(16);
        let rx = client
            .workflow_stream(ReceiverStream::new(rx))
            .await?
            .into_inner();
        Ok(RawApp { tx, rx })
    }

    async fn send(&self, message: Option<AppMsg>) -> anyhow::Result<()> {
        self.tx.send(WorkflowStreamRequest { message }).await?;
        Ok(())
    }

    /// The next message that is not a heartbeat answer.
    async fn next(&mut self) -> anyhow::Result<SidecarMsg> {
        loop {
            let m = tokio::time::timeout(DEADLINE, self.rx.message())
                .await??
                .ok_or_else(|| anyhow::anyhow!("stream closed"))?;
            match m.message {
                Some(SidecarMsg::HeartbeatResponse(_)) | None => continue,
                Some(other) => return Ok(other),
            }
        }
    }

    async fn expect_error(&mut self, code: ErrorCode) -> anyhow::Result<StreamError> {
        match self.next().await? {
            SidecarMsg::Error(e) if e.code() == code => Ok(e),
            other => anyhow::bail!("expected a {code:?} stream error, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn bad_stream_input_gets_structured_errors_while_workflows_continue() -> anyhow::Result<()> {
    let sidecar = Sidecar::start(&["--max-value-bytes", "4096"]).await?;
    let effects = sidecar.dir.path().join("effects.log");
    let _worker = Worker::start(&sidecar.url, &effects, &[]).await?;
    let client = RaftoralClient::connect(&sidecar.url).await?;
    // A long workflow runs on the real worker throughout.
    let busy = client
        .start_workflow("steps", 1, &StepsInput::slow(200, 1))
        .await?;

    let mut app = RawApp::open(&sidecar.url).await?;
    // An empty message.
    app.send(None).await?;
    let e = app.expect_error(ErrorCode::MalformedMessage).await?;
    assert!(e.message.contains("empty"), "{}", e.message);
    // A registration without a name.
    app.send(Some(AppMsg::RegisterWorkflow(RegisterWorkflowRequest {
        held_runs: Vec::new(),
        workflow_name: String::new(),
        version: 1,
        ..Default::default()
    })))
    .await?;
    app.expect_error(ErrorCode::MalformedMessage).await?;
    // A checkpoint over the size limit.
    app.send(Some(AppMsg::CheckpointProposal(CheckpointProposal {
        workflow_id: busy.workflow_id().to_owned(),
        seq: 0,
        checkpoint_name: "big".into(),
        value: vec![b'x'; 5000].into(),
        ..Default::default()
    })))
    .await?;
    let e = app.expect_error(ErrorCode::MessageTooLarge).await?;
    assert_eq!(e.workflow_id, busy.workflow_id());
    assert!(
        e.message.contains("over the limit of 4096 bytes"),
        "{}",
        e.message
    );
    // A checkpoint for a workflow that does not exist.
    app.send(Some(AppMsg::CheckpointProposal(CheckpointProposal {
        workflow_id: "no-such-workflow".into(),
        seq: 0,
        checkpoint_name: "x".into(),
        value: "1".into(),
        ..Default::default()
    })))
    .await?;
    app.expect_error(ErrorCode::UnknownWorkflow).await?;
    // A checkpoint for a workflow that runs on another app session: fenced.
    app.send(Some(AppMsg::CheckpointProposal(CheckpointProposal {
        workflow_id: busy.workflow_id().to_owned(),
        seq: 0,
        checkpoint_name: "step-0".into(),
        value: "0".into(),
        ..Default::default()
    })))
    .await?;
    let e = app.expect_error(ErrorCode::NotOwner).await?;
    assert!(
        e.message.contains("not running on this app session"),
        "{}",
        e.message
    );
    // A result for an unknown workflow, and for one this session does not run.
    app.send(Some(AppMsg::WorkflowResult(WorkflowResult {
        workflow_id: "no-such-workflow".into(),
        success: true,
        ..Default::default()
    })))
    .await?;
    app.expect_error(ErrorCode::UnknownWorkflow).await?;
    app.send(Some(AppMsg::WorkflowResult(WorkflowResult {
        workflow_id: busy.workflow_id().to_owned(),
        success: true,
        ..Default::default()
    })))
    .await?;
    app.expect_error(ErrorCode::NotOwner).await?;
    // The stream is still usable.
    app.send(Some(AppMsg::Heartbeat(HeartbeatRequest { timestamp: 7 })))
        .await?;
    let hb = tokio::time::timeout(DEADLINE, app.rx.message())
        .await??
        .and_then(|m| m.message);
    assert!(matches!(hb, Some(SidecarMsg::HeartbeatResponse(h)) if h.timestamp == 7));

    // A frame over the transport limit ends that stream with a status...
    let app2 = RawApp::open(&sidecar.url).await?;
    let mut rx2 = app2.rx;
    app2.tx
        .send(WorkflowStreamRequest {
            message: Some(AppMsg::CheckpointProposal(CheckpointProposal {
                workflow_id: "x".into(),
                seq: 0,
                checkpoint_name: "huge".into(),
                value: vec![0u8; 1024 * 1024].into(),
                ..Default::default()
            })),
        })
        .await?;
    let status = tokio::time::timeout(DEADLINE, rx2.message())
        .await?
        .expect_err("oversized frame must end the stream");
    assert!(
        matches!(
            status.code(),
            tonic::Code::OutOfRange | tonic::Code::ResourceExhausted
        ),
        "unexpected status {status:?}"
    );

    // ...and a frame that is not a valid message ends it with a status too.
    let status = send_garbage(&sidecar.url).await?;
    assert_eq!(status.code(), tonic::Code::Internal, "{status:?}");

    // Meanwhile the real workflow went on and completes.
    let sum: u64 = tokio::time::timeout(DEADLINE, busy.result()).await??;
    assert_eq!(sum, steps_sum(200u64));
    assert_eq!(
        client.get_workflow(busy.workflow_id()).await?.status(),
        WorkflowStatus::Completed
    );
    Ok(())
}

/// A message whose field 1 is a varint, where the sidecar expects a nested
/// message: undecodable as a `WorkflowStreamRequest`.
#[derive(Clone, PartialEq, prost::Message)]
struct Garbage {
    #[prost(uint64, tag = "1")]
    junk: u64,
}

async fn send_garbage(url: &str) -> anyhow::Result<tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned())?
        .connect()
        .await?;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await?;
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/raftoral.sidecar.v1.AppService/WorkflowStream",
    );
    let codec = tonic_prost::ProstCodec::<Garbage, WorkflowStreamResponse>::default();
    let outbound =
        futures::stream::iter(vec![Garbage { junk: 42 }]).chain(futures::stream::pending());
    let mut inbound = grpc
        .streaming(tonic::Request::new(outbound), path, codec)
        .await?
        .into_inner();
    let result = tokio::time::timeout(Duration::from_secs(10), inbound.message()).await?;
    match result {
        Err(status) => Ok(status),
        Ok(m) => anyhow::bail!("expected the stream to fail, got {m:?}"),
    }
}

/// Refusals say which message they answer; a result sent after a
/// cancellation is "not running", not "not the owner"; names are bounded;
/// version 0 means 1.
#[tokio::test]
async fn refusals_name_their_subject_and_a_result_after_a_cancellation_is_not_running()
-> anyhow::Result<()> {
    use raftoral_client::proto::sidecar::v1::StreamErrorSubject as Subject;
    let sidecar = Sidecar::start(&[]).await?;
    let mut app = RawApp::open(&sidecar.url).await?;
    app.send(Some(AppMsg::RegisterWorkflow(RegisterWorkflowRequest {
        held_runs: Vec::new(),
        workflow_name: "n".repeat(257),
        version: 1,
        ..Default::default()
    })))
    .await?;
    let e = app.expect_error(ErrorCode::MalformedMessage).await?;
    assert_eq!(e.subject(), Subject::Registration);
    assert!(e.message.contains("256"), "{}", e.message);
    // Version 0 is version 1: a start of version 1 runs on this app.
    app.send(Some(AppMsg::RegisterWorkflow(RegisterWorkflowRequest {
        held_runs: Vec::new(),
        workflow_name: "raw".into(),
        version: 0,
        ..Default::default()
    })))
    .await?;
    match app.next().await? {
        SidecarMsg::RegistrationAck(ack) => {
            assert_eq!((ack.workflow_name.as_str(), ack.version), ("raw", 0))
        }
        other => anyhow::bail!("expected the ack, got {other:?}"),
    }
    let client = RaftoralClient::connect(&sidecar.url).await?;
    let h = client.start_workflow("raw", 1, &()).await?;
    let id = h.workflow_id().to_owned();
    match app.next().await? {
        SidecarMsg::ExecuteWorkflow(x) => {
            assert_eq!((x.workflow_id.as_str(), x.is_owner), (id.as_str(), true))
        }
        other => anyhow::bail!("expected the execute request, got {other:?}"),
    }
    client.cancel_workflow(&id, "stop").await?;
    // An app of protocol 0 takes no cancel request: the workflow is
    // cancelled at once (no cleanup) and the app told the plain way.
    match app.next().await? {
        SidecarMsg::WorkflowCancellation(c) => {
            assert_eq!((c.workflow_id.as_str(), c.requested), (id.as_str(), false))
        }
        other => anyhow::bail!("expected the cancellation, got {other:?}"),
    }
    let info = client.get_workflow(&id).await?;
    assert_eq!(
        (info.status(), info.error.as_str()),
        (WorkflowStatus::Cancelled, "stop")
    );
    app.send(Some(AppMsg::WorkflowResult(WorkflowResult {
        workflow_id: id.clone(),
        success: true,
        result: "1".into(),
        error: String::new(),
        ..Default::default()
    })))
    .await?;
    let e = app.expect_error(ErrorCode::WorkflowNotRunning).await?;
    assert_eq!(
        (e.subject(), e.workflow_id.as_str()),
        (Subject::WorkflowResult, id.as_str())
    );
    app.send(Some(AppMsg::CheckpointProposal(CheckpointProposal {
        workflow_id: id.clone(),
        seq: 0,
        checkpoint_name: "a".into(),
        value: "1".into(),
        ..Default::default()
    })))
    .await?;
    let e = app.expect_error(ErrorCode::WorkflowNotRunning).await?;
    assert_eq!(e.subject(), Subject::CheckpointProposal);
    Ok(())
}

impl RawApp {
    /// Ends the stream and waits for the sidecar to end its side, which it
    /// does once the session has released its workflows (so the next
    /// stream gets them).
    async fn close(self) -> anyhow::Result<()> {
        let RawApp { tx, mut rx } = self;
        drop(tx);
        while tokio::time::timeout(DEADLINE, rx.message())
            .await??
            .is_some()
        {}
        Ok(())
    }

    /// Registers `raw` version 1 declaring `held` runs; returns the execute
    /// requests sent before the ack.
    async fn register(
        &mut self,
        held: Vec<HeldRun>,
    ) -> anyhow::Result<Vec<ExecuteWorkflowRequest>> {
        self.send(Some(AppMsg::RegisterWorkflow(RegisterWorkflowRequest {
            workflow_name: "raw".into(),
            version: 1,
            held_runs: held,
            ..Default::default()
        })))
        .await?;
        let mut executes = Vec::new();
        loop {
            match self.next().await? {
                SidecarMsg::ExecuteWorkflow(x) => executes.push(x),
                SidecarMsg::RegistrationAck(_) => return Ok(executes),
                other => anyhow::bail!("expected execute requests then the ack, got {other:?}"),
            }
        }
    }
}

/// A reconnecting app that declares the runs it holds gets only the
/// history after what each knows; one that declares nothing (or more than
/// is committed) gets it whole.
#[tokio::test]
async fn a_reconnect_declaring_held_runs_gets_only_the_missing_history() -> anyhow::Result<()> {
    let sidecar = Sidecar::start(&[]).await?;
    let client = RaftoralClient::connect(&sidecar.url).await?;
    let mut app = RawApp::open(&sidecar.url).await?;
    app.register(Vec::new()).await?;
    let id = client
        .start_workflow("raw", 1, &())
        .await?
        .workflow_id()
        .to_owned();
    match app.next().await? {
        SidecarMsg::ExecuteWorkflow(x) => assert!(x.is_owner),
        other => anyhow::bail!("expected the execute request, got {other:?}"),
    }
    // Five committed checkpoints, each confirmed by its event.
    for seq in 0..5u64 {
        app.send(Some(AppMsg::CheckpointProposal(CheckpointProposal {
            workflow_id: id.clone(),
            seq,
            checkpoint_name: format!("step-{seq}"),
            value: seq.to_string().into(),
            ..Default::default()
        })))
        .await?;
        match app.next().await? {
            SidecarMsg::CheckpointEvent(e) => assert_eq!(e.seq, seq),
            other => anyhow::bail!("expected checkpoint event {seq}, got {other:?}"),
        }
    }
    app.close().await?;

    let held = |checkpoints| {
        vec![HeldRun {
            workflow_id: id.clone(),
            checkpoints,
        }]
    };
    // The app knew 3 of them: seq 3 and 4 come, marked as starting at 3.
    let mut app = RawApp::open(&sidecar.url).await?;
    let sent = app.register(held(3)).await?;
    assert_eq!(sent.len(), 1);
    let x = &sent[0];
    assert_eq!(x.history_start, 3);
    let seqs: Vec<(u64, &str)> = x
        .history
        .iter()
        .map(|r| (r.seq, r.checkpoint_name.as_str()))
        .collect();
    assert_eq!(seqs, [(3, "step-3"), (4, "step-4")]);
    assert!(x.is_owner);
    app.close().await?;

    // Nothing declared, or more than is committed: the whole history.
    for declared in [Vec::new(), held(9)] {
        let mut app = RawApp::open(&sidecar.url).await?;
        let sent = app.register(declared).await?;
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].history_start, 0);
        assert_eq!(sent[0].history.len(), 5);
        app.close().await?;
    }
    Ok(())
}

/// Step proposals of protocol 2, driven by hand: a failure entry is
/// checked (kind and failure agree, details are JSON), attempts follow one
/// another, a seq far past the open ones is refused, and an app of an
/// older protocol is not given a history it cannot read.
#[tokio::test]
async fn step_proposals_are_checked_and_fenced() -> anyhow::Result<()> {
    use raftoral_client::proto::sidecar::v1::{Failure, HistoryEntryKind};
    let sidecar = Sidecar::start(&[]).await?;
    let mut app = RawApp::open(&sidecar.url).await?;
    app.send(Some(AppMsg::RegisterWorkflow(RegisterWorkflowRequest {
        workflow_name: "raw".into(),
        version: 1,
        protocol_version: 2,
        ..Default::default()
    })))
    .await?;
    match app.next().await? {
        SidecarMsg::RegistrationAck(_) => {}
        other => anyhow::bail!("expected the ack, got {other:?}"),
    }
    let client = RaftoralClient::connect(&sidecar.url).await?;
    let h = client.start_workflow("raw", 1, &()).await?;
    let id = h.workflow_id().to_owned();
    match app.next().await? {
        SidecarMsg::ExecuteWorkflow(x) => assert!(x.is_owner),
        other => anyhow::bail!("expected the execute request, got {other:?}"),
    }
    let failure = |details: &str| Failure {
        r#type: "Boom".into(),
        message: "boom".into(),
        details_json: details.into(),
        ..Failure::default()
    };
    let step = |seq, kind: HistoryEntryKind, failure: Option<Failure>, attempt| {
        Some(AppMsg::CheckpointProposal(CheckpointProposal {
            workflow_id: id.clone(),
            seq,
            checkpoint_name: format!("s{seq}"),
            value: if failure.is_none() {
                "1".into()
            } else {
                Default::default()
            },
            kind: kind as i32,
            failure,
            attempt,
            retry_delay_ms: 50,
            timer_duration_ms: 0,
            child: None,
        }))
    };
    // A failed step without its failure, and details that are not JSON.
    app.send(step(0, HistoryEntryKind::StepFailed, None, 1))
        .await?;
    let e = app.expect_error(ErrorCode::MalformedMessage).await?;
    assert!(e.message.contains("needs its failure"), "{}", e.message);
    app.send(step(
        0,
        HistoryEntryKind::StepFailed,
        Some(failure("{x")),
        1,
    ))
    .await?;
    let e = app.expect_error(ErrorCode::MalformedMessage).await?;
    assert!(e.message.contains("JSON"), "{}", e.message);
    // Attempt 1 fails and commits; sent again, it is refused as stale, and
    // attempt 3 cannot skip attempt 2.
    let attempt = |n| {
        step(
            0,
            HistoryEntryKind::StepAttemptFailed,
            Some(failure("{}")),
            n,
        )
    };
    app.send(attempt(1)).await?;
    match app.next().await? {
        SidecarMsg::CheckpointEvent(ev) => {
            assert_eq!(
                (ev.seq, ev.kind(), ev.attempt, ev.history_index),
                (0, HistoryEntryKind::StepAttemptFailed, 1, 0)
            );
            assert_eq!(ev.next_attempt_at_ms, ev.committed_at_ms + 50);
        }
        other => anyhow::bail!("expected the attempt's event, got {other:?}"),
    }
    app.send(attempt(1)).await?;
    app.expect_error(ErrorCode::UnexpectedSeq).await?;
    app.send(attempt(3)).await?;
    app.expect_error(ErrorCode::UnexpectedSeq).await?;
    // Steps side by side: seq 1 may resolve before seq 0, but not 256 past
    // the first open one.
    app.send(step(1, HistoryEntryKind::Unspecified, None, 1))
        .await?;
    match app.next().await? {
        SidecarMsg::CheckpointEvent(ev) => assert_eq!((ev.seq, ev.history_index), (1, 1)),
        other => anyhow::bail!("expected seq 1's event, got {other:?}"),
    }
    app.send(step(256, HistoryEntryKind::Unspecified, None, 1))
        .await?;
    let e = app.expect_error(ErrorCode::TooManyOpenSteps).await?;
    assert_eq!(e.seq, 256);
    // The history now has a failed attempt and an out-of-order seq: an app
    // of protocol 1 is not given the workflow, one of protocol 2 is.
    app.close().await?;
    let mut old = RawApp::open(&sidecar.url).await?;
    old.send(Some(AppMsg::RegisterWorkflow(RegisterWorkflowRequest {
        workflow_name: "raw".into(),
        version: 1,
        ..Default::default()
    })))
    .await?;
    match old.next().await? {
        SidecarMsg::RegistrationAck(_) => {}
        other => anyhow::bail!("protocol 1 got {other:?} before its ack"),
    }
    old.close().await?;
    let mut new = RawApp::open(&sidecar.url).await?;
    new.send(Some(AppMsg::RegisterWorkflow(RegisterWorkflowRequest {
        workflow_name: "raw".into(),
        version: 1,
        protocol_version: 2,
        ..Default::default()
    })))
    .await?;
    match new.next().await? {
        SidecarMsg::ExecuteWorkflow(x) => {
            let kinds: Vec<_> = x.history.iter().map(|r| (r.seq, r.kind())).collect();
            assert_eq!(
                kinds,
                vec![
                    (0, HistoryEntryKind::StepAttemptFailed),
                    (1, HistoryEntryKind::Unspecified)
                ]
            );
        }
        other => anyhow::bail!("expected the execute request, got {other:?}"),
    }
    Ok(())
}

/// Timer proposals of protocol 3, driven by hand: a start is checked (no
/// failure, no value, at most 366 days, an app never fires one), committed
/// with its deadline, sent again it is a duplicate, and the position
/// resolves by the leader's firing; an app of protocol 2 is not given the
/// history.
#[tokio::test]
async fn timer_proposals_are_checked_and_fired_by_the_cluster() -> anyhow::Result<()> {
    use raftoral_client::proto::sidecar::v1::{Failure, HistoryEntryKind};
    let sidecar = Sidecar::start(&[]).await?;
    let register = |protocol_version| {
        Some(AppMsg::RegisterWorkflow(RegisterWorkflowRequest {
            workflow_name: "raw".into(),
            version: 1,
            protocol_version,
            ..Default::default()
        }))
    };
    let mut app = RawApp::open(&sidecar.url).await?;
    app.send(register(3)).await?;
    match app.next().await? {
        SidecarMsg::RegistrationAck(_) => {}
        other => anyhow::bail!("expected the ack, got {other:?}"),
    }
    let client = RaftoralClient::connect(&sidecar.url).await?;
    let id = client
        .start_workflow("raw", 1, &())
        .await?
        .workflow_id()
        .to_owned();
    match app.next().await? {
        SidecarMsg::ExecuteWorkflow(x) => assert!(x.is_owner),
        other => anyhow::bail!("expected the execute request, got {other:?}"),
    }
    let timer = |kind: HistoryEntryKind, ms: u64| CheckpointProposal {
        workflow_id: id.clone(),
        seq: 0,
        checkpoint_name: "nap".into(),
        kind: kind as i32,
        attempt: 1,
        timer_duration_ms: ms,
        ..CheckpointProposal::default()
    };
    let refused = [
        (
            CheckpointProposal {
                failure: Some(Failure {
                    r#type: "Boom".into(),
                    ..Failure::default()
                }),
                ..timer(HistoryEntryKind::TimerStarted, 10)
            },
            "no failure",
        ),
        (
            timer(HistoryEntryKind::TimerStarted, 366 * 86_400_000 + 1),
            "366 days",
        ),
        (timer(HistoryEntryKind::TimerFired, 0), "leader fires"),
        (
            timer(HistoryEntryKind::Unspecified, 10),
            "TIMER_STARTED or EVENT_WAITING entry only",
        ),
    ];
    for (proposal, says) in refused {
        app.send(Some(AppMsg::CheckpointProposal(proposal))).await?;
        let e = app.expect_error(ErrorCode::MalformedMessage).await?;
        assert!(e.message.contains(says), "{}", e.message);
    }
    let start = timer(HistoryEntryKind::TimerStarted, 200);
    app.send(Some(AppMsg::CheckpointProposal(start.clone())))
        .await?;
    let deadline = match app.next().await? {
        SidecarMsg::CheckpointEvent(ev) => {
            assert_eq!(ev.kind(), HistoryEntryKind::TimerStarted);
            assert_eq!(ev.fire_at_ms, ev.committed_at_ms + 200);
            ev.fire_at_ms
        }
        other => anyhow::bail!("expected the start's event, got {other:?}"),
    };
    app.send(Some(AppMsg::CheckpointProposal(start))).await?;
    app.expect_error(ErrorCode::UnexpectedSeq).await?;
    // A step value at the sleeping position is refused.
    app.send(Some(AppMsg::CheckpointProposal(CheckpointProposal {
        value: "1".into(),
        ..timer(HistoryEntryKind::Unspecified, 0)
    })))
    .await?;
    let e = app.expect_error(ErrorCode::MalformedMessage).await?;
    assert!(e.message.contains("running timer"), "{}", e.message);
    match app.next().await? {
        SidecarMsg::CheckpointEvent(ev) => {
            assert_eq!(
                (ev.seq, ev.kind(), ev.history_index),
                (0, HistoryEntryKind::TimerFired, 1)
            );
            assert_eq!(ev.fire_at_ms, deadline);
            assert!(ev.committed_at_ms >= deadline, "fired before its deadline");
        }
        other => anyhow::bail!("expected the firing, got {other:?}"),
    }
    app.close().await?;
    // The history has timers: protocol 2 is not given the workflow.
    let mut old = RawApp::open(&sidecar.url).await?;
    old.send(register(2)).await?;
    match old.next().await? {
        SidecarMsg::RegistrationAck(_) => {}
        other => anyhow::bail!("protocol 2 got {other:?} before its ack"),
    }
    Ok(())
}
