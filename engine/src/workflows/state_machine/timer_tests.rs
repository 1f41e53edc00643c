//! Durable timers: started by the owner at a position, fired by the
//! leader's `FireTimers` once the log's time reaches the deadline.

use super::step_tests::{cmd_at, failed, running, shape, step, value};
use super::*;
use raftoral_proto::cluster::v1::{CancelWorkflow, FireTimers, RecordStep, SetWorkerPresence};
use raftoral_proto::sidecar::v1::HistoryEntryKind;

fn sleep(seq: u64, duration_ms: u64) -> RecordStep {
    RecordStep {
        kind: HistoryEntryKind::TimerStarted as i32,
        value: Bytes::new(),
        timer_duration_ms: duration_ms,
        checkpoint_name: format!("nap{seq}"),
        ..value(seq, 1)
    }
}

fn fire(sm: &mut StateMachine, at: u64, seqs: &[u64]) -> (Applied, Vec<Event>) {
    let timers = seqs
        .iter()
        .map(|seq| TimerSlot::Sleep(*seq).to_ref("w".into()))
        .collect();
    let (outcome, events) = sm.apply(&cmd_at(at, Kind::FireTimers(FireTimers { timers })));
    (outcome.unwrap(), events)
}

#[test]
fn a_timer_fires_only_once_the_log_time_reaches_its_deadline() {
    let mut sm = running();
    step(&mut sm, 2000, sleep(0, 5000)).unwrap();
    let wf = sm.workflow("w").unwrap();
    assert_eq!(
        wf.open_timer(0),
        Some(7000),
        "deadline = log time + duration"
    );
    assert_eq!(wf.checkpoints[0].fire_at_ms(), 7000);
    assert_eq!(wf.protocol_needed(), 3);
    assert_eq!(sm.pending_timers(), 1);
    assert_eq!(sm.next_timer_ms(), Some(7000));
    assert!(sm.due_timers(6999, 10).is_empty());

    // Early (a leader whose clock ran ahead of the log): nothing happens.
    assert_eq!(fire(&mut sm, 6999, &[0]).0, Applied::TimersFired(0));
    assert_eq!(shape(&sm).len(), 1);
    assert!(!sm.workflow("w").unwrap().is_step_resolved(0));

    assert_eq!(
        sm.due_timers(7000, 10),
        vec![(7000, "w".to_owned(), TimerSlot::Sleep(0))]
    );
    let (applied, events) = fire(&mut sm, 7000, &[0]);
    assert_eq!(applied, Applied::TimersFired(1));
    assert!(matches!(
        &events[..],
        [Event::CheckpointCommitted { history_index: 1, entry, .. }]
            if entry.kind == HistoryEntryKind::TimerFired && entry.name == "nap0" && entry.fire_at_ms() == 7000
    ));
    let wf = sm.workflow("w").unwrap();
    assert!(wf.is_step_resolved(0));
    assert_eq!(wf.open_timer(0), None);
    assert_eq!(sm.pending_timers(), 0);

    // A duplicate firing (a deposed leader's) changes nothing.
    assert_eq!(fire(&mut sm, 9000, &[0]).0, Applied::TimersFired(0));
    assert_eq!(shape(&sm).len(), 2);
    // The next position follows the timer's.
    step(&mut sm, 9001, value(1, 1)).unwrap();
}

#[test]
fn a_timer_of_zero_is_recorded_and_fires_at_its_own_log_time() {
    let mut sm = running();
    step(&mut sm, 2000, sleep(0, 0)).unwrap();
    assert_eq!(fire(&mut sm, 2000, &[0]).0, Applied::TimersFired(1));
}

#[test]
fn a_sleeping_position_takes_no_step_and_a_second_start_is_a_duplicate() {
    let mut sm = running();
    step(&mut sm, 2000, sleep(0, 1000)).unwrap();
    assert!(matches!(
        step(&mut sm, 2001, sleep(0, 1000)),
        Err(Rejection::UnexpectedSeq { got: 0, .. })
    ));
    assert!(matches!(
        step(&mut sm, 2001, value(0, 1)),
        Err(Rejection::InvalidStep(m)) if m.contains("running timer")
    ));
    assert!(matches!(
        step(
            &mut sm,
            2001,
            failed(0, HistoryEntryKind::StepAttemptFailed, 1, 10)
        ),
        Err(Rejection::InvalidStep(_))
    ));
    // The owner cannot fire its own timer.
    let fired = RecordStep {
        kind: HistoryEntryKind::TimerFired as i32,
        ..sleep(0, 0)
    };
    assert!(matches!(
        step(&mut sm, 2001, fired),
        Err(Rejection::InvalidStep(m)) if m.contains("FireTimers")
    ));
    // A step with failed attempts is not a timer.
    step(
        &mut sm,
        2002,
        failed(1, HistoryEntryKind::StepAttemptFailed, 1, 10),
    )
    .unwrap();
    assert!(matches!(
        step(&mut sm, 2003, sleep(1, 1000)),
        Err(Rejection::InvalidStep(_))
    ));
    // Only the owner starts one.
    let other = RecordStep {
        node_id: 2,
        ..sleep(2, 1000)
    };
    assert!(step(&mut sm, 2004, other).is_err());
}

