//! Durable timers in the core: a sleep proposes its start once, resolves
//! only by the committed firing, replays at once, and is told apart from a
//! step at the same position.

use std::sync::Arc;
use std::time::Duration;

use raftoral_proto::sidecar::v1::{CheckpointRecord, HistoryEntryKind};

use super::tests::{connected, event, execute, next_proposal};
use super::*;

fn timer_record(seq: u64, name: &str, kind: HistoryEntryKind) -> CheckpointRecord {
    CheckpointRecord {
        seq,
        checkpoint_name: name.into(),
        kind: kind as i32,
        fire_at_ms: 5_000,
        ..CheckpointRecord::default()
    }
}

fn timer_event(seq: u64, name: &str, kind: HistoryEntryKind, index: u64) -> CheckpointEvent {
    CheckpointEvent {
        workflow_id: "w".into(),
        seq,
        checkpoint_name: name.into(),
        kind: kind as i32,
        fire_at_ms: 5_000,
        history_index: index,
        ..CheckpointEvent::default()
    }
}

#[tokio::test]
async fn the_owner_proposes_the_start_once_and_waits_for_the_firing() {
    let (core, mut rx) = connected();
    let run = core.on_execute(execute("w", true, &[])).unwrap();
    let sleeping = {
        let (core, run) = (core.clone(), run.clone());
        tokio::spawn(async move { core.sleep(&run, "nap", Duration::from_secs(90)).await })
    };
    let p = next_proposal(&mut rx).await;
    assert_eq!(p.kind(), HistoryEntryKind::TimerStarted);
    assert_eq!((p.seq, p.timer_duration_ms), (0, 90_000));
    assert_eq!(p.checkpoint_name, "nap");
    core.on_checkpoint_event(timer_event(0, "nap", HistoryEntryKind::TimerStarted, 0));
    // Started is not fired: a reconnect does not send the start again.
    let (tx, mut rx2) = tokio::sync::mpsc::channel(16);
    core.on_connect(tx);
    tokio::task::yield_now().await;
    assert!(!sleeping.is_finished());
    assert!(rx2.try_recv().is_err(), "nothing to send once started");
    core.on_checkpoint_event(timer_event(0, "nap", HistoryEntryKind::TimerFired, 1));
    sleeping.await.unwrap().unwrap();
    // The next position follows the timer's.
    assert_eq!(core.request(&run, "after").unwrap().seq(), 1);
}

#[tokio::test]
async fn a_fired_timer_replays_without_a_proposal_and_a_started_one_waits() {
    let (core, mut rx) = connected();
    let mut req = execute("w", true, &[]);
    req.history = vec![
        timer_record(0, "a", HistoryEntryKind::TimerStarted),
        timer_record(0, "a", HistoryEntryKind::TimerFired),
        timer_record(1, "b", HistoryEntryKind::TimerStarted),
    ];
    let run = core.on_execute(req).unwrap();
    core.sleep(&run, "a", Duration::from_secs(3600))
        .await
        .unwrap();
    let second = {
        let (core, run) = (core.clone(), run.clone());
        tokio::spawn(async move { core.sleep(&run, "b", Duration::from_secs(1)).await })
    };
    tokio::task::yield_now().await;
    assert!(!second.is_finished());
    core.on_checkpoint_event(timer_event(1, "b", HistoryEntryKind::TimerFired, 3));
    second.await.unwrap().unwrap();
    assert!(rx.try_recv().is_err(), "a replay proposes nothing");
}

#[tokio::test]
async fn a_changed_duration_replays_and_a_step_in_place_of_a_timer_does_not() {
    let (core, _rx) = connected();
    let mut req = execute("w", true, &[]);
    req.history = vec![
        timer_record(0, "nap", HistoryEntryKind::TimerStarted),
        timer_record(0, "nap", HistoryEntryKind::TimerFired),
    ];
    let run = core.on_execute(req.clone()).unwrap();
    core.sleep(&run, "nap", Duration::from_millis(1))
        .await
        .expect("the committed deadline stands; the duration is not checked");

    let (core, _rx) = connected();
    let run = core.on_execute(req.clone()).unwrap();
    let err = core.request(&run, "nap").unwrap_err();
    assert!(
        matches!(&err, ClientError::NonDeterminism { expected, got, .. } if expected == "timer:nap" && got == "nap"),
        "{err}"
    );

    // A timer where the history has a step.
    let (core, _rx) = connected();
    let run = core
        .on_execute(execute("w", true, &[("nap", "1")]))
        .unwrap();
    let err = core
        .sleep(&run, "nap", Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::NonDeterminism { expected, got, .. } if expected == "nap" && got == "timer:nap"),
        "{err}"
    );
}

