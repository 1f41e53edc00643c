//! Event waits in the core: proposed once by the owner, resolved by the
//! cluster's entries, replayed, checked for determinism.

use std::time::Duration;

use bytes::Bytes;
use raftoral_proto::sidecar::v1::{
    CheckpointEvent, CheckpointRecord, HistoryEntryKind, OwnershipChange, WorkflowStreamRequest,
};
use tokio::sync::mpsc;

use super::ClientError;
use super::tests::{connected, execute, next_proposal};

fn entry(seq: u64, index: u64, kind: HistoryEntryKind, value: &str) -> CheckpointEvent {
    CheckpointEvent {
        workflow_id: "w".into(),
        seq,
        checkpoint_name: "approval".into(),
        value: Bytes::copy_from_slice(value.as_bytes()),
        kind: kind as i32,
        attempt: 1,
        history_index: index,
        ..CheckpointEvent::default()
    }
}

fn nothing_sent(rx: &mut mpsc::Receiver<WorkflowStreamRequest>) {
    if let Ok(m) = rx.try_recv() {
        panic!("nothing should be sent, got {m:?}");
    }
}

#[tokio::test]
async fn the_owner_proposes_a_wait_once_and_the_cluster_resolves_it() {
    let (core, mut rx) = connected();
    let run = core.on_execute(execute("w", true, &[])).unwrap();
    let req = core
        .request_event(&run, "approval", Some(Duration::from_secs(60)))
        .unwrap();
    let waiting = {
        let (core, run, req) = (core.clone(), run.clone(), req.clone());
        tokio::spawn(async move { core.event(&run, &req).await })
    };
    let p = next_proposal(&mut rx).await;
    assert_eq!(
        (
            p.seq,
            p.kind(),
            p.checkpoint_name.as_str(),
            p.timer_duration_ms
        ),
        (0, HistoryEntryKind::EventWaiting, "approval", 60_000)
    );
    core.on_checkpoint_event(entry(0, 0, HistoryEntryKind::EventWaiting, ""));
    core.on_checkpoint_event(entry(0, 1, HistoryEntryKind::EventReceived, "true"));
    let got = waiting.await.unwrap().unwrap();
    assert_eq!(got.as_deref(), Some(&b"true"[..]));
    nothing_sent(&mut rx);

    // A timeout that came first: no payload.
    let second = core.request_event(&run, "approval", None).unwrap();
    let waiting = {
        let (core, run) = (core.clone(), run.clone());
        tokio::spawn(async move { core.event(&run, &second).await })
    };
    let p = next_proposal(&mut rx).await;
    assert_eq!((p.seq, p.timer_duration_ms), (1, 0), "no timeout");
    core.on_checkpoint_event(entry(1, 2, HistoryEntryKind::EventWaiting, ""));
    core.on_checkpoint_event(entry(1, 3, HistoryEntryKind::EventTimedOut, ""));
    assert_eq!(waiting.await.unwrap().unwrap(), None);
}

#[tokio::test]
async fn a_replay_returns_the_committed_event_and_a_changed_code_is_non_determinism() {
    let (core, mut rx) = connected();
    let mut req = execute("w", true, &[]);
    for (kind, value) in [
        (HistoryEntryKind::EventWaiting, ""),
        (HistoryEntryKind::EventReceived, "\"yes\""),
    ] {
        req.history.push(CheckpointRecord {
            seq: 0,
            checkpoint_name: "approval".into(),
            value: Bytes::copy_from_slice(value.as_bytes()),
            kind: kind as i32,
            attempt: 1,
            ..CheckpointRecord::default()
        });
    }
    let run = core.on_execute(req.clone()).unwrap();
    let wait = core.request_event(&run, "approval", None).unwrap();
    assert_eq!(
        core.event(&run, &wait).await.unwrap().as_deref(),
        Some(&b"\"yes\""[..])
    );
    nothing_sent(&mut rx);

    // The same history under code that runs a step there, or waits for
    // another event.
    let (core, _rx) = connected();
    let run = core.on_execute(req.clone()).unwrap();
    let err = core.request(&run, "approval").unwrap_err();
    assert!(
        matches!(&err, ClientError::NonDeterminism { expected, .. } if expected == "event:approval"),
        "{err}"
    );
    let (core, _rx) = connected();
    let run = core.on_execute(req).unwrap();
    let err = core.request_event(&run, "payment", None).unwrap_err();
    assert!(matches!(err, ClientError::NonDeterminism { .. }), "{err}");
}

