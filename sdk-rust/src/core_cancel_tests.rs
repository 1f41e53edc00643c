//! Cancel requests: where the owner delivers them, how the code sees them,
//! live and in replay.

use std::time::Duration;

use bytes::Bytes;
use raftoral_proto::sidecar::v1::{
    CheckpointEvent, CheckpointProposal, CheckpointRecord, Failure, HistoryEntryKind,
    WorkflowCancellation, WorkflowStreamRequest, workflow_stream_request::Message as AppMsg,
};
use tokio::sync::mpsc;

use super::tests::{connected, event, execute, next_proposal};
use super::{ClientError, Slot};
use crate::history::CANCELLED_TYPE;

fn request() -> WorkflowCancellation {
    WorkflowCancellation {
        workflow_id: "w".into(),
        reason: "customer asked".into(),
        requested: true,
        cleanup_until_ms: 99_000,
    }
}

/// The committed entry of `p` (a proposal the core made) at `index`.
fn committed(p: &CheckpointProposal, index: u64) -> CheckpointEvent {
    CheckpointEvent {
        workflow_id: p.workflow_id.clone(),
        seq: p.seq,
        checkpoint_name: p.checkpoint_name.clone(),
        value: p.value.clone(),
        kind: p.kind,
        failure: p.failure.clone(),
        attempt: p.attempt,
        history_index: index,
        ..CheckpointEvent::default()
    }
}

fn is_delivery(p: &CheckpointProposal) -> bool {
    p.failure
        .as_ref()
        .is_some_and(|f| f.r#type == CANCELLED_TYPE && f.message == "customer asked")
}

fn nothing_sent(rx: &mut mpsc::Receiver<WorkflowStreamRequest>) {
    if let Ok(m) = rx.try_recv() {
        panic!("nothing should be sent, got {m:?}");
    }
}

#[tokio::test]
async fn a_request_is_delivered_where_the_code_waits_and_cleanup_runs_after_it() {
    let (core, mut rx) = connected();
    let run = core.on_execute(execute("w", true, &[])).unwrap();
    // A step running (its attempt holds the token) and a sleep.
    let charge = core.request(&run, "charge").unwrap();
    let Some(Ok(Slot::Compute(_token))) = core.try_slot(&run, &charge) else {
        panic!("the owner computes")
    };
    let nap = core
        .request_timer(&run, "nap", Duration::from_secs(3600))
        .unwrap();
    let sleeping = {
        let (core, run, nap) = (core.clone(), run.clone(), nap.clone());
        tokio::spawn(async move { core.timer(&run, &nap).await })
    };
    let start = next_proposal(&mut rx).await;
    assert_eq!(start.kind(), HistoryEntryKind::TimerStarted);
    core.on_checkpoint_event(committed(&start, 0));
    assert_eq!(core.interrupts(&run), 0);

    core.on_cancellation(request());
    assert_eq!(
        core.cancelled(&run).await.as_deref(),
        Some("customer asked")
    );
    assert_eq!(core.interrupts(&run), 1, "the running attempt must stop");
    let (a, b) = (next_proposal(&mut rx).await, next_proposal(&mut rx).await);
    assert!(is_delivery(&a) && is_delivery(&b));
    assert_eq!(
        (a.seq, a.kind(), a.attempt, b.seq, b.kind()),
        (
            0,
            HistoryEntryKind::StepFailed,
            1,
            1,
            HistoryEntryKind::TimerCancelled
        )
    );
    // The stopped attempt asks again: nothing to compute there any more.
    assert!(core.try_slot(&run, &charge).is_none());
    // A request sent again (after an execute request) changes nothing.
    core.on_cancellation(request());
    nothing_sent(&mut rx);

    core.on_checkpoint_event(committed(&a, 1));
    core.on_checkpoint_event(committed(&b, 2));
    let err = core.slot(&run, &charge).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Cancelled { reason, .. } if reason == "customer asked"),
        "{err}"
    );
    let err = sleeping.await.unwrap().unwrap_err();
    assert!(matches!(err, ClientError::Cancelled { .. }), "{err}");

    // Compensation runs as usual, and no attempt is stopped any more.
    let refund = core.request(&run, "refund").unwrap();
    let Some(Ok(Slot::Compute(token))) = core.try_slot(&run, &refund) else {
        panic!("the cleanup step runs")
    };
    nothing_sent(&mut rx);
    let committing = {
        let (core, run) = (core.clone(), run.clone());
        tokio::spawn(async move { core.commit(&run, token, Bytes::from_static(b"1")).await })
    };
    let p = next_proposal(&mut rx).await;
    assert_eq!((p.seq, p.kind()), (2, HistoryEntryKind::Unspecified));
    core.on_checkpoint_event(committed(&p, 3));
    assert_eq!(committing.await.unwrap().unwrap(), Bytes::from_static(b"1"));
    assert_eq!(core.interrupts(&run), 1);

    // The code re-raises: the workflow is reported cancelled.
    core.finish(
        &run,
        Err(ClientError::Cancelled {
            workflow_id: "w".into(),
            reason: "customer asked".into(),
        }),
    );
    let result = match rx.recv().await.unwrap().message {
        Some(AppMsg::WorkflowResult(r)) => r,
        other => panic!("expected the result, got {other:?}"),
    };
    assert!(!result.success);
    assert_eq!(result.failure.unwrap().r#type, CANCELLED_TYPE);
}

