//! The core's rules, checked message by message without any transport.

use std::sync::Arc;
use std::time::Duration;

use raftoral_proto::sidecar::v1::{CheckpointProposal, CheckpointRecord};

use super::*;

pub(super) fn execute(
    id: &str,
    is_owner: bool,
    history: &[(&str, &str)],
) -> ExecuteWorkflowRequest {
    ExecuteWorkflowRequest {
        workflow_id: id.into(),
        workflow_name: "wf".into(),
        version: 1,
        input: Bytes::from_static(b"null"),
        is_owner,
        history: history
            .iter()
            .enumerate()
            .map(|(seq, (name, value))| CheckpointRecord {
                seq: seq as u64,
                checkpoint_name: (*name).into(),
                value: Bytes::copy_from_slice(value.as_bytes()),
                ..CheckpointRecord::default()
            })
            .collect(),
        history_start: 0,
        random_seed: 0,
    }
}

pub(super) fn event(id: &str, seq: u64, name: &str, value: &str) -> CheckpointEvent {
    CheckpointEvent {
        workflow_id: id.into(),
        seq,
        checkpoint_name: name.into(),
        value: Bytes::copy_from_slice(value.as_bytes()),
        history_index: seq,
        ..CheckpointEvent::default()
    }
}

pub(super) fn connected() -> (Arc<WorkerCore>, mpsc::Receiver<WorkflowStreamRequest>) {
    let core = Arc::new(WorkerCore::new());
    let (tx, rx) = mpsc::channel(16);
    core.on_connect(tx);
    (core, rx)
}

pub(super) async fn next_proposal(
    rx: &mut mpsc::Receiver<WorkflowStreamRequest>,
) -> CheckpointProposal {
    let m = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("a message")
        .expect("open channel");
    match m.message {
        Some(AppMsg::CheckpointProposal(p)) => p,
        other => panic!("expected a proposal, got {other:?}"),
    }
}

/// An owner run of "w" whose first checkpoint "a" is computed as `value`,
/// proposed (the proposal taken from `rx`) and awaiting its commit.
async fn proposing(
    core: &Arc<WorkerCore>,
    rx: &mut mpsc::Receiver<WorkflowStreamRequest>,
    value: &'static [u8],
) -> (
    RunHandle,
    tokio::task::JoinHandle<Result<Bytes, ClientError>>,
) {
    let run = core.on_execute(execute("w", true, &[])).unwrap();
    let Slot::Compute(token) = core.checkpoint_slot(&run, "a").await.unwrap() else {
        panic!("owner must compute")
    };
    let committing = spawn_commit(core, &run, token, Bytes::from_static(value));
    next_proposal(rx).await;
    (run, committing)
}

/// Commits `value` for `token` on its own task (the caller plays the sidecar).
fn spawn_commit(
    core: &Arc<WorkerCore>,
    run: &RunHandle,
    token: ComputeToken,
    value: Bytes,
) -> tokio::task::JoinHandle<Result<Bytes, ClientError>> {
    let (core, run) = (core.clone(), run.clone());
    tokio::spawn(async move { core.commit(&run, token, value).await })
}

/// Asks for a slot on its own task (it may wait for an event).
fn spawn_slot(
    core: &Arc<WorkerCore>,
    run: &RunHandle,
    name: &'static str,
) -> tokio::task::JoinHandle<Result<Slot, ClientError>> {
    let (core, run) = (core.clone(), run.clone());
    tokio::spawn(async move { core.checkpoint_slot(&run, name).await })
}

fn committed(slot: Slot) -> Bytes {
    match slot {
        Slot::Committed(v) => v,
        Slot::Compute(t) => panic!(
            "expected a committed value, got a compute token for seq {}",
            t.seq
        ),
    }
}

#[tokio::test]
async fn replay_returns_history_then_asks_the_owner_to_compute() {
    let (core, _rx) = connected();
    let run = core
        .on_execute(execute("w", true, &[("a", "1"), ("b", "2")]))
        .unwrap();
    assert_eq!(
        committed(core.checkpoint_slot(&run, "a").await.unwrap()),
        "1"
    );
    assert_eq!(
        committed(core.checkpoint_slot(&run, "b").await.unwrap()),
        "2"
    );
    match core.checkpoint_slot(&run, "c").await.unwrap() {
        Slot::Compute(token) => assert_eq!(token.seq(), 2),
        Slot::Committed(_) => panic!("history is exhausted; the owner must compute"),
    }
}

