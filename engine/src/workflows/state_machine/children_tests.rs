//! Child workflows in the state machine: started with the parent's entry,
//! their end resolving the parent's position, parent-close policies.

use super::step_tests::{cmd_at, failure, running, step, value};
use super::*;
use raftoral_proto::cluster::v1::{CancelWorkflow, FinishWorkflow, RecordStep};
use raftoral_proto::sidecar::v1::{ChildStart, HistoryEntryKind, ParentClosePolicy};

fn child(seq: u64, id: &str, close: ParentClosePolicy) -> RecordStep {
    RecordStep {
        kind: HistoryEntryKind::ChildStarted as i32,
        checkpoint_name: "wf".into(),
        value: Bytes::new(),
        child: Some(Box::new(ChildStart {
            workflow_name: "wf".into(),
            version: 1,
            input: Bytes::from_static(b"in"),
            workflow_id: id.into(),
            parent_close: close as i32,
        })),
        ..value(seq, 1)
    }
}

fn finish(id: &str, success: bool) -> Kind {
    Kind::FinishWorkflow(FinishWorkflow {
        workflow_id: id.into(),
        node_id: 1,
        success,
        result: Bytes::from_static(b"\"r\""),
        error: if success {
            String::new()
        } else {
            "Boom happened".into()
        },
        failure: (!success).then(|| failure("Boom")),
    })
}

/// (seq, kind) of the parent's history.
fn kinds(sm: &StateMachine) -> Vec<(u64, HistoryEntryKind)> {
    let w = sm.workflow("w").unwrap();
    w.checkpoints.iter().map(|c| (c.seq, c.kind)).collect()
}

#[test]
fn a_child_starts_with_its_parents_entry_and_its_end_resolves_the_position() {
    let mut sm = running();
    step(
        &mut sm,
        2000,
        child(0, "w-c0", ParentClosePolicy::Unspecified),
    )
    .unwrap();
    let c = sm.workflow("w-c0").expect("started in the same entry");
    assert_eq!((c.status, c.owner), (WorkflowStatus::Running, 1));
    assert_eq!(&c.input[..], b"in");
    let link = c.parent.as_deref().unwrap();
    assert_eq!(
        (link.workflow_id.as_str(), link.seq, link.close),
        ("w", 0, ParentClosePolicy::Cancel)
    );
    let info = sm.workflow("w").unwrap().to_info();
    assert_eq!(info.open_children, ["w-c0"]);
    assert_eq!(sm.workflow("w").unwrap().protocol_needed(), 8);
    // The same start again is a duplicate; a step there is code that
    // changed; the app never resolves a child.
    assert!(matches!(
        step(&mut sm, 2001, child(0, "w-c0", ParentClosePolicy::Cancel)),
        Err(Rejection::UnexpectedSeq { .. })
    ));
    assert!(matches!(
        step(&mut sm, 2001, value(0, 1)),
        Err(Rejection::InvalidStep(m)) if m.contains("child")
    ));
    let done = RecordStep {
        kind: HistoryEntryKind::ChildCompleted as i32,
        ..value(0, 1)
    };
    assert!(matches!(
        step(&mut sm, 2001, done),
        Err(Rejection::InvalidStep(_))
    ));
    // A snapshot keeps the link and the open child.
    let restored = StateMachine::restore(&sm.snapshot(), 9).unwrap();
    assert_eq!(restored.snapshot(), sm.snapshot());
    assert_eq!(restored.workflow("w-c0").unwrap().parent, c.parent);
    // The child's end reaches the parent's position.
    sm.apply(&cmd_at(2100, finish("w-c0", true))).0.unwrap();
    assert_eq!(
        kinds(&sm),
        [
            (0, HistoryEntryKind::ChildStarted),
            (0, HistoryEntryKind::ChildCompleted)
        ]
    );
    let w = sm.workflow("w").unwrap();
    assert_eq!(
        &w.checkpoints[0].value[..],
        b"w-c0",
        "the start names the child"
    );
    assert_eq!(&w.checkpoints[1].value[..], b"\"r\"");
    assert!(w.to_info().open_children.is_empty());
    // The parent lists its children.
    let filter = PageFilter {
        parent: Some("w"),
        ..PageFilter::default()
    };
    let (page, more) = sm.page("", &filter, 10);
    assert_eq!(
        (page.iter().map(|w| w.id.as_str()).collect::<Vec<_>>(), more),
        (vec!["w-c0"], false)
    );
}

