//! Events: the inbox, waits, timeouts, idempotency, limits.

use super::step_tests::{cmd_at, running, step, value};
use super::*;
use raftoral_proto::cluster::v1::{FireTimers, RecordStep, SendEvent};
use raftoral_proto::sidecar::v1::HistoryEntryKind;

fn event(name: &str, payload: &str, key: &str) -> Kind {
    Kind::SendEvent(SendEvent {
        workflow_id: "w".into(),
        name: name.into(),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        idempotency_key: key.into(),
        failure: None,
    })
}

fn wait(seq: u64, name: &str, timeout_ms: u64) -> RecordStep {
    RecordStep {
        kind: HistoryEntryKind::EventWaiting as i32,
        value: Bytes::new(),
        checkpoint_name: name.into(),
        timer_duration_ms: timeout_ms,
        ..value(seq, 1)
    }
}

/// (seq, kind, value) of each history entry.
fn entries(sm: &StateMachine) -> Vec<(u64, HistoryEntryKind, String)> {
    sm.workflow("w")
        .unwrap()
        .checkpoints
        .iter()
        .map(|c| {
            (
                c.seq,
                c.kind,
                String::from_utf8_lossy(&c.value).into_owned(),
            )
        })
        .collect()
}

#[test]
fn events_wait_in_the_inbox_first_in_first_out_per_name() {
    let mut sm = running();
    for (at, payload) in [(1500, "a1"), (1501, "b1"), (1502, "a2")] {
        let name = &payload[..1];
        let (outcome, _) = sm.apply(&cmd_at(at, event(name, payload, "")));
        assert_eq!(outcome, Ok(Applied::EventSent { duplicate: false }));
    }
    let info = sm.workflow("w").unwrap().to_info();
    assert_eq!(info.inbox_size, 3);
    // A wait takes the first event of its name at once.
    step(&mut sm, 2000, wait(0, "a", 0)).unwrap();
    step(&mut sm, 2001, wait(1, "a", 0)).unwrap();
    assert_eq!(
        entries(&sm),
        vec![
            (0, HistoryEntryKind::EventWaiting, String::new()),
            (0, HistoryEntryKind::EventReceived, "a1".into()),
            (1, HistoryEntryKind::EventWaiting, String::new()),
            (1, HistoryEntryKind::EventReceived, "a2".into()),
        ]
    );
    let wf = sm.workflow("w").unwrap();
    assert_eq!(wf.to_info().inbox_size, 1, "b1 stays");
    assert_eq!(wf.protocol_needed(), 5);
    // The inbox survives a snapshot.
    let restored = StateMachine::restore(&sm.snapshot(), 9).unwrap();
    assert_eq!(restored.snapshot(), sm.snapshot());
    assert_eq!(restored.workflow("w").unwrap().to_info().inbox_size, 1);
}

#[test]
fn an_event_sent_to_a_waiting_workflow_resolves_its_earliest_wait() {
    let mut sm = running();
    step(&mut sm, 2000, wait(0, "go", 0)).unwrap();
    step(&mut sm, 2001, wait(1, "go", 0)).unwrap();
    let waits = sm.workflow("w").unwrap().to_info().event_waits;
    assert_eq!(waits.iter().map(|w| w.seq).collect::<Vec<_>>(), [0, 1]);
    let (outcome, events) = sm.apply(&cmd_at(2100, event("go", "x", "k1")));
    assert_eq!(outcome, Ok(Applied::EventSent { duplicate: false }));
    assert!(matches!(
        &events[..],
        [Event::CheckpointCommitted { entry, .. }]
            if entry.seq == 0 && entry.kind == HistoryEntryKind::EventReceived
    ));
    // The same key again: nothing delivered.
    let (outcome, events) = sm.apply(&cmd_at(2200, event("go", "y", "k1")));
    assert_eq!(
        (outcome, events.len()),
        (Ok(Applied::EventSent { duplicate: true }), 0)
    );
    assert_eq!(sm.workflow("w").unwrap().to_info().event_waits.len(), 1);
    // A re-sent wait is a duplicate; a step at a waiting position is not.
    assert!(matches!(
        step(&mut sm, 2300, wait(1, "go", 0)),
        Err(Rejection::UnexpectedSeq { .. })
    ));
    assert!(matches!(
        step(&mut sm, 2300, value(1, 1)),
        Err(Rejection::InvalidStep(m)) if m.contains("waits for an event")
    ));
    // Nor does the app resolve a wait.
    let received = RecordStep {
        kind: HistoryEntryKind::EventReceived as i32,
        ..wait(1, "go", 0)
    };
    assert!(matches!(
        step(&mut sm, 2300, received),
        Err(Rejection::InvalidStep(_))
    ));
}