#[tokio::test]
async fn a_replica_proposes_no_wait_and_a_too_long_timeout_takes_no_position() {
    let (core, mut rx) = connected();
    let run = core.on_execute(execute("w", false, &[])).unwrap();
    let err = core
        .request_event(&run, "approval", Some(Duration::from_secs(367 * 24 * 3600)))
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Usage(m) if m.contains("366 days")),
        "{err}"
    );
    assert_eq!(core.next_position(&run), 0);
    let req = core.request_event(&run, "approval", None).unwrap();
    let waiting = {
        let (core, run) = (core.clone(), run.clone());
        tokio::spawn(async move { core.event(&run, &req).await })
    };
    tokio::task::yield_now().await;
    nothing_sent(&mut rx);
    core.on_checkpoint_event(entry(0, 0, HistoryEntryKind::EventWaiting, ""));
    core.on_checkpoint_event(entry(0, 1, HistoryEntryKind::EventReceived, "1"));
    assert_eq!(waiting.await.unwrap().unwrap().as_deref(), Some(&b"1"[..]));
}

#[tokio::test]
async fn an_awakeable_waits_for_its_reserved_event_and_raises_its_rejection() {
    let (core, mut rx) = connected();
    let run = core.on_execute(execute("w", true, &[])).unwrap();
    let err = core
        .request_event(&run, "raftoral.awakeable.0", None)
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Usage(m) if m.contains("reserved")),
        "{err}"
    );
    let req = core.request_awakeable(&run).unwrap();
    assert_eq!((req.id(), req.seq()), ("awk/0/w", 0));
    let waiting = {
        let (core, run, req) = (core.clone(), run.clone(), req.clone());
        tokio::spawn(async move { core.awakeable(&run, &req).await })
    };
    let p = next_proposal(&mut rx).await;
    assert_eq!(
        (
            p.seq,
            p.kind(),
            p.checkpoint_name.as_str(),
            p.timer_duration_ms
        ),
        (0, HistoryEntryKind::EventWaiting, "raftoral.awakeable.0", 0)
    );
    let name = |mut e: CheckpointEvent| {
        e.checkpoint_name = "raftoral.awakeable.0".into();
        e
    };
    core.on_checkpoint_event(name(entry(0, 0, HistoryEntryKind::EventWaiting, "")));
    let mut rejected = name(entry(0, 1, HistoryEntryKind::EventReceived, ""));
    rejected.failure = Some(raftoral_proto::sidecar::v1::Failure {
        r#type: "Declined".into(),
        message: "card declined".into(),
        ..Default::default()
    });
    core.on_checkpoint_event(rejected);
    let err = waiting.await.unwrap().unwrap_err();
    assert!(
        matches!(&err, ClientError::StepFailed(f) if f.failure.r#type == "Declined" && f.step == "awk/0/w"),
        "{err}"
    );
}

fn named(seq: u64, index: u64, name: &str, kind: HistoryEntryKind, value: &str) -> CheckpointEvent {
    CheckpointEvent {
        checkpoint_name: name.into(),
        ..entry(seq, index, kind, value)
    }
}

/// Waits for "a" (seq 0) and "b" (seq 1) started side by side by `run`,
/// each awaited by a task.
fn two_waits(core: &std::sync::Arc<super::WorkerCore>, run: &super::RunHandle) {
    for name in ["a", "b"] {
        let req = core.request_event(run, name, None).unwrap();
        let (core, run) = (core.clone(), run.clone());
        tokio::spawn(async move { core.event(&run, &req).await });
    }
}