#[test]
fn finishing_or_cancelling_a_workflow_drops_its_timers() {
    let mut sm = running();
    step(&mut sm, 2000, sleep(0, 60_000)).unwrap();
    step(&mut sm, 2000, sleep(1, 30_000)).unwrap();
    assert_eq!(sm.pending_timers(), 2);
    let cancel = Kind::CancelWorkflow(CancelWorkflow {
        workflow_id: "w".into(),
        reason: "stop".into(),
        cleanup_ms: 0,
    });
    sm.apply(&cmd_at(2500, cancel)).0.unwrap();
    assert_eq!(sm.pending_timers(), 0);
    assert_eq!(sm.next_timer_ms(), None);
    // Firing a cancelled workflow's timer is a no-op.
    assert_eq!(fire(&mut sm, 100_000, &[0, 1]).0, Applied::TimersFired(0));

    let mut sm = running();
    step(&mut sm, 2000, sleep(0, 60_000)).unwrap();
    let finish = Kind::FinishWorkflow(FinishWorkflow {
        workflow_id: "w".into(),
        node_id: 1,
        success: true,
        result: Bytes::from_static(b"1"),
        error: String::new(),
        failure: None,
    });
    sm.apply(&cmd_at(2500, finish)).0.unwrap();
    assert_eq!(sm.pending_timers(), 0);
}

#[test]
fn the_timer_table_comes_back_from_a_snapshot() {
    let mut sm = running();
    step(&mut sm, 2000, sleep(0, 5000)).unwrap();
    step(&mut sm, 2000, sleep(1, 1000)).unwrap();
    fire(&mut sm, 3000, &[1]);
    let mut restored = StateMachine::restore(&sm.snapshot(), 9).unwrap();
    assert_eq!(restored.pending_timers(), 1);
    assert_eq!(restored.next_timer_ms(), Some(7000));
    assert_eq!(
        fire(&mut restored, 7000, &[0, 1]).0,
        Applied::TimersFired(1)
    );
    assert_eq!(
        shape(&restored)
            .iter()
            .map(|(seq, kind, _)| (*seq, *kind))
            .collect::<Vec<_>>(),
        vec![
            (0, HistoryEntryKind::TimerStarted),
            (1, HistoryEntryKind::TimerStarted),
            (1, HistoryEntryKind::TimerFired),
            (0, HistoryEntryKind::TimerFired),
        ]
    );
}

#[test]
fn due_timers_come_earliest_first_and_bounded() {
    let mut sm = running();
    for seq in 0..5 {
        step(&mut sm, 2000, sleep(seq, 1000 - seq * 100)).unwrap();
    }
    let due = sm.due_timers(2800, 2);
    assert_eq!(
        due,
        vec![
            (2600, "w".into(), TimerSlot::Sleep(4)),
            (2700, "w".into(), TimerSlot::Sleep(3))
        ]
    );
    assert_eq!(sm.due_timers(2800, 10).len(), 3);
}

fn cancel(seq: u64) -> RecordStep {
    RecordStep {
        kind: HistoryEntryKind::TimerCancelled as i32,
        ..sleep(seq, 0)
    }
}

#[test]
fn the_owner_cancels_a_running_timer_which_then_never_fires() {
    let mut sm = running();
    // Cancelled before its start committed: the start finds it resolved.
    step(&mut sm, 2000, cancel(5)).unwrap();
    assert!(matches!(
        step(&mut sm, 2000, sleep(5, 1000)),
        Err(Rejection::UnexpectedSeq { .. })
    ));
    assert_eq!(sm.pending_timers(), 0);
    // Not at a step with failed attempts.
    step(
        &mut sm,
        2000,
        failed(6, HistoryEntryKind::StepAttemptFailed, 1, 10),
    )
    .unwrap();
    assert!(matches!(
        step(&mut sm, 2000, cancel(6)),
        Err(Rejection::InvalidStep(_))
    ));
    step(&mut sm, 2000, sleep(0, 5000)).unwrap();
    step(&mut sm, 2100, cancel(0)).unwrap();
    let wf = sm.workflow("w").unwrap();
    assert!(wf.is_step_resolved(0));
    let cancelled = wf.checkpoints.last().unwrap();
    assert_eq!(
        (cancelled.seq, cancelled.kind, cancelled.fire_at_ms()),
        (0, HistoryEntryKind::TimerCancelled, 7000)
    );
    assert_eq!(sm.pending_timers(), 0);
    assert_eq!(fire(&mut sm, 8000, &[0]).0, Applied::TimersFired(0));
    // Cancelled twice: resolved already.
    assert!(matches!(
        step(&mut sm, 2200, cancel(0)),
        Err(Rejection::UnexpectedSeq { .. })
    ));
}