#[tokio::test]
async fn a_step_resolution_at_a_sleeping_position_is_non_determinism() {
    // A replica sleeps at seq 0; the owner's (changed) code committed a
    // step there.
    let (core, _rx) = connected();
    let run = core.on_execute(execute("w", false, &[])).unwrap();
    let sleeping = {
        let (core, run) = (core.clone(), run.clone());
        tokio::spawn(async move { core.sleep(&run, "nap", Duration::from_secs(1)).await })
    };
    tokio::task::yield_now().await;
    core.on_checkpoint_event(event("w", 0, "nap", "1"));
    let err = sleeping.await.unwrap().unwrap_err();
    assert!(matches!(err, ClientError::NonDeterminism { .. }), "{err}");
}

#[tokio::test]
async fn cancelling_ends_a_sleep_and_too_long_is_refused_before_a_position() {
    let (core, _rx) = connected();
    let run = core.on_execute(execute("w", true, &[])).unwrap();
    let err = core
        .sleep(&run, "long", MAX_TIMER + Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Usage(m) if m.contains("366 days")),
        "{err}"
    );
    assert_eq!(core.next_position(&run), 0, "no position taken");
    let sleeping = {
        let (core, run) = (core.clone(), run.clone());
        tokio::spawn(async move { core.sleep(&run, "nap", Duration::from_secs(3600)).await })
    };
    tokio::task::yield_now().await;
    core.on_cancellation(WorkflowCancellation {
        workflow_id: "w".into(),
        reason: "stop".into(),
        ..WorkflowCancellation::default()
    });
    let err = sleeping.await.unwrap().unwrap_err();
    assert!(matches!(err, ClientError::Cancelled { .. }), "{err}");
}

/// An owner run racing a 1 h timer (seq 0) against step "pay" (seq 1),
/// each awaited by a task of its own as the SDKs do; pay's value proposed.
async fn racing(
    core: &Arc<WorkerCore>,
    rx: &mut tokio::sync::mpsc::Receiver<WorkflowStreamRequest>,
) -> (
    RunHandle,
    tokio::task::JoinHandle<Result<usize, ClientError>>,
) {
    let run = core.on_execute(execute("w", true, &[])).unwrap();
    let timer = core
        .request_timer(&run, "deadline", Duration::from_secs(3600))
        .unwrap();
    let pay = core.request(&run, "pay").unwrap();
    {
        let (core, run) = (core.clone(), run.clone());
        tokio::spawn(async move { core.timer(&run, &timer).await });
    }
    let p = next_proposal(rx).await;
    assert_eq!((p.seq, p.kind()), (0, HistoryEntryKind::TimerStarted));
    core.on_checkpoint_event(timer_event(
        0,
        "deadline",
        HistoryEntryKind::TimerStarted,
        0,
    ));
    let Some(Ok(Slot::Compute(token))) = core.try_slot(&run, &pay) else {
        panic!("the owner computes pay");
    };
    {
        let (core, run) = (core.clone(), run.clone());
        tokio::spawn(async move { core.commit(&run, token, Bytes::from_static(b"1")).await });
    }
    let p = next_proposal(rx).await;
    assert_eq!((p.seq, p.checkpoint_name.as_str()), (1, "pay"));
    let first = {
        let (core, run) = (core.clone(), run.clone());
        tokio::spawn(async move { core.first(&run, &[0, 1]).await })
    };
    (run, first)
}

fn paid(index: u64) -> CheckpointEvent {
    CheckpointEvent {
        history_index: index,
        ..event("w", 1, "pay", "1")
    }
}

#[tokio::test]
async fn first_gives_the_timer_when_it_fires_before_the_step_commits() {
    let (core, mut rx) = connected();
    let (run, first) = racing(&core, &mut rx).await;
    core.on_checkpoint_event(timer_event(0, "deadline", HistoryEntryKind::TimerFired, 1));
    assert_eq!(first.await.unwrap().unwrap(), 0);
    // The losing step commits later: it holds up no later position.
    core.on_checkpoint_event(paid(2));
    let next = core.request(&run, "after").unwrap();
    core.on_checkpoint_event(CheckpointEvent {
        history_index: 3,
        ..event("w", 2, "after", "2")
    });
    assert!(matches!(
        core.try_slot(&run, &next),
        Some(Ok(Slot::Committed(_)))
    ));
}