#[tokio::test]
async fn a_different_name_on_replay_is_non_determinism() {
    let (core, _rx) = connected();
    let run = core
        .on_execute(execute("w", true, &[("a", "1"), ("b", "2")]))
        .unwrap();
    core.checkpoint_slot(&run, "a").await.unwrap();
    match core.checkpoint_slot(&run, "z").await {
        Err(ClientError::NonDeterminism {
            workflow_id,
            seq,
            expected,
            got,
        }) => {
            assert_eq!(
                (workflow_id.as_str(), seq, expected.as_str(), got.as_str()),
                ("w", 1, "b", "z")
            );
        }
        other => panic!("expected non-determinism, got {other:?}"),
    }
}

#[tokio::test]
async fn owner_commit_sends_a_proposal_and_returns_the_committed_value() {
    let (core, mut rx) = connected();
    let run = core.on_execute(execute("w", true, &[])).unwrap();
    let Slot::Compute(token) = core.checkpoint_slot(&run, "a").await.unwrap() else {
        panic!("owner must compute")
    };
    let committing = spawn_commit(&core, &run, token, Bytes::from_static(b"42"));
    let p = next_proposal(&mut rx).await;
    assert_eq!(
        (p.workflow_id.as_str(), p.seq, p.checkpoint_name.as_str()),
        ("w", 0, "a")
    );
    assert_eq!(p.value, "42");
    core.on_checkpoint_event(event("w", 0, "a", "42"));
    assert_eq!(committing.await.unwrap().unwrap(), "42");
    // The next checkpoint is seq 1.
    let Slot::Compute(token) = core.checkpoint_slot(&run, "b").await.unwrap() else {
        panic!("owner must compute")
    };
    assert_eq!(token.seq(), 1);
}

#[tokio::test]
async fn a_replica_waits_for_the_owner_and_never_computes() {
    let (core, _rx) = connected();
    let run = core.on_execute(execute("w", false, &[])).unwrap();
    let waiting = spawn_slot(&core, &run, "a");
    core.on_checkpoint_event(event("w", 0, "a", "7"));
    assert_eq!(committed(waiting.await.unwrap().unwrap()), "7");
}

#[tokio::test]
async fn a_replica_that_becomes_owner_computes_the_pending_checkpoint() {
    let (core, _rx) = connected();
    let run = core.on_execute(execute("w", false, &[("a", "1")])).unwrap();
    committed(core.checkpoint_slot(&run, "a").await.unwrap());
    let waiting = spawn_slot(&core, &run, "b");
    core.on_ownership_change(OwnershipChange {
        workflow_id: "w".into(),
        is_owner: true,
    });
    match waiting.await.unwrap().unwrap() {
        Slot::Compute(token) => assert_eq!(token.seq(), 1),
        Slot::Committed(_) => panic!("nothing was committed; the new owner computes"),
    }
}

#[tokio::test]
async fn cancellation_wakes_a_waiting_checkpoint() {
    let (core, _rx) = connected();
    let run = core.on_execute(execute("w", false, &[])).unwrap();
    let waiting = spawn_slot(&core, &run, "a");
    core.on_cancellation(WorkflowCancellation {
        workflow_id: "w".into(),
        reason: "stop".into(),
        ..WorkflowCancellation::default()
    });
    match waiting.await.unwrap() {
        Err(ClientError::Cancelled { reason, .. }) => assert_eq!(reason, "stop"),
        other => panic!("expected cancellation, got {other:?}"),
    }
}

#[tokio::test]
async fn after_a_reconnect_the_in_flight_proposal_is_sent_again() {
    let (core, mut rx) = connected();
    let (_run, committing) = proposing(&core, &mut rx, b"1").await;
    core.on_disconnect();
    let (tx2, mut rx2) = mpsc::channel(16);
    core.on_connect(tx2);
    // The sidecar re-sends the execute request; seq 0 is not committed.
    assert!(
        core.on_execute(execute("w", true, &[])).is_none(),
        "an existing run is not started twice"
    );
    let again = next_proposal(&mut rx2).await;
    assert_eq!((again.seq, again.value.as_ref()), (0, b"1".as_ref()));
    // This time the history carries it: the commit completes from it.
    assert!(core.on_execute(execute("w", true, &[("a", "1")])).is_none());
    assert_eq!(committing.await.unwrap().unwrap(), "1");
}

