//! Child workflows in the core: the owner proposes the start once with the
//! child, the cluster's entries give the result or the failure, a replay
//! proposes nothing, and code that changed is non-determinism.

use bytes::Bytes;
use raftoral_proto::sidecar::v1::{
    CheckpointEvent, CheckpointRecord, Failure, HistoryEntryKind, ParentClosePolicy,
};

use super::ClientError;
use super::tests::{connected, execute, next_proposal};

fn entry(seq: u64, index: u64, kind: HistoryEntryKind, value: &str) -> CheckpointEvent {
    CheckpointEvent {
        workflow_id: "w".into(),
        seq,
        checkpoint_name: "ship".into(),
        value: Bytes::copy_from_slice(value.as_bytes()),
        kind: kind as i32,
        attempt: 1,
        history_index: index,
        ..CheckpointEvent::default()
    }
}

#[tokio::test]
async fn the_owner_starts_a_child_once_and_its_end_resolves_the_position() {
    let (core, mut rx) = connected();
    let run = core.on_execute(execute("w", true, &[])).unwrap();
    let req = core
        .request_child(
            &run,
            "ship",
            0,
            Bytes::from_static(b"\"p1\""),
            None,
            ParentClosePolicy::Abandon,
        )
        .unwrap();
    assert_eq!(req.id(), "w/0", "derived from the parent and the position");
    let result = {
        let (core, run, req) = (core.clone(), run.clone(), req.clone());
        tokio::spawn(async move { core.child(&run, &req).await })
    };
    let p = next_proposal(&mut rx).await;
    let child = p.child.clone().expect("the child to start");
    assert_eq!(
        (
            p.seq,
            p.kind(),
            child.workflow_name.as_str(),
            child.workflow_id.as_str()
        ),
        (0, HistoryEntryKind::ChildStarted, "ship", "w/0")
    );
    assert_eq!(
        (child.version, child.parent_close()),
        (1, ParentClosePolicy::Abandon)
    );
    let started = {
        let (core, run, req) = (core.clone(), run.clone(), req.clone());
        tokio::spawn(async move { core.child_started(&run, &req).await })
    };
    core.on_checkpoint_event(entry(0, 0, HistoryEntryKind::ChildStarted, "w/0"));
    started.await.unwrap().unwrap();
    assert!(!result.is_finished(), "the child still runs");
    core.on_checkpoint_event(entry(0, 1, HistoryEntryKind::ChildCompleted, "\"t-1\""));
    assert_eq!(&result.await.unwrap().unwrap()[..], b"\"t-1\"");
    assert!(rx.try_recv().is_err(), "the start is sent once");

    // A child that failed raises its failure, typed.
    let req = core
        .request_child(
            &run,
            "ship",
            1,
            Bytes::new(),
            Some("c2".into()),
            ParentClosePolicy::Cancel,
        )
        .unwrap();
    let result = {
        let (core, run) = (core.clone(), run.clone());
        tokio::spawn(async move { core.child(&run, &req).await })
    };
    next_proposal(&mut rx).await;
    core.on_checkpoint_event(entry(1, 2, HistoryEntryKind::ChildStarted, "c2"));
    core.on_checkpoint_event(CheckpointEvent {
        failure: Some(Failure {
            r#type: "raftoral.ChildCancelled".into(),
            message: "child workflow 'c2' was cancelled".into(),
            ..Failure::default()
        }),
        ..entry(1, 3, HistoryEntryKind::ChildFailed, "")
    });
    let err = result.await.unwrap().unwrap_err();
    assert!(
        matches!(&err, ClientError::StepFailed(f) if f.failure.r#type == "raftoral.ChildCancelled"),
        "{err}"
    );
}

#[tokio::test]
async fn a_replayed_child_is_not_started_again_and_changed_code_is_non_determinism() {
    let mut req = execute("w", true, &[]);
    for (kind, value) in [
        (HistoryEntryKind::ChildStarted, "w/0"),
        (HistoryEntryKind::ChildCompleted, "7"),
    ] {
        req.history.push(CheckpointRecord {
            seq: 0,
            checkpoint_name: "ship".into(),
            value: Bytes::copy_from_slice(value.as_bytes()),
            kind: kind as i32,
            attempt: 1,
            ..CheckpointRecord::default()
        });
    }
    let (core, mut rx) = connected();
    let run = core.on_execute(req.clone()).unwrap();
    let child = core
        .request_child(
            &run,
            "ship",
            1,
            Bytes::new(),
            None,
            ParentClosePolicy::Cancel,
        )
        .unwrap();
    assert_eq!(&core.child(&run, &child).await.unwrap()[..], b"7");
    assert!(rx.try_recv().is_err(), "a replay starts nothing");
    // The same history under code that runs a step there, or starts a
    // child of another type.
    let (core, _rx) = connected();
    let run = core.on_execute(req.clone()).unwrap();
    let err = core.request(&run, "ship").unwrap_err();
    assert!(
        matches!(&err, ClientError::NonDeterminism { expected, .. } if expected == "child:ship"),
        "{err}"
    );
    let (core, _rx) = connected();
    let run = core.on_execute(req).unwrap();
    let err = core
        .request_child(
            &run,
            "bill",
            1,
            Bytes::new(),
            None,
            ParentClosePolicy::Cancel,
        )
        .unwrap_err();
    assert!(matches!(err, ClientError::NonDeterminism { .. }), "{err}");
    // A workflow is not its own child.
    let err = core
        .request_child(
            &run,
            "ship",
            1,
            Bytes::new(),
            Some("w".into()),
            ParentClosePolicy::Cancel,
        )
        .unwrap_err();
    assert!(matches!(err, ClientError::Usage(m) if m.contains("own child")));
}

#[tokio::test]
async fn a_childs_start_is_handed_out_in_commit_order_like_a_resolution() {
    let record = |seq: u64, name: &str, kind: HistoryEntryKind, value: &str| CheckpointRecord {
        seq,
        checkpoint_name: name.into(),
        value: Bytes::copy_from_slice(value.as_bytes()),
        kind: kind as i32,
        attempt: 1,
        ..CheckpointRecord::default()
    };
    // Step 1's value committed before child 0's start: the code that waits
    // for the start goes on only after step 1 is handed out.
    let (core, _rx) = connected();
    let mut req = execute("w", false, &[]);
    req.history = vec![
        record(1, "s1", HistoryEntryKind::Unspecified, "1"),
        record(0, "ship", HistoryEntryKind::ChildStarted, "w/0"),
    ];
    let run = core.on_execute(req).unwrap();
    let child = core
        .request_child(
            &run,
            "ship",
            1,
            Bytes::new(),
            None,
            ParentClosePolicy::Cancel,
        )
        .unwrap();
    let step = core.request(&run, "s1").unwrap();
    {
        let (core, run, child) = (core.clone(), run.clone(), child.clone());
        tokio::spawn(async move { core.child(&run, &child).await });
    }
    let started = {
        let (core, run) = (core.clone(), run.clone());
        tokio::spawn(async move { core.child_started(&run, &child).await })
    };
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(!started.is_finished(), "the start waits for step 1's turn");
    assert!(matches!(
        core.try_slot(&run, &step),
        Some(Ok(super::Slot::Committed(_)))
    ));
    started.await.unwrap().unwrap();
}