#[tokio::test]
async fn first_gives_the_step_and_the_owner_cancels_the_losing_timer() {
    let (core, mut rx) = connected();
    let (_run, first) = racing(&core, &mut rx).await;
    core.on_checkpoint_event(paid(1));
    let p = next_proposal(&mut rx).await;
    assert_eq!(
        (p.seq, p.kind(), p.checkpoint_name.as_str()),
        (0, HistoryEntryKind::TimerCancelled, "deadline")
    );
    tokio::task::yield_now().await;
    assert!(!first.is_finished(), "first waits for the cancel's commit");
    core.on_checkpoint_event(timer_event(
        0,
        "deadline",
        HistoryEntryKind::TimerCancelled,
        2,
    ));
    assert_eq!(first.await.unwrap().unwrap(), 1);
}

/// A run of "w" (owner or not) with `history`, its timer and step "pay"
/// taken and pay awaited by a task; the race's outcome.
async fn race_replayed(
    core: &Arc<WorkerCore>,
    is_owner: bool,
    history: Vec<CheckpointRecord>,
) -> (
    RunHandle,
    tokio::task::JoinHandle<Result<usize, ClientError>>,
) {
    let mut req = execute("w", is_owner, &[]);
    req.history = history;
    let run = core.on_execute(req).unwrap();
    core.request_timer(&run, "deadline", Duration::from_secs(3600))
        .unwrap();
    let pay = core.request(&run, "pay").unwrap();
    {
        let (core, run) = (core.clone(), run.clone());
        tokio::spawn(async move { core.slot(&run, &pay).await });
    }
    let first = {
        let (core, run) = (core.clone(), run.clone());
        tokio::spawn(async move { core.first(&run, &[0, 1]).await })
    };
    (run, first)
}

#[tokio::test]
async fn a_replayed_first_gives_the_same_winner_and_proposes_nothing() {
    let (core, mut rx) = connected();
    let history = vec![
        timer_record(0, "deadline", HistoryEntryKind::TimerStarted),
        CheckpointRecord {
            seq: 1,
            checkpoint_name: "pay".into(),
            value: Bytes::from_static(b"1"),
            ..CheckpointRecord::default()
        },
        timer_record(0, "deadline", HistoryEntryKind::TimerCancelled),
    ];
    let (_run, first) = race_replayed(&core, true, history).await;
    assert_eq!(first.await.unwrap().unwrap(), 1);
    assert!(rx.try_recv().is_err(), "a replay proposes nothing");
}

#[tokio::test]
async fn a_replica_takes_the_winner_and_waits_for_the_owners_cancel() {
    let (core, mut rx) = connected();
    let (_run, first) = race_replayed(&core, false, Vec::new()).await;
    core.on_checkpoint_event(timer_event(
        0,
        "deadline",
        HistoryEntryKind::TimerStarted,
        0,
    ));
    core.on_checkpoint_event(paid(1));
    tokio::task::yield_now().await;
    assert!(
        !first.is_finished(),
        "the owner's cancel is not committed yet"
    );
    core.on_checkpoint_event(timer_event(
        0,
        "deadline",
        HistoryEntryKind::TimerCancelled,
        2,
    ));
    assert_eq!(first.await.unwrap().unwrap(), 1);
    assert!(rx.try_recv().is_err(), "a replica proposes nothing");
}

#[tokio::test]
async fn the_timers_a_run_remembers_are_only_those_not_handed_out() {
    let (core, mut rx) = connected();
    let mut req = execute("w", true, &[]);
    for seq in 0..100 {
        let name = format!("t{seq}");
        req.history
            .push(timer_record(seq, &name, HistoryEntryKind::TimerStarted));
        req.history
            .push(timer_record(seq, &name, HistoryEntryKind::TimerFired));
    }
    let run = core.on_execute(req).unwrap();
    for seq in 0..100 {
        core.sleep(&run, &format!("t{seq}"), Duration::from_secs(1))
            .await
            .unwrap();
    }
    let remembered = core.lock().runs["w"].timer_positions.len();
    assert!(remembered <= 1, "{remembered} timers remembered");
    assert!(rx.try_recv().is_err(), "a replay proposes nothing");
}
