//! Status values (`STATUS_SET`) and signal-with-start (`StartWorkflow`
//! with a signal).

use super::step_tests::{cmd_at, running, step, value};
use super::*;
use raftoral_proto::cluster::v1::{FinishWorkflow, RecordStep, SendEvent};
use raftoral_proto::sidecar::v1::HistoryEntryKind;

fn set(seq: u64, key: &str, value_json: &str) -> RecordStep {
    RecordStep {
        kind: HistoryEntryKind::StatusSet as i32,
        checkpoint_name: key.into(),
        value: Bytes::copy_from_slice(value_json.as_bytes()),
        ..value(seq, 1)
    }
}

/// (key, value, history index) of the status values of "w".
fn statuses(sm: &StateMachine, keys: &[&str]) -> Vec<(String, String, u64)> {
    let keys: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
    sm.workflow("w")
        .unwrap()
        .status_values(&keys)
        .into_iter()
        .map(|v| {
            (
                v.key,
                String::from_utf8_lossy(&v.value).into_owned(),
                v.history_index,
            )
        })
        .collect()
}

#[test]
fn the_latest_status_of_each_key_is_read_from_the_history() {
    let mut sm = running();
    step(&mut sm, 2000, set(0, "stage", "\"a\"")).unwrap();
    step(&mut sm, 2001, value(1, 1)).unwrap();
    step(&mut sm, 2002, set(2, "count", "1")).unwrap();
    step(&mut sm, 2003, set(3, "stage", "\"b\"")).unwrap();
    assert_eq!(
        statuses(&sm, &[]),
        vec![
            ("count".into(), "1".into(), 2),
            ("stage".into(), "\"b\"".into(), 3),
        ]
    );
    assert_eq!(statuses(&sm, &["stage", "never"]).len(), 1);
    let wf = sm.workflow("w").unwrap();
    assert_eq!(wf.protocol_needed(), 6, "only a protocol 6 app reads it");
    assert_eq!(
        wf.to_info().checkpoint_count,
        4,
        "each status resolves its position"
    );
    // A position holds one status: setting it again is a duplicate.
    assert!(matches!(
        step(&mut sm, 2004, set(3, "stage", "\"c\"")),
        Err(Rejection::UnexpectedSeq { .. })
    ));
    // Kept after the end, and in snapshots.
    let finish = Kind::FinishWorkflow(FinishWorkflow {
        workflow_id: "w".into(),
        node_id: 1,
        success: true,
        ..FinishWorkflow::default()
    });
    sm.apply(&cmd_at(2005, finish)).0.unwrap();
    let restored = StateMachine::restore(&sm.snapshot(), 9).unwrap();
    assert_eq!(statuses(&restored, &["stage"]), statuses(&sm, &["stage"]));
}

#[test]
fn a_status_over_the_limit_is_refused_on_apply() {
    let mut sm = running();
    let big = format!("\"{}\"", "x".repeat(MAX_STATUS_BYTES));
    let refused = step(&mut sm, 2000, set(0, "stage", &big)).unwrap_err();
    assert!(
        matches!(&refused, Rejection::InvalidStep(m) if m.contains("limit of a status value")),
        "{refused:?}"
    );
    assert!(sm.workflow("w").unwrap().checkpoints.is_empty());
}

fn signal_start(id: &str, payload: &str, key: &str) -> Kind {
    Kind::StartWorkflow(StartWorkflow {
        workflow_id: id.into(),
        workflow_name: "wf".into(),
        version: 1,
        input: Bytes::from_static(b"first"),
        origin_node_id: 1,
        signal: Some(Box::new(SendEvent {
            // The start names the target, whatever this says.
            workflow_id: "ignored".into(),
            name: "go".into(),
            payload: Bytes::copy_from_slice(payload.as_bytes()),
            idempotency_key: key.into(),
            failure: None,
        })),
        ..StartWorkflow::default()
    })
}

#[test]
fn signal_with_start_starts_once_and_delivers_each_event() {
    let mut sm = running();
    let (first, _) = sm.apply(&cmd_at(2000, signal_start("s", "1", "")));
    assert_eq!(
        first,
        Ok(Applied::SignalledWithStart {
            started: true,
            duplicate: false
        })
    );
    let (second, _) = sm.apply(&cmd_at(2001, signal_start("s", "2", "k")));
    assert_eq!(
        second,
        Ok(Applied::SignalledWithStart {
            started: false,
            duplicate: false
        })
    );
    let (again, _) = sm.apply(&cmd_at(2002, signal_start("s", "3", "k")));
    assert_eq!(
        again,
        Ok(Applied::SignalledWithStart {
            started: false,
            duplicate: true
        })
    );
    let wf = sm.workflow("s").unwrap();
    assert_eq!(wf.input, Bytes::from_static(b"first"));
    assert_eq!(wf.to_info().inbox_size, 2);
    // Once it has ended, a key delivered before still answers duplicate
    // (a retry after a lost answer); anything else is refused.
    let finish = Kind::FinishWorkflow(FinishWorkflow {
        workflow_id: "s".into(),
        node_id: sm.workflow("s").unwrap().owner,
        success: true,
        ..FinishWorkflow::default()
    });
    sm.apply(&cmd_at(2002, finish)).0.unwrap();
    let (late, _) = sm.apply(&cmd_at(2002, signal_start("s", "3", "k")));
    assert!(matches!(
        late,
        Ok(Applied::SignalledWithStart {
            started: false,
            duplicate: true
        })
    ));
    let (fresh, _) = sm.apply(&cmd_at(2002, signal_start("s", "4", "new")));
    assert!(matches!(fresh, Err(Rejection::Ended { .. })), "{fresh:?}");
    // An existing running workflow ("w") just takes the event.
    let (to_running, _) = sm.apply(&cmd_at(2003, signal_start("w", "x", "")));
    assert_eq!(
        to_running,
        Ok(Applied::SignalledWithStart {
            started: false,
            duplicate: false
        })
    );
}

#[test]
fn signal_with_start_to_an_ended_workflow_changes_nothing() {
    let mut sm = running();
    let finish = Kind::FinishWorkflow(FinishWorkflow {
        workflow_id: "w".into(),
        node_id: 1,
        success: true,
        ..FinishWorkflow::default()
    });
    sm.apply(&cmd_at(2000, finish)).0.unwrap();
    let before = sm.workflow("w").unwrap().to_info();
    let (outcome, events) = sm.apply(&cmd_at(2001, signal_start("w", "1", "")));
    assert!(
        matches!(outcome, Err(Rejection::Ended { .. })),
        "{outcome:?}"
    );
    assert!(events.is_empty());
    assert_eq!(sm.workflow("w").unwrap().to_info(), before);
    // A payload no new inbox could hold starts nothing either.
    let huge = "x".repeat(MAX_INBOX_BYTES + 1);
    let (outcome, _) = sm.apply(&cmd_at(2002, signal_start("n", &huge, "")));
    assert!(
        matches!(outcome, Err(Rejection::InboxFull { .. })),
        "{outcome:?}"
    );
    assert!(sm.workflow("n").is_none());
}
