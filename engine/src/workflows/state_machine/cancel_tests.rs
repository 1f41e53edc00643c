//! Cancel requests: the cleanup window, the entries that deliver the
//! cancellation, and how the workflow ends.

use super::step_tests::{cmd_at, failed, running, step, value};
use super::*;
use raftoral_proto::cluster::v1::{CancelWorkflow, FireTimers, RecordStep};
use raftoral_proto::sidecar::v1::{Failure, HistoryEntryKind};

fn cancel(at: u64, cleanup_ms: u64) -> Command {
    cmd_at(
        at,
        Kind::CancelWorkflow(CancelWorkflow {
            workflow_id: "w".into(),
            reason: "customer asked".into(),
            cleanup_ms,
        }),
    )
}

fn cancelled_failure() -> Failure {
    Failure {
        r#type: CANCELLED_FAILURE_TYPE.into(),
        message: "customer asked".into(),
        ..Failure::default()
    }
}

/// The owner's delivery of the cancellation at step `seq`.
fn deliver(seq: u64) -> RecordStep {
    RecordStep {
        failure: Some(cancelled_failure()),
        ..failed(seq, HistoryEntryKind::StepFailed, 1, 0)
    }
}

fn finish(failure: Option<Failure>) -> Command {
    cmd_at(
        9000,
        Kind::FinishWorkflow(FinishWorkflow {
            workflow_id: "w".into(),
            node_id: 1,
            success: failure.is_none(),
            result: Bytes::from_static(b"\"done\""),
            error: failure
                .as_ref()
                .map(|f| format!("{}: {}", f.r#type, f.message))
                .unwrap_or_default(),
            failure,
        }),
    )
}

fn status(sm: &StateMachine) -> (WorkflowStatus, String) {
    let wf = sm.workflow("w").unwrap();
    (wf.status, wf.error.clone())
}

#[test]
fn a_running_workflows_cancel_is_a_request_with_a_cleanup_timer() {
    let mut sm = running();
    let (outcome, events) = sm.apply(&cancel(2000, 30_000));
    assert_eq!(outcome, Ok(Applied::CancelRequested));
    assert!(matches!(
        &events[..],
        [Event::WorkflowCancelRequested { reason, cleanup_until_ms: 32_000, .. }] if reason == "customer asked"
    ));
    let wf = sm.workflow("w").unwrap();
    assert_eq!(wf.status, WorkflowStatus::Running);
    assert!(wf.cancel_requested());
    let info = wf.to_info();
    assert_eq!(
        (info.cancel_reason.as_str(), info.cancel_deadline_ms),
        ("customer asked", 32_000)
    );
    assert_eq!(
        sm.due_timers(32_000, 10),
        vec![(32_000, "w".to_owned(), TimerSlot::CancelCleanup)]
    );

    // A later request with a longer window changes nothing; a shorter one
    // brings the deadline forward.
    let (outcome, events) = sm.apply(&cancel(3000, 60_000));
    assert_eq!((outcome, events.len()), (Ok(Applied::CancelRequested), 0));
    sm.apply(&cancel(4000, 1_000)).0.unwrap();
    assert_eq!(sm.workflow("w").unwrap().cancel_deadline_ms, 5_000);
    assert_eq!(sm.pending_timers(), 1, "the first deadline's timer is gone");

    // The state survives a snapshot, timer included.
    let restored = StateMachine::restore(&sm.snapshot(), 9).unwrap();
    assert_eq!(restored.snapshot(), sm.snapshot());
    assert_eq!(restored.next_timer_ms(), Some(5_000));
}

#[test]
fn the_cancellation_is_delivered_as_entries_and_the_code_ends_it() {
    let mut sm = running();
    // Not requested: the reserved type is refused.
    assert!(matches!(
        step(&mut sm, 1500, deliver(0)),
        Err(Rejection::InvalidStep(m)) if m.contains("reserved")
    ));
    sm.apply(&cancel(2000, 30_000)).0.unwrap();
    // Delivered at an open step, and at a sleeping position.
    step(&mut sm, 2100, deliver(0)).unwrap();
    let sleep = RecordStep {
        kind: HistoryEntryKind::TimerStarted as i32,
        value: Bytes::new(),
        timer_duration_ms: 60_000,
        ..value(1, 1)
    };
    step(&mut sm, 2050, sleep).unwrap();
    assert_eq!(sm.pending_timers(), 2);
    let wake = RecordStep {
        kind: HistoryEntryKind::TimerCancelled as i32,
        value: Bytes::new(),
        failure: Some(cancelled_failure()),
        ..value(1, 1)
    };
    step(&mut sm, 2200, wake).unwrap();
    assert_eq!(sm.pending_timers(), 1, "the sleep's timer is gone");
    let wf = sm.workflow("w").unwrap();
    assert!(
        wf.checkpoints
            .iter()
            .filter(|c| c.is_cancellation())
            .count()
            == 2
    );
    assert_eq!(wf.protocol_needed(), 4, "older apps cannot read it");
    // A sleep's cancellation carries no other failure.
    let odd = RecordStep {
        kind: HistoryEntryKind::TimerCancelled as i32,
        value: Bytes::new(),
        failure: Some(Failure {
            r#type: "Boom".into(),
            ..Failure::default()
        }),
        ..value(2, 1)
    };
    assert!(step(&mut sm, 2300, odd).is_err());
    // Compensation runs as usual.
    step(&mut sm, 2400, value(2, 1)).unwrap();

    // The code ends with the cancellation: CANCELLED, with the reason.
    let (outcome, events) = sm.apply(&finish(Some(cancelled_failure())));
    assert_eq!(outcome, Ok(Applied::Finished));
    assert!(matches!(
        &events[..],
        [Event::WorkflowFinished {
            status: WorkflowStatus::Cancelled,
            ..
        }]
    ));
    assert_eq!(
        status(&sm),
        (WorkflowStatus::Cancelled, "customer asked".into())
    );
    assert_eq!(sm.pending_timers(), 0);
    let info = sm.workflow("w").unwrap().to_info();
    assert_eq!(
        (info.cancel_deadline_ms, info.cancel_reason),
        (0, String::new())
    );
}

#[test]
fn code_that_returns_or_fails_after_a_cancel_decides_the_status() {
    let mut sm = running();
    sm.apply(&cancel(2000, 30_000)).0.unwrap();
    sm.apply(&finish(None)).0.unwrap();
    assert_eq!(status(&sm).0, WorkflowStatus::Completed);
    assert_eq!(sm.pending_timers(), 0);

    let mut sm = running();
    sm.apply(&cancel(2000, 30_000)).0.unwrap();
    let other = Failure {
        r#type: "RefundFailed".into(),
        ..Failure::default()
    };
    sm.apply(&finish(Some(other))).0.unwrap();
    assert_eq!(status(&sm).0, WorkflowStatus::Failed);

    // Without a request, a failure of the reserved type is a failure.
    let mut sm = running();
    sm.apply(&finish(Some(cancelled_failure()))).0.unwrap();
    assert_eq!(status(&sm).0, WorkflowStatus::Failed);
}

#[test]
fn the_window_running_out_cancels_the_workflow_whatever_its_code_does() {
    let mut sm = running();
    sm.apply(&cancel(2000, 5_000)).0.unwrap();
    let fire = |at| {
        cmd_at(
            at,
            Kind::FireTimers(FireTimers {
                timers: vec![TimerSlot::CancelCleanup.to_ref("w".into())],
            }),
        )
    };
    // Early: nothing.
    assert_eq!(sm.apply(&fire(6_999)).0, Ok(Applied::TimersFired(0)));
    assert_eq!(status(&sm).0, WorkflowStatus::Running);
    let (outcome, events) = sm.apply(&fire(7_000));
    assert_eq!(outcome, Ok(Applied::TimersFired(1)));
    assert!(matches!(&events[0], Event::WorkflowCancelled { .. }));
    let (st, error) = status(&sm);
    assert_eq!(st, WorkflowStatus::Cancelled);
    assert!(
        error.starts_with("customer asked") && error.contains("cleanup window ran out"),
        "{error}"
    );
    // The code's late end is refused.
    assert!(sm.apply(&finish(None)).0.is_err());
}

#[test]
fn a_cancel_without_window_or_of_a_pending_workflow_is_immediate() {
    let mut sm = running();
    sm.apply(&cancel(2000, 30_000)).0.unwrap();
    let (outcome, _) = sm.apply(&cancel(2100, 0));
    assert_eq!(outcome, Ok(Applied::Cancelled));
    assert_eq!(
        status(&sm),
        (WorkflowStatus::Cancelled, "customer asked".into())
    );
    assert_eq!(sm.pending_timers(), 0, "the window's timer went with it");

    let mut sm = StateMachine::new();
    sm.apply(&cmd_at(
        1000,
        Kind::StartWorkflow(StartWorkflow {
            workflow_id: "w".into(),
            workflow_name: "nobody-runs-it".into(),
            version: 1,
            ..StartWorkflow::default()
        }),
    ))
    .0
    .unwrap();
    assert_eq!(sm.apply(&cancel(2000, 30_000)).0, Ok(Applied::Cancelled));
    assert_eq!(status(&sm).0, WorkflowStatus::Cancelled);
}
