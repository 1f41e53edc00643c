//! Status values in the core: proposed once by the owner, replayed without
//! a proposal, checked for determinism and size.

use bytes::Bytes;
use raftoral_proto::sidecar::v1::{
    CheckpointEvent, CheckpointRecord, HistoryEntryKind, WorkflowStreamRequest,
};
use tokio::sync::mpsc;

use super::tests::{connected, execute, next_proposal};
use super::{ClientError, MAX_STATUS_BYTES};

fn nothing_sent(rx: &mut mpsc::Receiver<WorkflowStreamRequest>) {
    if let Ok(m) = rx.try_recv() {
        panic!("nothing should be sent, got {m:?}");
    }
}

#[tokio::test]
async fn the_owner_proposes_a_status_and_returns_once_it_is_committed() {
    let (core, mut rx) = connected();
    let run = core.on_execute(execute("w", true, &[])).unwrap();
    let setting = {
        let (core, run) = (core.clone(), run.clone());
        tokio::spawn(async move {
            core.set_status(&run, "stage", Bytes::from_static(b"\"a\""))
                .await
        })
    };
    let p = next_proposal(&mut rx).await;
    assert_eq!(
        (p.seq, p.kind(), p.checkpoint_name.as_str(), &p.value[..]),
        (0, HistoryEntryKind::StatusSet, "stage", &b"\"a\""[..])
    );
    assert!(!setting.is_finished(), "returns only once committed");
    core.on_checkpoint_event(CheckpointEvent {
        workflow_id: "w".into(),
        seq: 0,
        checkpoint_name: "stage".into(),
        value: Bytes::from_static(b"\"a\""),
        kind: HistoryEntryKind::StatusSet as i32,
        attempt: 1,
        history_index: 0,
        ..CheckpointEvent::default()
    });
    setting.await.unwrap().unwrap();
    // Too big: refused before a position is taken.
    let big = Bytes::from(vec![b'x'; MAX_STATUS_BYTES + 1]);
    let err = core.set_status(&run, "stage", big).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Usage(m) if m.contains("limit")),
        "{err}"
    );
    assert_eq!(core.next_position(&run), 1);
}

#[tokio::test]
async fn a_replayed_status_is_not_set_again_and_a_changed_code_is_non_determinism() {
    let (core, mut rx) = connected();
    let mut req = execute("w", true, &[]);
    req.history.push(CheckpointRecord {
        seq: 0,
        checkpoint_name: "stage".into(),
        value: Bytes::from_static(b"\"a\""),
        kind: HistoryEntryKind::StatusSet as i32,
        attempt: 1,
        ..CheckpointRecord::default()
    });
    let run = core.on_execute(req.clone()).unwrap();
    core.set_status(&run, "stage", Bytes::from_static(b"\"other value\""))
        .await
        .unwrap();
    nothing_sent(&mut rx);

    let (core, _rx) = connected();
    let run = core.on_execute(req.clone()).unwrap();
    let err = core.request(&run, "stage").unwrap_err();
    assert!(
        matches!(&err, ClientError::NonDeterminism { expected, .. } if expected == "status:stage"),
        "{err}"
    );
    let (core, _rx) = connected();
    let run = core.on_execute(req).unwrap();
    let err = core
        .set_status(&run, "progress", Bytes::from_static(b"1"))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::NonDeterminism { .. }), "{err}");
}