#[tokio::test]
async fn between_steps_the_request_goes_to_the_next_position_taken() {
    let (core, mut rx) = connected();
    let run = core.on_execute(execute("w", true, &[])).unwrap();
    core.on_cancellation(request());
    nothing_sent(&mut rx);
    assert_eq!(core.interrupts(&run), 0, "nothing runs: nothing to stop");
    let next = core.request(&run, "ship").unwrap();
    assert!(core.try_slot(&run, &next).is_none(), "not computed");
    let p = next_proposal(&mut rx).await;
    assert!(is_delivery(&p) && p.seq == 0 && p.checkpoint_name == "ship");
    core.on_checkpoint_event(committed(&p, 0));
    assert!(matches!(
        core.slot(&run, &next).await,
        Err(ClientError::Cancelled { .. })
    ));
}

#[tokio::test]
async fn a_delivery_lost_to_a_value_is_made_again_at_the_next_position() {
    let (core, mut rx) = connected();
    let run = core.on_execute(execute("w", true, &[])).unwrap();
    let a = core.request(&run, "a").unwrap();
    let Some(Ok(Slot::Compute(_))) = core.try_slot(&run, &a) else {
        panic!("computes")
    };
    core.on_cancellation(request());
    let lost = next_proposal(&mut rx).await;
    assert!(is_delivery(&lost));
    // The step's value committed first (its proposal was on its way).
    core.on_checkpoint_event(event("w", 0, "a", "7"));
    assert!(matches!(core.slot(&run, &a).await, Ok(Slot::Committed(v)) if v == "7"));
    let b = core.request(&run, "b").unwrap();
    let again = next_proposal(&mut rx).await;
    assert!(is_delivery(&again) && again.seq == 1);
    core.on_checkpoint_event(committed(&again, 1));
    assert!(matches!(
        core.slot(&run, &b).await,
        Err(ClientError::Cancelled { .. })
    ));
}

#[tokio::test]
async fn a_replay_raises_at_the_same_position_and_proposes_nothing() {
    let (core, mut rx) = connected();
    let mut req = execute("w", true, &[("a", "1")]);
    req.history.push(CheckpointRecord {
        seq: 1,
        checkpoint_name: "b".into(),
        kind: HistoryEntryKind::StepFailed as i32,
        failure: Some(Failure {
            r#type: CANCELLED_TYPE.into(),
            message: "customer asked".into(),
            ..Failure::default()
        }),
        attempt: 1,
        ..CheckpointRecord::default()
    });
    let run = core.on_execute(req).unwrap();
    core.on_cancellation(request());
    assert!(matches!(
        core.checkpoint_slot(&run, "a").await,
        Ok(Slot::Committed(_))
    ));
    assert!(matches!(
        core.checkpoint_slot(&run, "b").await,
        Err(ClientError::Cancelled { .. })
    ));
    // Delivered already: the cleanup step is computed, nothing cancelled.
    assert!(matches!(
        core.checkpoint_slot(&run, "refund").await,
        Ok(Slot::Compute(_))
    ));
    nothing_sent(&mut rx);
}

#[tokio::test]
async fn a_replica_waits_for_the_owners_delivery_and_a_final_cancel_ends_everything() {
    let (core, mut rx) = connected();
    let run = core.on_execute(execute("w", false, &[])).unwrap();
    let a = core.request(&run, "a").unwrap();
    core.on_cancellation(request());
    nothing_sent(&mut rx);
    assert!(core.try_slot(&run, &a).is_none());
    // The window ran out: a cancel for good.
    core.on_cancellation(WorkflowCancellation {
        workflow_id: "w".into(),
        reason: "window over".into(),
        ..WorkflowCancellation::default()
    });
    assert_eq!(core.interrupts(&run), 1);
    assert!(matches!(
        core.slot(&run, &a).await,
        Err(ClientError::Cancelled { reason, .. }) if reason == "window over"
    ));
    // Nothing is reported for a cancel for good.
    core.finish(
        &run,
        Err(ClientError::Cancelled {
            workflow_id: "w".into(),
            reason: "window over".into(),
        }),
    );
    nothing_sent(&mut rx);
}
