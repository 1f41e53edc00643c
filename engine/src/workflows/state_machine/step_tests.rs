//! Histories with failed steps, failed attempts and steps that finish out
//! of order (`RecordStep`).

use super::*;
use raftoral_proto::cluster::v1::{
    RecordCheckpoint, RecordStep, RegisterWorker, SetWorkerPresence,
};
use raftoral_proto::sidecar::v1::{Failure, HistoryEntryKind};

pub(super) fn cmd_at(at: u64, kind: Kind) -> Command {
    Command {
        proposer_node_id: 1,
        proposal_id: 1,
        proposed_at_ms: at,
        kind: Some(kind),
    }
}

/// A machine where node 1 owns workflow "w".
pub(super) fn running() -> StateMachine {
    let mut sm = StateMachine::new();
    for kind in [
        Kind::RegisterWorker(RegisterWorker {
            node_id: 1,
            workflow_name: "wf".into(),
            version: 1,
        }),
        Kind::StartWorkflow(StartWorkflow {
            workflow_id: "w".into(),
            workflow_name: "wf".into(),
            version: 1,
            input: Bytes::new(),
            origin_node_id: 1,
            start_delay_ms: 0,
            execution_timeout_ms: 0,
            signal: None,
        }),
    ] {
        let (outcome, _) = sm.apply(&cmd_at(1000, kind));
        outcome.unwrap();
    }
    sm
}

pub(super) fn failure(r#type: &str) -> Failure {
    Failure {
        r#type: r#type.into(),
        message: format!("{type} happened"),
        details_json: r#"{"code":7}"#.into(),
        non_retryable: false,
        stack: "at step".into(),
    }
}

pub(super) fn value(seq: u64, attempt: u32) -> RecordStep {
    RecordStep {
        workflow_id: "w".into(),
        seq,
        checkpoint_name: format!("s{seq}"),
        node_id: 1,
        kind: HistoryEntryKind::Unspecified as i32,
        value: Bytes::from(format!("v{seq}")),
        failure: None,
        attempt,
        retry_delay_ms: 0,
        timer_duration_ms: 0,
        child: None,
    }
}

pub(super) fn failed(seq: u64, kind: HistoryEntryKind, attempt: u32, delay: u64) -> RecordStep {
    RecordStep {
        kind: kind as i32,
        value: Bytes::new(),
        failure: Some(failure("Boom")),
        retry_delay_ms: delay,
        ..value(seq, attempt)
    }
}

pub(super) fn step(sm: &mut StateMachine, at: u64, c: RecordStep) -> Result<Applied, Rejection> {
    sm.apply(&cmd_at(at, Kind::RecordStep(c))).0
}

/// The history as (seq, kind, attempt).
pub(super) fn shape(sm: &StateMachine) -> Vec<(u64, HistoryEntryKind, u32)> {
    sm.workflow("w")
        .unwrap()
        .checkpoints
        .iter()
        .map(|c| (c.seq, c.kind, c.attempt))
        .collect()
}