#[test]
fn a_timeout_that_comes_first_wins_and_the_later_event_stays() {
    let mut sm = running();
    step(&mut sm, 2000, wait(0, "go", 500)).unwrap();
    assert_eq!(
        sm.due_timers(2500, 10),
        vec![(2500, "w".to_owned(), TimerSlot::EventTimeout(0))]
    );
    let fire = |at| {
        cmd_at(
            at,
            Kind::FireTimers(FireTimers {
                timers: vec![TimerSlot::EventTimeout(0).to_ref("w".into())],
            }),
        )
    };
    assert_eq!(sm.apply(&fire(2499)).0, Ok(Applied::TimersFired(0)));
    assert_eq!(sm.apply(&fire(2500)).0, Ok(Applied::TimersFired(1)));
    sm.apply(&cmd_at(2600, event("go", "late", ""))).0.unwrap();
    assert_eq!(
        entries(&sm)[1],
        (0, HistoryEntryKind::EventTimedOut, String::new())
    );
    assert_eq!(sm.workflow("w").unwrap().to_info().inbox_size, 1);
    // The next wait takes it; an event that resolves a wait drops its timer.
    step(&mut sm, 2700, wait(1, "go", 500)).unwrap();
    assert_eq!(
        entries(&sm)[3],
        (1, HistoryEntryKind::EventReceived, "late".into())
    );
    assert_eq!(sm.pending_timers(), 0);
    step(&mut sm, 2800, wait(2, "go", 500)).unwrap();
    sm.apply(&cmd_at(2900, event("go", "on time", "")))
        .0
        .unwrap();
    assert_eq!(sm.pending_timers(), 0, "the resolved wait's timer is gone");
    assert_eq!(sm.apply(&fire(9000)).0, Ok(Applied::TimersFired(0)));
}

#[test]
fn events_to_unknown_or_ended_workflows_and_a_full_inbox_are_refused() {
    let mut sm = running();
    let unknown = cmd_at(
        1500,
        Kind::SendEvent(SendEvent {
            workflow_id: "nope".into(),
            name: "go".into(),
            ..SendEvent::default()
        }),
    );
    assert!(matches!(
        sm.apply(&unknown).0,
        Err(Rejection::UnknownWorkflow(_))
    ));
    for i in 0..MAX_INBOX_EVENTS {
        sm.apply(&cmd_at(1600, event("go", &i.to_string(), "")))
            .0
            .unwrap();
    }
    assert!(matches!(
        sm.apply(&cmd_at(1700, event("go", "one more", ""))).0,
        Err(Rejection::InboxFull { .. })
    ));
    // A wait frees a place.
    step(&mut sm, 1800, wait(0, "go", 0)).unwrap();
    sm.apply(&cmd_at(1900, event("go", "now it fits", "")))
        .0
        .unwrap();
    let finish = Kind::FinishWorkflow(FinishWorkflow {
        workflow_id: "w".into(),
        node_id: 1,
        success: true,
        ..FinishWorkflow::default()
    });
    sm.apply(&cmd_at(2000, finish)).0.unwrap();
    assert!(matches!(
        sm.apply(&cmd_at(2100, event("go", "late", ""))).0,
        Err(Rejection::Ended {
            status: WorkflowStatus::Completed,
            ..
        })
    ));
}

#[test]
fn a_cancel_request_delivered_at_a_wait_ends_it_and_its_timeout() {
    use raftoral_proto::cluster::v1::CancelWorkflow;
    use raftoral_proto::sidecar::v1::Failure;
    let mut sm = running();
    step(&mut sm, 2000, wait(0, "go", 60_000)).unwrap();
    let cancel = Kind::CancelWorkflow(CancelWorkflow {
        workflow_id: "w".into(),
        reason: "stop".into(),
        cleanup_ms: 30_000,
    });
    sm.apply(&cmd_at(2100, cancel)).0.unwrap();
    assert_eq!(sm.pending_timers(), 2, "the wait's timeout and the window");
    let delivered = RecordStep {
        kind: HistoryEntryKind::StepFailed as i32,
        value: Bytes::new(),
        failure: Some(Failure {
            r#type: CANCELLED_FAILURE_TYPE.into(),
            message: "stop".into(),
            ..Failure::default()
        }),
        checkpoint_name: "go".into(),
        ..value(0, 1)
    };
    step(&mut sm, 2200, delivered).unwrap();
    let wf = sm.workflow("w").unwrap();
    assert!(wf.to_info().event_waits.is_empty());
    assert_eq!(sm.pending_timers(), 1, "only the window's timer is left");
    // An event sent now waits in the inbox.
    sm.apply(&cmd_at(2300, event("go", "late", ""))).0.unwrap();
    assert_eq!(sm.workflow("w").unwrap().to_info().inbox_size, 1);
}