#[tokio::test]
async fn a_refused_proposal_fails_the_checkpoint_with_the_code() {
    let (core, mut rx) = connected();
    let (_run, committing) = proposing(&core, &mut rx, b"huge").await;
    assert!(
        core.on_stream_error(StreamError {
            code: ErrorCode::MessageTooLarge as i32,
            message: "too big".into(),
            workflow_id: "w".into(),
            seq: 0,
            ..Default::default()
        })
        .is_none()
    );
    match committing.await.unwrap() {
        Err(ClientError::Rejected { code, .. }) => assert_eq!(code, ErrorCode::MessageTooLarge),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[tokio::test]
async fn a_deposed_owner_waits_for_the_new_owners_value() {
    let (core, mut rx) = connected();
    let (_run, committing) = proposing(&core, &mut rx, b"mine").await;
    core.on_stream_error(StreamError {
        code: ErrorCode::NotOwner as i32,
        message: "deposed".into(),
        workflow_id: "w".into(),
        seq: 0,
        ..Default::default()
    });
    core.on_checkpoint_event(event("w", 0, "a", "theirs"));
    assert_eq!(committing.await.unwrap().unwrap(), "theirs");
}

#[tokio::test]
async fn shutdown_wakes_waiters_and_reports_nothing() {
    let (core, mut rx) = connected();
    let run = core.on_execute(execute("w", false, &[])).unwrap();
    let waiting = spawn_slot(&core, &run, "a");
    core.shutdown();
    let outcome = waiting.await.unwrap();
    assert!(matches!(outcome, Err(ClientError::Shutdown)), "{outcome:?}");
    core.finish(&run, Err(ClientError::Shutdown));
    assert!(
        rx.try_recv().is_err(),
        "a shutdown is not a workflow outcome"
    );
    assert!(
        core.on_execute(execute("x", true, &[])).is_none(),
        "no new runs while shutting down"
    );
}

#[tokio::test]
async fn owner_and_replica_both_report_their_result() {
    let (core, mut rx) = connected();
    let owner = core.on_execute(execute("a", true, &[])).unwrap();
    let replica = core.on_execute(execute("b", false, &[])).unwrap();
    core.finish(&replica, Ok(Bytes::from_static(b"1")));
    match rx.try_recv().expect("the replica's result").message {
        Some(AppMsg::WorkflowResult(r)) => {
            assert_eq!((r.workflow_id.as_str(), r.success), ("b", true))
        }
        other => panic!("expected a result, got {other:?}"),
    }
    core.finish(
        &owner,
        Err(ClientError::WorkflowFailed {
            workflow_id: "a".into(),
            message: "boom".into(),
            failure: None,
        }),
    );
    let m = rx.try_recv().expect("the owner's result");
    match m.message {
        Some(AppMsg::WorkflowResult(r)) => {
            assert_eq!(
                (r.workflow_id.as_str(), r.success, r.error.as_str()),
                ("a", false, "boom")
            );
        }
        other => panic!("expected a result, got {other:?}"),
    }
    assert!(rx.try_recv().is_err());
    assert_eq!(core.running(), 0);
}

fn refusal(code: ErrorCode, seq: u64) -> StreamError {
    StreamError {
        code: code as i32,
        message: format!("{code:?}"),
        workflow_id: "w".into(),
        seq,
        ..Default::default()
    }
}

#[tokio::test]
async fn ownership_that_leaves_and_comes_back_before_a_commit_re_proposes_the_step() {
    let (core, mut rx) = connected();
    let (_run, committing) = proposing(&core, &mut rx, b"1").await;
    // Ownership moves away (the late proposal is refused), then comes back
    // before the other node committed seq 0.
    core.on_ownership_change(OwnershipChange {
        workflow_id: "w".into(),
        is_owner: false,
    });
    core.on_stream_error(refusal(ErrorCode::NotOwner, 0));
    core.on_ownership_change(OwnershipChange {
        workflow_id: "w".into(),
        is_owner: true,
    });
    let again = next_proposal(&mut rx).await;
    assert_eq!((again.seq, again.value.as_ref()), (0, b"1".as_ref()));
    core.on_checkpoint_event(event("w", 0, "a", "1"));
    assert_eq!(committing.await.unwrap().unwrap(), "1");
}

#[tokio::test]
async fn a_duplicate_refused_as_unexpected_seq_resolves_to_the_committed_value() {
    let (core, mut rx) = connected();
    let (_run, committing) = proposing(&core, &mut rx, b"1").await;
    // The refusal of a re-sent duplicate, before the event of the first
    // attempt's commit: not a failure.
    core.on_stream_error(refusal(ErrorCode::UnexpectedSeq, 0));
    tokio::task::yield_now().await;
    assert!(
        !committing.is_finished(),
        "an UNEXPECTED_SEQ must not fail the step"
    );
    core.on_checkpoint_event(event("w", 0, "a", "1"));
    assert_eq!(committing.await.unwrap().unwrap(), "1");
    assert!(rx.try_recv().is_err(), "nothing else was sent");
}

#[tokio::test]
async fn a_workflow_finished_elsewhere_ends_the_run_without_a_result() {
    let (core, mut rx) = connected();
    let (run, committing) = proposing(&core, &mut rx, b"1").await;
    core.on_stream_error(refusal(ErrorCode::WorkflowNotRunning, 0));
    let outcome = committing.await.unwrap();
    assert!(
        matches!(outcome, Err(ClientError::NotRunning { .. })),
        "{outcome:?}"
    );
    core.finish(&run, outcome.map(|_| Bytes::new()));
    assert!(
        rx.try_recv().is_err(),
        "no result: a replica's made-up failure would be reported as non-determinism"
    );
}

#[tokio::test]
async fn a_full_stream_delays_messages_but_never_drops_them() {
    let core = Arc::new(WorkerCore::new());
    let (tx, mut rx) = mpsc::channel(2);
    core.on_connect(tx);
    let runs: Vec<RunHandle> = (0..10)
        .map(|i| {
            core.on_execute(execute(&format!("r{i}"), true, &[]))
                .unwrap()
        })
        .collect();
    for run in &runs {
        core.finish(run, Ok(Bytes::from_static(b"1")));
    }
    let mut results = std::collections::BTreeSet::new();
    while results.len() < runs.len() {
        let m = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("every result arrives")
            .expect("open");
        if let Some(AppMsg::WorkflowResult(r)) = m.message {
            results.insert(r.workflow_id);
        }
    }
    assert_eq!(results.len(), 10);
}

#[tokio::test]
async fn cancelled_resolves_with_the_reason_and_none_when_the_run_ends() {
    let (core, _rx) = connected();
    let run = core.on_execute(execute("w", true, &[])).unwrap();
    let waiting = {
        let core = core.clone();
        let run = run.clone();
        tokio::spawn(async move { core.cancelled(&run).await })
    };
    core.on_cancellation(WorkflowCancellation {
        workflow_id: "w".into(),
        reason: "stop".into(),
        ..WorkflowCancellation::default()
    });
    assert_eq!(waiting.await.unwrap().as_deref(), Some("stop"));

    let other = core.on_execute(execute("x", true, &[])).unwrap();
    let waiting = {
        let core = core.clone();
        let other = other.clone();
        tokio::spawn(async move { core.cancelled(&other).await })
    };
    core.finish(&other, Ok(Bytes::from_static(b"1")));
    assert_eq!(
        waiting.await.unwrap(),
        None,
        "a finished run is not cancelled"
    );
}

#[tokio::test]
async fn after_a_reconnect_nothing_is_proposed_before_the_execute_request_confirms_ownership() {
    let (core, mut rx) = connected();
    let (_run, committing) = proposing(&core, &mut rx, b"1").await;
    // The old session's answer: not committed, retry (after RETRY_DELAY).
    core.on_stream_error(refusal(ErrorCode::Unavailable, 0));
    core.on_disconnect();
    let (tx2, mut rx2) = mpsc::channel(16);
    core.on_connect(tx2);
    // The new session does not run the workflow yet (a restarted node may
    // not even know it): a proposal now would be refused. Watch past the
    // retry delay.
    let early = tokio::time::timeout(RETRY_DELAY * 2, rx2.recv()).await;
    assert!(
        early.is_err(),
        "nothing before the execute request: {early:?}"
    );
    assert!(core.on_execute(execute("w", true, &[])).is_none());
    let again = next_proposal(&mut rx2).await;
    assert_eq!(again.seq, 0);
    core.on_checkpoint_event(event("w", 0, "a", "1"));
    assert_eq!(committing.await.unwrap().unwrap(), "1");
}

#[tokio::test]
async fn an_unknown_workflow_refusal_ends_the_run_without_a_result() {
    let (core, mut rx) = connected();
    let (_run, committing) = proposing(&core, &mut rx, b"1").await;
    core.on_stream_error(refusal(ErrorCode::UnknownWorkflow, 0));
    let outcome = committing.await.unwrap();
    assert!(
        matches!(outcome, Err(ClientError::NotRunning { .. })),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn a_run_not_sent_again_before_the_registration_ack_ends_as_not_running() {
    let (core, _rx) = connected();
    let gone = core.on_execute(execute("gone", false, &[])).unwrap();
    let kept = core.on_execute(execute("kept", false, &[])).unwrap();
    let waiting_gone = spawn_slot(&core, &gone, "a");
    let waiting_kept = spawn_slot(&core, &kept, "a");
    // The ack of the first stream ends nothing: both were sent on it.
    core.on_registered("wf", 1);
    core.on_disconnect();
    let (tx2, _rx2) = mpsc::channel(16);
    core.on_connect(tx2);
    // "gone" finished while the app was away: only "kept" is sent again,
    // then the ack. An ack of another type touches neither.
    assert!(core.on_execute(execute("kept", false, &[])).is_none());
    core.on_registered("other", 1);
    core.on_registered("wf", 1);
    match waiting_gone.await.unwrap() {
        Err(ClientError::NotRunning { .. }) => {}
        other => panic!("expected the run to end as not running, got {other:?}"),
    }
    // "kept" still waits for its events, and goes on with them.
    core.on_checkpoint_event(event("kept", 0, "a", "1"));
    assert!(matches!(
        waiting_kept.await.unwrap(),
        Ok(Slot::Committed(v)) if v.as_ref() == b"1"
    ));
}

#[tokio::test]
async fn try_slot_decides_at_once_for_the_owner_and_on_replay_only() {
    let (core, _rx) = connected();
    let replay = core.on_execute(execute("r", true, &[("a", "1")])).unwrap();
    let a = core.request(&replay, "a").unwrap();
    assert!(matches!(
        core.try_slot(&replay, &a),
        Some(Ok(Slot::Committed(v))) if v.as_ref() == b"1"
    ));
    let b = core.request(&replay, "b").unwrap();
    assert!(matches!(
        core.try_slot(&replay, &b),
        Some(Ok(Slot::Compute(t))) if t.seq() == 1
    ));
    let replica = core.on_execute(execute("w", false, &[])).unwrap();
    let a = core.request(&replica, "a").unwrap();
    assert!(
        core.try_slot(&replica, &a).is_none(),
        "a replica ahead of the events must wait"
    );
    core.on_checkpoint_event(event("w", 0, "a", "2"));
    assert!(matches!(
        core.try_slot(&replica, &a),
        Some(Ok(Slot::Committed(v))) if v.as_ref() == b"2"
    ));
    core.on_checkpoint_event(event("w", 1, "b", "3"));
    assert!(matches!(
        core.request(&replica, "x"),
        Err(ClientError::NonDeterminism { seq: 1, .. })
    ));
}

#[tokio::test]
async fn a_held_run_is_declared_with_what_it_knows_and_takes_the_rest_of_its_history() {
    let (core, _rx) = connected();
    let run = core
        .on_execute(execute("held", false, &[("a", "1"), ("b", "2")]))
        .unwrap();
    core.on_execute(execute("other-type", false, &[]))
        .map(|_| ())
        .unwrap();
    // Reconnect: the registration names the run and the 2 checkpoints it
    // knows (only runs of the registered type).
    core.on_disconnect();
    let (tx2, _rx2) = mpsc::channel(16);
    core.on_connect(tx2);
    let held = core.held_runs("wf", 1);
    assert_eq!(held.len(), 2, "both runs are of type wf: {held:?}");
    let declared = held.iter().find(|h| h.workflow_id == "held").unwrap();
    assert_eq!(declared.checkpoints, 2);
    assert!(core.held_runs("wf", 2).is_empty());
    // The sidecar sends only seq 2 on: it is appended after what the run has.
    let mut rest = execute("held", false, &[("c", "3")]);
    rest.history[0].seq = 2;
    rest.history_start = 2;
    assert!(core.on_execute(rest).is_none());
    let mut replayed = Vec::new();
    for name in ["a", "b", "c"] {
        replayed.push(committed(
            spawn_slot(&core, &run, name).await.unwrap().unwrap(),
        ));
    }
    assert_eq!(replayed, [&b"1"[..], b"2", b"3"]);
}

#[tokio::test]
async fn a_partial_history_for_a_run_no_longer_held_starts_nothing() {
    let (core, _rx) = connected();
    let mut rest = execute("finished-meanwhile", true, &[("c", "3")]);
    rest.history_start = 2;
    assert!(core.on_execute(rest).is_none());
    assert_eq!(core.running(), 0);
}