#[tokio::test]
async fn a_losing_wait_is_cancelled_and_an_event_it_took_is_given_back() {
    let (core, mut rx) = connected();
    let run = core.on_execute(execute("w", true, &[])).unwrap();
    two_waits(&core, &run);
    for _ in 0..2 {
        assert_eq!(
            next_proposal(&mut rx).await.kind(),
            HistoryEntryKind::EventWaiting
        );
    }
    core.on_checkpoint_event(named(0, 0, "a", HistoryEntryKind::EventWaiting, ""));
    core.on_checkpoint_event(named(1, 1, "b", HistoryEntryKind::EventWaiting, ""));
    let first = {
        let (core, run) = (core.clone(), run.clone());
        tokio::spawn(async move { core.first(&run, &[0, 1]).await })
    };
    core.on_checkpoint_event(named(1, 2, "b", HistoryEntryKind::EventReceived, "1"));
    let p = next_proposal(&mut rx).await;
    assert_eq!(
        (p.seq, p.kind(), p.checkpoint_name.as_str()),
        (0, HistoryEntryKind::EventWaitCancelled, "a")
    );
    tokio::task::yield_now().await;
    assert!(
        !first.is_finished(),
        "first waits for the loser's resolution"
    );
    // Ownership lost and back: the cancel is sent again.
    for is_owner in [false, true] {
        core.on_ownership_change(OwnershipChange {
            workflow_id: "w".into(),
            is_owner,
        });
    }
    let p = next_proposal(&mut rx).await;
    assert_eq!((p.seq, p.kind()), (0, HistoryEntryKind::EventWaitCancelled));
    // An event reached the loser before the cancel: first returns, and the
    // cancel (committed after it) gives the event back.
    core.on_checkpoint_event(named(0, 3, "a", HistoryEntryKind::EventReceived, "2"));
    assert_eq!(first.await.unwrap().unwrap(), 1);
    core.on_checkpoint_event(named(0, 4, "a", HistoryEntryKind::EventWaitCancelled, "2"));
    // The next wait of "a" (given the event back by the cluster) proceeds
    // as any wait; nothing else is sent.
    let next = core.request_event(&run, "a", None).unwrap();
    let waiting = {
        let (core, run) = (core.clone(), run.clone());
        tokio::spawn(async move { core.event(&run, &next).await })
    };
    let p = next_proposal(&mut rx).await;
    assert_eq!((p.seq, p.kind()), (2, HistoryEntryKind::EventWaiting));
    core.on_checkpoint_event(named(2, 5, "a", HistoryEntryKind::EventWaiting, ""));
    core.on_checkpoint_event(named(2, 6, "a", HistoryEntryKind::EventReceived, "2"));
    assert_eq!(waiting.await.unwrap().unwrap().as_deref(), Some(&b"2"[..]));
    nothing_sent(&mut rx);
}

#[tokio::test]
async fn a_new_owner_gives_back_the_event_a_losing_wait_took_once() {
    let record = |seq: u64, name: &str, kind: HistoryEntryKind, value: &str| CheckpointRecord {
        seq,
        checkpoint_name: name.into(),
        value: Bytes::copy_from_slice(value.as_bytes()),
        kind: kind as i32,
        attempt: 1,
        ..CheckpointRecord::default()
    };
    let history = vec![
        record(0, "a", HistoryEntryKind::EventWaiting, ""),
        record(1, "b", HistoryEntryKind::EventWaiting, ""),
        record(1, "b", HistoryEntryKind::EventReceived, "1"),
        record(0, "a", HistoryEntryKind::EventReceived, "2"),
    ];
    // The old owner died before its cancel: the new one sends it.
    let (core, mut rx) = connected();
    let mut req = execute("w", true, &[]);
    req.history = history.clone();
    let run = core.on_execute(req).unwrap();
    two_waits(&core, &run);
    assert_eq!(core.first(&run, &[0, 1]).await.unwrap(), 1);
    let p = next_proposal(&mut rx).await;
    assert_eq!(
        (p.seq, p.kind(), p.checkpoint_name.as_str()),
        (0, HistoryEntryKind::EventWaitCancelled, "a")
    );
    // With the give-back in the history, a replay sends nothing.
    let (core, mut rx) = connected();
    let mut req = execute("w", true, &[]);
    req.history = history;
    req.history
        .push(record(0, "a", HistoryEntryKind::EventWaitCancelled, "2"));
    let run = core.on_execute(req).unwrap();
    two_waits(&core, &run);
    assert_eq!(core.first(&run, &[0, 1]).await.unwrap(), 1);
    tokio::task::yield_now().await;
    nothing_sent(&mut rx);
}