#[test]
fn an_awakeables_rejection_reaches_its_wait_with_the_failure() {
    let mut sm = running();
    let name = raftoral_proto::awakeable::event_name(0);
    // Completed before the code waits: kept, then taken with its failure.
    let reject = Kind::SendEvent(SendEvent {
        workflow_id: "w".into(),
        name: name.clone(),
        idempotency_key: name.clone(),
        failure: Some(super::step_tests::failure("Declined")),
        ..SendEvent::default()
    });
    sm.apply(&cmd_at(1500, reject.clone())).0.unwrap();
    step(&mut sm, 2000, wait(0, &name, 0)).unwrap();
    let wf = sm.workflow("w").unwrap();
    let received = wf.checkpoints.last().unwrap();
    assert_eq!(received.kind, HistoryEntryKind::EventReceived);
    assert_eq!(received.failure.as_ref().unwrap().r#type, "Declined");
    assert_eq!(wf.protocol_needed(), 6, "awakeables need protocol 6");
    // A second completion is a duplicate (the node answers ALREADY_EXISTS).
    assert_eq!(
        sm.apply(&cmd_at(2100, reject)).0,
        Ok(Applied::EventSent { duplicate: true })
    );
}

fn cancel(seq: u64, name: &str) -> RecordStep {
    RecordStep {
        kind: HistoryEntryKind::EventWaitCancelled as i32,
        ..wait(seq, name, 0)
    }
}

#[test]
fn a_losing_wait_is_cancelled_and_gives_back_an_event_it_took() {
    let mut sm = running();
    // An open wait: the cancel resolves it and drops its timeout.
    step(&mut sm, 2000, wait(0, "go", 500)).unwrap();
    step(&mut sm, 2001, cancel(0, "go")).unwrap();
    assert_eq!(sm.pending_timers(), 0);
    assert!(matches!(
        step(&mut sm, 2002, cancel(0, "go")),
        Err(Rejection::UnexpectedSeq { .. })
    ));
    sm.apply(&cmd_at(2100, event("go", "e1", ""))).0.unwrap();
    assert_eq!(sm.workflow("w").unwrap().to_info().inbox_size, 1);
    // A wait that took an event gives it back to the inbox, once.
    step(&mut sm, 2200, wait(1, "go", 0)).unwrap();
    step(&mut sm, 2201, cancel(1, "go")).unwrap();
    assert_eq!(
        entries(&sm)[2..],
        [
            (1, HistoryEntryKind::EventWaiting, String::new()),
            (1, HistoryEntryKind::EventReceived, "e1".into()),
            (1, HistoryEntryKind::EventWaitCancelled, "e1".into()),
        ]
    );
    let wf = sm.workflow("w").unwrap();
    assert_eq!(wf.to_info().inbox_size, 1);
    assert_eq!(wf.protocol_needed(), 7);
    assert_eq!(wf.resolved_steps(), 2, "the give-back resolves nothing");
    assert!(matches!(
        step(&mut sm, 2202, cancel(1, "go")),
        Err(Rejection::UnexpectedSeq { .. })
    ));
    // Given back while another wait of its name is open: that wait takes
    // it, ahead of a later event of the name.
    sm.apply(&cmd_at(2250, event("go", "e2", ""))).0.unwrap();
    step(&mut sm, 2300, wait(2, "go", 0)).unwrap();
    step(&mut sm, 2301, wait(3, "go", 0)).unwrap();
    step(&mut sm, 2302, cancel(2, "go")).unwrap();
    let tail: Vec<_> = entries(&sm).into_iter().skip(5).collect();
    assert_eq!(
        tail,
        [
            (2, HistoryEntryKind::EventWaiting, String::new()),
            (2, HistoryEntryKind::EventReceived, "e1".into()),
            (3, HistoryEntryKind::EventWaiting, String::new()),
            (3, HistoryEntryKind::EventReceived, "e2".into()),
            (2, HistoryEntryKind::EventWaitCancelled, "e1".into()),
        ]
    );
    let wf = sm.workflow("w").unwrap();
    assert_eq!(wf.inbox.as_ref().unwrap().events[0].payload, "e1");
    // A wait cancelled before its own wait committed: the wait is refused.
    step(&mut sm, 2400, cancel(4, "go")).unwrap();
    assert!(matches!(
        step(&mut sm, 2401, wait(4, "go", 0)),
        Err(Rejection::UnexpectedSeq { .. })
    ));
    // Another name at an open wait is code that changed; a step position
    // is no wait.
    step(&mut sm, 2500, wait(5, "other", 0)).unwrap();
    assert!(matches!(
        step(&mut sm, 2501, cancel(5, "go")),
        Err(Rejection::InvalidStep(m)) if m.contains("waits for event 'other'")
    ));
    step(&mut sm, 2502, value(6, 1)).unwrap();
    assert!(matches!(
        step(&mut sm, 2503, cancel(6, "go")),
        Err(Rejection::UnexpectedSeq { .. })
    ));
    // All of it survives a snapshot.
    let restored = StateMachine::restore(&sm.snapshot(), 9).unwrap();
    assert_eq!(restored.snapshot(), sm.snapshot());
}
