//! Failed steps and retries in the core: replayed failures, the committed
//! backoff after a failover, and proposals re-based past another owner's
//! attempts. Time is paused: waits are measured on tokio's virtual clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use raftoral_proto::sidecar::v1::{
    CheckpointProposal, CheckpointRecord, Failure, HistoryEntryKind,
};

use super::tests::{connected, event, execute, next_proposal};
use super::*;
use crate::retry::RetryPolicy;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn boom(non_retryable: bool) -> Failure {
    Failure {
        r#type: "CardDeclined".into(),
        message: "card declined".into(),
        details_json: r#"{"code":"insufficient_funds"}"#.into(),
        non_retryable,
        stack: String::new(),
    }
}

/// A committed entry of kind `kind` for `seq` named `name`.
fn entry(seq: u64, name: &str, kind: HistoryEntryKind, attempt: u32) -> CheckpointRecord {
    CheckpointRecord {
        seq,
        checkpoint_name: name.into(),
        kind: kind as i32,
        failure: (kind != HistoryEntryKind::Unspecified).then(|| boom(false)),
        attempt,
        value: if kind == HistoryEntryKind::Unspecified {
            Bytes::from_static(b"1")
        } else {
            Bytes::new()
        },
        ..CheckpointRecord::default()
    }
}

/// The sidecar's event for `p`, committed now, at history index `index`.
fn committed(p: &CheckpointProposal, index: u64) -> CheckpointEvent {
    let at = now_ms();
    CheckpointEvent {
        workflow_id: p.workflow_id.clone(),
        seq: p.seq,
        checkpoint_name: p.checkpoint_name.clone(),
        value: p.value.clone(),
        kind: p.kind,
        failure: p.failure.clone(),
        attempt: p.attempt.max(1),
        next_attempt_at_ms: if p.retry_delay_ms > 0 {
            at + p.retry_delay_ms
        } else {
            0
        },
        committed_at_ms: at,
        history_index: index,
        fire_at_ms: 0,
    }
}

fn compute(slot: Result<Slot, ClientError>) -> ComputeToken {
    match slot {
        Ok(Slot::Compute(token)) => token,
        other => panic!("expected a compute token, got {other:?}"),
    }
}