fn start_with(delay_ms: u64, timeout_ms: u64) -> Kind {
    Kind::StartWorkflow(StartWorkflow {
        workflow_id: "d".into(),
        workflow_name: "wf".into(),
        version: 1,
        input: Bytes::new(),
        origin_node_id: 1,
        start_delay_ms: delay_ms,
        execution_timeout_ms: timeout_ms,
        signal: None,
    })
}

fn fire_slot(sm: &mut StateMachine, at: u64, slot: TimerSlot) -> (Applied, Vec<Event>) {
    let c = FireTimers {
        timers: vec![slot.to_ref("d".into())],
    };
    let (outcome, events) = sm.apply(&cmd_at(at, Kind::FireTimers(c)));
    (outcome.unwrap(), events)
}

#[test]
fn a_delayed_start_stays_pending_until_its_timer_fires_then_is_placed() {
    let mut sm = running();
    sm.apply(&cmd_at(5000, start_with(10_000, 0))).0.unwrap();
    let wf = sm.workflow("d").unwrap();
    assert_eq!(wf.status, WorkflowStatus::Pending);
    assert_eq!(wf.start_at_ms, 15_000);
    assert!(
        wf.pending_reason.contains("scheduled"),
        "{}",
        wf.pending_reason
    );
    assert_eq!(wf.to_info().start_at_ms, 15_000);
    // A worker arriving does not start it early.
    let presence = Kind::SetWorkerPresence(SetWorkerPresence {
        node_id: 1,
        present: true,
        live: vec![raftoral_proto::cluster::v1::WorkflowType {
            workflow_name: "wf".into(),
            version: 1,
        }],
        command_level: COMMAND_LEVEL,
    });
    sm.apply(&cmd_at(6000, presence)).0.unwrap();
    assert_eq!(sm.workflow("d").unwrap().status, WorkflowStatus::Pending);
    assert_eq!(
        fire_slot(&mut sm, 14_999, TimerSlot::Start).0,
        Applied::TimersFired(0)
    );
    let (applied, events) = fire_slot(&mut sm, 15_000, TimerSlot::Start);
    assert_eq!(applied, Applied::TimersFired(1));
    assert!(matches!(
        &events[..],
        [Event::WorkflowRunning { owner: 1, .. }]
    ));
    let wf = sm.workflow("d").unwrap();
    assert_eq!(
        (wf.status, wf.owner, wf.start_at_ms),
        (WorkflowStatus::Running, 1, 0)
    );
    assert_eq!(sm.count(WorkflowStatus::Running), 2);
    assert_eq!(sm.count(WorkflowStatus::Pending), 0);
}

#[test]
fn the_execution_timeout_fails_the_workflow_and_stops_its_run() {
    let mut sm = running();
    sm.apply(&cmd_at(5000, start_with(1000, 3000))).0.unwrap();
    assert_eq!(
        sm.workflow("d").unwrap().timeout_at_ms,
        9000,
        "counted from the delayed start"
    );
    assert_eq!(sm.pending_timers(), 2);
    let restored = StateMachine::restore(&sm.snapshot(), 9).unwrap();
    assert_eq!(
        restored.pending_timers(),
        2,
        "both come back from a snapshot"
    );
    fire_slot(&mut sm, 6000, TimerSlot::Start);
    let (applied, events) = fire_slot(&mut sm, 9000, TimerSlot::ExecutionTimeout);
    assert_eq!(applied, Applied::TimersFired(1));
    assert!(matches!(
        &events[..],
        [
            Event::WorkflowCancelled { .. },
            Event::WorkflowFinished {
                status: WorkflowStatus::Failed,
                ..
            }
        ]
    ));
    let wf = sm.workflow("d").unwrap();
    assert_eq!(wf.status, WorkflowStatus::Failed);
    assert_eq!(
        wf.failure.as_deref().map(|f| f.r#type.as_str()),
        Some("raftoral.WorkflowTimeout")
    );
    assert_eq!(sm.pending_timers(), 0);
    // Finished before its timeout: the timeout never fires.
    let mut sm = running();
    sm.apply(&cmd_at(5000, start_with(0, 3000))).0.unwrap();
    let finish = Kind::FinishWorkflow(FinishWorkflow {
        workflow_id: "d".into(),
        node_id: 1,
        success: true,
        result: Bytes::from_static(b"1"),
        error: String::new(),
        failure: None,
    });
    sm.apply(&cmd_at(6000, finish)).0.unwrap();
    assert_eq!(sm.pending_timers(), 0);
    assert_eq!(
        fire_slot(&mut sm, 9000, TimerSlot::ExecutionTimeout).0,
        Applied::TimersFired(0)
    );
    assert_eq!(sm.workflow("d").unwrap().status, WorkflowStatus::Completed);
}