#[test]
fn a_failed_or_cancelled_child_fails_its_position_with_a_typed_failure() {
    let mut sm = running();
    step(&mut sm, 2000, child(0, "w-a", ParentClosePolicy::Cancel)).unwrap();
    step(&mut sm, 2000, child(1, "w-b", ParentClosePolicy::Cancel)).unwrap();
    sm.apply(&cmd_at(2100, finish("w-a", false))).0.unwrap();
    let cancel = Kind::CancelWorkflow(CancelWorkflow {
        workflow_id: "w-b".into(),
        reason: "not needed".into(),
        cleanup_ms: 0,
    });
    sm.apply(&cmd_at(2200, cancel)).0.unwrap();
    let w = sm.workflow("w").unwrap();
    let failures: Vec<_> = w
        .checkpoints
        .iter()
        .filter(|c| c.kind == HistoryEntryKind::ChildFailed)
        .map(|c| (c.seq, c.failure.as_ref().unwrap().r#type.clone()))
        .collect();
    assert_eq!(
        failures,
        [(0, "Boom".to_owned()), (1, CHILD_CANCELLED_TYPE.to_owned())]
    );
}

#[test]
fn a_parent_that_ends_first_applies_each_childs_policy() {
    let mut sm = running();
    step(
        &mut sm,
        2000,
        child(0, "w-cancel", ParentClosePolicy::Unspecified),
    )
    .unwrap();
    step(
        &mut sm,
        2000,
        child(1, "w-abandon", ParentClosePolicy::Abandon),
    )
    .unwrap();
    step(
        &mut sm,
        2000,
        child(2, "w-terminate", ParentClosePolicy::Terminate),
    )
    .unwrap();
    sm.apply(&cmd_at(3000, finish("w", true))).0.unwrap();
    let cancelled = sm.workflow("w-cancel").unwrap();
    assert_eq!(cancelled.status, WorkflowStatus::Running, "cleans up first");
    assert_eq!(
        cancelled.cancel_deadline_ms,
        3000 + children::CHILD_CANCEL_CLEANUP_MS
    );
    assert!(cancelled.cancel_reason.contains("parent 'w' ended"));
    let abandoned = sm.workflow("w-abandon").unwrap();
    assert_eq!(
        (abandoned.status, abandoned.cancel_deadline_ms),
        (WorkflowStatus::Running, 0)
    );
    assert_eq!(
        sm.workflow("w-terminate").unwrap().status,
        WorkflowStatus::Cancelled
    );
    // A child that ends after its parent changes nothing there.
    let before = sm.workflow("w").unwrap().checkpoints.len();
    sm.apply(&cmd_at(3100, finish("w-abandon", true)))
        .0
        .unwrap();
    assert_eq!(sm.workflow("w").unwrap().checkpoints.len(), before);
}

#[test]
fn a_child_id_in_use_fails_its_position_and_a_workflow_is_not_its_own_child() {
    let mut sm = running();
    let taken = Kind::StartWorkflow(StartWorkflow {
        workflow_id: "taken".into(),
        workflow_name: "wf".into(),
        version: 1,
        origin_node_id: 1,
        ..StartWorkflow::default()
    });
    sm.apply(&cmd_at(1500, taken)).0.unwrap();
    step(&mut sm, 2000, child(0, "taken", ParentClosePolicy::Cancel)).unwrap();
    let w = sm.workflow("w").unwrap();
    assert_eq!(w.checkpoints[1].kind, HistoryEntryKind::ChildFailed);
    assert_eq!(
        w.checkpoints[1].failure.as_ref().unwrap().r#type,
        CHILD_ID_IN_USE_TYPE
    );
    assert!(sm.workflow("taken").unwrap().parent.is_none());
    assert!(matches!(
        step(&mut sm, 2001, child(1, "w", ParentClosePolicy::Cancel)),
        Err(Rejection::InvalidStep(m)) if m.contains("its own child")
    ));
}