#[tokio::test]
async fn a_caught_step_failure_replays_at_its_position() {
    let (core, _rx) = connected();
    let mut req = execute("w", true, &[]);
    req.history = vec![
        entry(0, "charge", HistoryEntryKind::StepFailed, 1),
        entry(1, "refund", HistoryEntryKind::Unspecified, 1),
    ];
    let run = core.on_execute(req).unwrap();
    let Err(ClientError::StepFailed(f)) = core.checkpoint_slot(&run, "charge").await else {
        panic!("the failure is raised again");
    };
    assert_eq!((f.seq, f.step.as_str(), f.attempts), (0, "charge", 1));
    assert_eq!(f.failure, boom(false));
    // The step after the caught failure is the refund, at seq 1.
    let Ok(Slot::Committed(v)) = core.checkpoint_slot(&run, "refund").await else {
        panic!("the refund is replayed");
    };
    assert_eq!(&v[..], b"1");
    let next = compute(core.checkpoint_slot(&run, "next").await);
    assert_eq!(
        (next.seq(), next.attempt()),
        (2, 1),
        "past the history: computed"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_attempt_is_committed_and_the_next_runs_after_its_delay() {
    let (core, mut rx) = connected();
    let run = core.on_execute(execute("w", true, &[])).unwrap();
    let token = compute(core.checkpoint_slot(&run, "pay").await);
    assert_eq!(token.attempt(), 1);
    let policy = RetryPolicy {
        jitter: 0.0,
        ..RetryPolicy::default()
    };
    let started = tokio::time::Instant::now();
    let failing = {
        let (core, run) = (core.clone(), run.clone());
        tokio::spawn(async move { core.fail(&run, token, boom(false), &policy, 0.0).await })
    };
    let p = next_proposal(&mut rx).await;
    assert_eq!(p.kind(), HistoryEntryKind::StepAttemptFailed);
    assert_eq!((p.attempt, p.retry_delay_ms), (1, 1000));
    core.on_checkpoint_event(committed(&p, 0));
    let next = compute(failing.await.unwrap());
    assert_eq!((next.seq(), next.attempt()), (0, 2));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited <= Duration::from_millis(1100),
        "the committed delay is waited once: {waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_new_owner_waits_what_is_left_of_the_committed_delay_never_more() {
    let (core, _rx) = connected();
    let at = now_ms();
    let mut req = execute("w", true, &[]);
    // Attempt 1 failed 2 s ago with a 3 s delay: 1 s is left.
    let mut failed = entry(0, "pay", HistoryEntryKind::StepAttemptFailed, 1);
    failed.committed_at_ms = at - 2000;
    failed.next_attempt_at_ms = at + 1000;
    // Attempt 1 of "ship" failed on a leader clock an hour ahead, with a
    // 3 s delay: this clock would wait an hour; the clamp waits 3 s.
    let mut skewed = entry(1, "ship", HistoryEntryKind::StepAttemptFailed, 1);
    skewed.committed_at_ms = at + 3_600_000;
    skewed.next_attempt_at_ms = at + 3_603_000;
    req.history = vec![failed, skewed];
    // Waits count from when the history arrives.
    let arrived = tokio::time::Instant::now();
    let run = core.on_execute(req).unwrap();
    let started = arrived;
    let pay = core.request(&run, "pay").unwrap();
    assert!(core.try_slot(&run, &pay).is_none(), "not due yet");
    let token = compute(core.slot(&run, &pay).await);
    assert_eq!(token.attempt(), 2, "the count goes on");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited <= Duration::from_millis(1100),
        "{waited:?}"
    );
    // Resolve "pay" so the cursor moves to "ship".
    let p = CheckpointProposal {
        workflow_id: "w".into(),
        seq: 0,
        checkpoint_name: "pay".into(),
        value: Bytes::from_static(b"1"),
        attempt: 2,
        ..CheckpointProposal::default()
    };
    core.on_checkpoint_event(committed(&p, 2));
    core.commit(&run, token, Bytes::from_static(b"1"))
        .await
        .unwrap();
    let token = compute(core.checkpoint_slot(&run, "ship").await);
    let waited = arrived.elapsed();
    assert_eq!(token.attempt(), 2);
    assert!(
        waited >= Duration::from_millis(2900) && waited <= Duration::from_millis(3100),
        "{waited:?}"
    );
}

#[tokio::test]
async fn a_final_failure_is_committed_and_raised_from_the_commit() {
    let (core, mut rx) = connected();
    let run = core.on_execute(execute("w", true, &[])).unwrap();
    let token = compute(core.checkpoint_slot(&run, "charge").await);
    let failing = {
        let (core, run) = (core.clone(), run.clone());
        // Non-retryable: no attempt is retried, whatever the policy.
        tokio::spawn(async move {
            core.fail(&run, token, boom(true), &RetryPolicy::default(), 0.5)
                .await
        })
    };
    let p = next_proposal(&mut rx).await;
    assert_eq!(p.kind(), HistoryEntryKind::StepFailed);
    assert_eq!(p.retry_delay_ms, 0);
    core.on_checkpoint_event(committed(&p, 0));
    let Err(ClientError::StepFailed(f)) = failing.await.unwrap() else {
        panic!("the committed failure is raised");
    };
    assert_eq!(f.failure.r#type, "CardDeclined");
    assert!(
        f.to_string()
            .contains("step 'charge' (seq 0) of workflow 'w' failed after 1 attempt: CardDeclined: card declined"),
        "{f}"
    );
    // The next step follows at seq 1.
    let next = compute(core.checkpoint_slot(&run, "refund").await);
    assert_eq!(next.seq(), 1);
}

#[tokio::test]
async fn a_value_is_re_based_past_an_attempt_another_owner_failed() {
    let (core, mut rx) = connected();
    let run = core.on_execute(execute("w", true, &[])).unwrap();
    let token = compute(core.checkpoint_slot(&run, "pay").await);
    let committing = {
        let (core, run) = (core.clone(), run.clone());
        tokio::spawn(async move { core.commit(&run, token, Bytes::from_static(b"7")).await })
    };
    let first = next_proposal(&mut rx).await;
    assert_eq!(first.attempt, 1);
    // Meanwhile another owner ran attempt 1 too and it failed; this value
    // was refused as a stale attempt.
    let mut theirs = first.clone();
    theirs.kind = HistoryEntryKind::StepAttemptFailed as i32;
    theirs.failure = Some(boom(false));
    theirs.value = Bytes::new();
    theirs.retry_delay_ms = 10;
    core.on_checkpoint_event(committed(&theirs, 0));
    let again = next_proposal(&mut rx).await;
    assert_eq!((again.attempt, &again.value[..]), (2, &b"7"[..]));
    core.on_checkpoint_event(committed(&again, 1));
    assert_eq!(&committing.await.unwrap().unwrap()[..], b"7");
    let _ = event("w", 0, "pay", "7");
}

#[tokio::test]
async fn steps_side_by_side_are_all_in_flight_and_resolve_in_commit_order() {
    let (core, mut rx) = connected();
    let run = core.on_execute(execute("w", true, &[])).unwrap();
    // Positions are taken when the steps are called, in call order.
    let a = core.request(&run, "a").unwrap();
    let b = core.request(&run, "b").unwrap();
    assert_eq!((a.seq(), b.seq()), (0, 1));
    let (ta, tb) = (
        compute(core.slot(&run, &a).await),
        compute(core.slot(&run, &b).await),
    );
    let spawn = |token: ComputeToken, value: &'static [u8]| {
        let (core, run) = (core.clone(), run.clone());
        tokio::spawn(async move { core.commit(&run, token, Bytes::from_static(value)).await })
    };
    let (ca, cb) = (spawn(ta, b"10"), spawn(tb, b"11"));
    let mut sent = [next_proposal(&mut rx).await, next_proposal(&mut rx).await];
    sent.sort_by_key(|p| p.seq);
    assert_eq!([sent[0].seq, sent[1].seq], [0, 1], "both are in flight");
    // b commits first.
    core.on_checkpoint_event(committed(&sent[1], 0));
    assert_eq!(&cb.await.unwrap().unwrap()[..], b"11");
    assert!(!ca.is_finished());
    core.on_checkpoint_event(committed(&sent[0], 1));
    assert_eq!(&ca.await.unwrap().unwrap()[..], b"10");
}

#[tokio::test]
async fn a_replay_hands_resolutions_out_in_commit_order() {
    let (core, _rx) = connected();
    let mut req = execute("w", false, &[]);
    let mut b = entry(1, "b", HistoryEntryKind::Unspecified, 1);
    b.value = Bytes::from_static(b"11");
    let mut a = entry(0, "a", HistoryEntryKind::Unspecified, 1);
    a.value = Bytes::from_static(b"10");
    req.history = vec![b, a];
    let run = core.on_execute(req).unwrap();
    let (ra, rb) = (
        core.request(&run, "a").unwrap(),
        core.request(&run, "b").unwrap(),
    );
    assert!(
        core.try_slot(&run, &ra).is_none(),
        "a committed after b: it waits until b is handed out"
    );
    let Some(Ok(Slot::Committed(v))) = core.try_slot(&run, &rb) else {
        panic!("b is first");
    };
    assert_eq!(&v[..], b"11");
    let Some(Ok(Slot::Committed(v))) = core.try_slot(&run, &ra) else {
        panic!("then a");
    };
    assert_eq!(&v[..], b"10");
}

#[tokio::test]
async fn a_step_waiting_behind_a_resolution_the_code_never_asked_for_is_a_stall() {
    let (core, _rx) = connected();
    let mut req = execute("w", false, &[]);
    let mut b = entry(1, "b", HistoryEntryKind::Unspecified, 1);
    b.value = Bytes::from_static(b"11");
    req.history = vec![b, entry(0, "a", HistoryEntryKind::Unspecified, 1)];
    let run = core.on_execute(req).unwrap();
    // Code that changed: it waits on "a" alone, never taking position 1.
    let ra = core.request(&run, "a").unwrap();
    assert!(core.try_slot(&run, &ra).is_none());
    assert_eq!(core.stalled_behind(&run, &ra), Some((1, "b".to_owned())));
    // Code that took both positions is only waiting its turn.
    let rb = core.request(&run, "b").unwrap();
    assert_eq!(core.stalled_behind(&run, &ra), None);
    assert_eq!(core.stalled_behind(&run, &rb), None);
}

#[tokio::test]
async fn details_that_are_not_json_are_dropped_not_sent_to_be_refused() {
    let (core, mut rx) = connected();
    let run = core.on_execute(execute("w", true, &[])).unwrap();
    let token = compute(core.checkpoint_slot(&run, "pay").await);
    let bad = Failure {
        details_json: "{not json".into(),
        r#type: String::new(),
        ..boom(true)
    };
    let failing = {
        let (core, run) = (core.clone(), run.clone());
        tokio::spawn(async move {
            core.fail(&run, token, bad, &RetryPolicy::default(), 0.0)
                .await
        })
    };
    let p = next_proposal(&mut rx).await;
    let sent = p.failure.expect("a failure");
    assert_eq!(sent.details_json, "", "the sidecar would refuse it");
    assert_eq!(sent.r#type, "Error", "an empty type is named");
    failing.abort();
}