#[test]
fn a_failed_step_takes_its_position_and_the_next_step_follows_it() {
    let mut sm = running();
    step(&mut sm, 2000, failed(0, HistoryEntryKind::StepFailed, 1, 0)).unwrap();
    // The step after the caught failure is seq 1, not seq 0 again.
    step(&mut sm, 2001, value(1, 1)).unwrap();
    assert_eq!(
        step(&mut sm, 2002, value(0, 2)),
        Err(Rejection::UnexpectedSeq {
            workflow_id: "w".into(),
            expected: 2,
            got: 0
        }),
        "a failed step is resolved: nothing may replace its failure"
    );
    let wf = sm.workflow("w").unwrap();
    assert_eq!(wf.resolved_steps(), 2);
    assert!(!wf.is_plain_history());
    let f = wf.checkpoints[0].failure.as_deref().unwrap();
    assert_eq!(
        (f.r#type.as_str(), f.details_json.as_str()),
        ("Boom", r#"{"code":7}"#)
    );
    let info = wf.to_info();
    assert_eq!((info.checkpoint_count, info.history_length), (2, 2));
}

#[test]
fn attempts_follow_one_another_and_the_next_one_is_due_after_the_committed_delay() {
    let mut sm = running();
    let attempt = HistoryEntryKind::StepAttemptFailed;
    let refused = |last, got| {
        Err(Rejection::UnexpectedAttempt {
            workflow_id: "w".into(),
            seq: 0,
            last,
            got,
        })
    };
    assert_eq!(
        step(&mut sm, 2000, failed(0, attempt, 2, 10)),
        refused(0, 2)
    );
    step(&mut sm, 2000, failed(0, attempt, 1, 500)).unwrap();
    // A re-sent attempt 1 (the owner reconnected) changes nothing.
    assert_eq!(
        step(&mut sm, 2100, failed(0, attempt, 1, 500)),
        refused(1, 1)
    );
    // A value from the attempt that just failed is stale.
    assert_eq!(step(&mut sm, 2100, value(0, 1)), refused(1, 1));
    step(&mut sm, 2600, failed(0, attempt, 2, 1000)).unwrap();
    step(&mut sm, 3700, value(0, 3)).unwrap();
    assert_eq!(
        shape(&sm),
        vec![
            (0, attempt, 1),
            (0, attempt, 2),
            (0, HistoryEntryKind::Unspecified, 3)
        ]
    );
    let wf = sm.workflow("w").unwrap();
    // Log time at commit plus the delay: the same on every replica, whatever
    // a new owner's clock says.
    assert_eq!(wf.checkpoints[0].next_attempt_at_ms, 2500);
    assert_eq!(wf.checkpoints[1].next_attempt_at_ms, 3600);
    assert_eq!(wf.resolved_steps(), 1);
    assert_eq!(wf.to_info().history_length, 3);
}

#[test]
fn steps_resolve_out_of_order_within_a_window_and_once_each() {
    let mut sm = running();
    step(&mut sm, 2000, value(2, 1)).unwrap();
    step(&mut sm, 2001, value(0, 1)).unwrap();
    assert_eq!(sm.workflow("w").unwrap().first_open_step(), 1);
    assert_eq!(
        step(&mut sm, 2002, value(2, 1)),
        Err(Rejection::UnexpectedSeq {
            workflow_id: "w".into(),
            expected: 1,
            got: 2
        })
    );
    assert_eq!(
        step(&mut sm, 2002, value(1 + MAX_OPEN_STEPS, 1)),
        Err(Rejection::TooManyOpenSteps {
            workflow_id: "w".into(),
            first_open: 1,
            seq: 1 + MAX_OPEN_STEPS
        })
    );
    step(&mut sm, 2003, value(MAX_OPEN_STEPS, 1)).unwrap();
    step(&mut sm, 2004, value(1, 1)).unwrap();
    let wf = sm.workflow("w").unwrap();
    assert_eq!(wf.first_open_step(), 3, "0, 1 and 2 are resolved");
    assert_eq!(wf.resolved_steps(), 4);
    let seqs: Vec<u64> = shape(&sm).iter().map(|(seq, ..)| *seq).collect();
    assert_eq!(seqs, vec![2, 0, MAX_OPEN_STEPS, 1], "commit order");
}

#[test]
fn step_entries_are_fenced_by_owner_and_checked_for_kind() {
    let mut sm = running();
    let other = RecordStep {
        node_id: 2,
        ..value(0, 1)
    };
    assert!(matches!(
        step(&mut sm, 2000, other),
        Err(Rejection::NotOwner { .. })
    ));
    let value_with_failure = RecordStep {
        failure: Some(failure("X")),
        ..value(0, 1)
    };
    assert!(matches!(
        step(&mut sm, 2000, value_with_failure),
        Err(Rejection::InvalidStep(_))
    ));
    let failure_without = RecordStep {
        failure: None,
        ..failed(0, HistoryEntryKind::StepFailed, 1, 0)
    };
    assert!(matches!(
        step(&mut sm, 2000, failure_without),
        Err(Rejection::InvalidStep(_))
    ));
    assert!(shape(&sm).is_empty(), "refusals change nothing");
}

#[test]
fn a_mixed_history_survives_a_snapshot_and_a_plain_one_is_written_as_before() {
    let mut sm = running();
    step(
        &mut sm,
        2000,
        failed(1, HistoryEntryKind::StepAttemptFailed, 1, 50),
    )
    .unwrap();
    step(&mut sm, 2001, value(0, 1)).unwrap();
    step(&mut sm, 2002, failed(1, HistoryEntryKind::StepFailed, 2, 0)).unwrap();
    let restored = StateMachine::restore(&sm.snapshot(), 9).unwrap();
    assert_eq!(restored.snapshot(), sm.snapshot());
    let (a, b) = (sm.workflow("w").unwrap(), restored.workflow("w").unwrap());
    assert_eq!(a.checkpoints, b.checkpoints);
    assert_eq!(a.steps, b.steps, "the index is rebuilt from the entries");
    let record = record::record(&a);
    assert_eq!(record.history_format, 1);

    // A plain history is written without seqs or format, as an engine that
    // predates kinds wrote it, and read back with seq = index.
    let mut plain = running();
    for seq in 0..3 {
        let c = RecordCheckpoint {
            workflow_id: "w".into(),
            seq,
            checkpoint_name: format!("s{seq}"),
            value: Bytes::new(),
            node_id: 1,
        };
        plain
            .apply(&cmd_at(2000, Kind::RecordCheckpoint(c)))
            .0
            .unwrap();
    }
    let record = record::record(&plain.workflow("w").unwrap());
    assert_eq!(record.history_format, 0);
    assert!(
        record
            .checkpoints
            .iter()
            .all(|c| c.seq == 0 && c.attempt == 0)
    );
    let back = record::workflow(record);
    let seqs: Vec<u64> = back.checkpoints.iter().map(|c| c.seq).collect();
    assert_eq!(seqs, vec![0, 1, 2]);
    assert!(back.is_plain_history());
    assert_eq!(back.first_open_step(), 3);
}

#[test]
fn record_checkpoint_keeps_its_rule_after_failed_attempts() {
    // RecordCheckpoint means "entry number seq": engines before kinds apply
    // it so. After an attempt entry the entry count and the seq differ, and
    // a node never proposes it then (it proposes RecordStep).
    let mut sm = running();
    step(
        &mut sm,
        2000,
        failed(0, HistoryEntryKind::StepAttemptFailed, 1, 0),
    )
    .unwrap();
    let c = RecordCheckpoint {
        workflow_id: "w".into(),
        seq: 0,
        checkpoint_name: "s0".into(),
        value: Bytes::new(),
        node_id: 1,
    };
    assert!(matches!(
        sm.apply(&cmd_at(2001, Kind::RecordCheckpoint(c))).0,
        Err(Rejection::UnexpectedSeq { expected: 1, .. })
    ));
}

#[test]
fn the_command_level_is_the_lowest_a_member_recorded() {
    let mut sm = StateMachine::new();
    sm.set_member_address(1, "a".into());
    sm.set_member_address(2, "b".into());
    let level = |node, level| {
        cmd_at(
            1000,
            Kind::SetWorkerPresence(SetWorkerPresence {
                node_id: node,
                present: false,
                live: Vec::new(),
                command_level: level,
            }),
        )
    };
    assert_eq!(sm.command_level(), 0, "nobody recorded one");
    assert!(
        !sm.predates(COMMAND_LEVEL),
        "none recorded: nothing older known"
    );
    sm.apply(&level(1, COMMAND_LEVEL)).0.unwrap();
    assert_eq!(sm.command_level(), 0, "node 2 has not");
    sm.apply(&level(2, COMMAND_LEVEL - 1)).0.unwrap();
    assert!(sm.predates(COMMAND_LEVEL), "node 2's engine is older");
    assert!(!sm.predates(COMMAND_LEVEL - 1));
    sm.apply(&level(2, COMMAND_LEVEL)).0.unwrap();
    assert_eq!(sm.command_level(), COMMAND_LEVEL);
    // The leader marking a node absent does not know its level: 0 keeps it.
    sm.apply(&level(2, 0)).0.unwrap();
    assert_eq!(sm.command_level(), COMMAND_LEVEL);
    let restored = StateMachine::restore(&sm.snapshot(), 9).unwrap();
    assert_eq!(restored.command_level(), COMMAND_LEVEL);
    // A member that joins with an older engine lowers it until it records.
    sm.set_member_address(3, "c".into());
    assert_eq!(sm.command_level(), 0);
    sm.remove_member(3, 1000);
    assert_eq!(sm.command_level(), COMMAND_LEVEL);
}
