use super::*;
use raftoral_proto::cluster::v1::{CancelWorkflow, PurgeFinished};
use raftoral_proto::cluster::v1::{RecordCheckpoint, RegisterWorker, SetWorkerPresence};

fn cmd(kind: Kind) -> Command {
    Command {
        proposer_node_id: 1,
        proposal_id: 1,
        proposed_at_ms: 1000,
        kind: Some(kind),
    }
}

fn start(id: &str, name: &str, version: u32, origin: u64) -> Command {
    cmd(Kind::StartWorkflow(StartWorkflow {
        workflow_id: id.into(),
        workflow_name: name.into(),
        version,
        input: Bytes::from_static(b"\"ping\""),
        origin_node_id: origin,
        start_delay_ms: 0,
        execution_timeout_ms: 0,
        signal: None,
    }))
}

fn register(node: u64, name: &str, version: u32) -> Command {
    cmd(Kind::RegisterWorker(RegisterWorker {
        node_id: node,
        workflow_name: name.into(),
        version,
    }))
}

fn checkpoint(id: &str, seq: u64, node: u64) -> Command {
    cmd(Kind::RecordCheckpoint(RecordCheckpoint {
        workflow_id: id.into(),
        seq,
        checkpoint_name: format!("step-{seq}"),
        value: Bytes::from(seq.to_string()),
        node_id: node,
    }))
}

/// Applies a command that must succeed.
fn ok(sm: &mut StateMachine, command: &Command) {
    let (outcome, _) = sm.apply(command);
    assert!(outcome.is_ok(), "{command:?} was rejected: {outcome:?}");
}

#[test]
fn start_without_worker_is_pending_with_reason_then_runs_on_registration() {
    let mut sm = StateMachine::new();
    let (outcome, events) = sm.apply(&start("w1", "ping_pong", 1, 1));
    assert_eq!(
        outcome,
        Ok(Applied::Started {
            workflow_id: "w1".into(),
            already_started: false
        })
    );
    assert!(events.is_empty());
    let wf = sm.workflow("w1").unwrap();
    assert_eq!(wf.status, WorkflowStatus::Pending);
    assert!(
        wf.pending_reason
            .contains("no worker has registered workflow 'ping_pong'")
    );

    let (_, events) = sm.apply(&register(3, "ping_pong", 1));
    assert!(events.contains(&Event::WorkflowRunning {
        workflow_id: "w1".into(),
        owner: 3
    }));
    let wf = sm.workflow("w1").unwrap();
    assert_eq!((wf.status, wf.owner), (WorkflowStatus::Running, 3));
    assert!(wf.pending_reason.is_empty());
}

#[test]
fn wrong_version_reason_lists_registered_versions() {
    let mut sm = StateMachine::new();
    ok(&mut sm, &register(1, "ping_pong", 1));
    ok(&mut sm, &start("w1", "ping_pong", 7, 1));
    let wf = sm.workflow("w1").unwrap();
    assert_eq!(wf.status, WorkflowStatus::Pending);
    assert!(
        wf.pending_reason.contains("version 7"),
        "{}",
        wf.pending_reason
    );
    assert!(
        wf.pending_reason.contains("registered versions: 1"),
        "{}",
        wf.pending_reason
    );
}

#[test]
fn placement_prefers_origin_else_a_registered_node() {
    let mut sm = StateMachine::new();
    ok(&mut sm, &register(2, "wf", 1));
    ok(&mut sm, &register(3, "wf", 1));
    ok(&mut sm, &start("a", "wf", 1, 3));
    assert_eq!(sm.workflow("a").unwrap().owner, 3);
    ok(&mut sm, &start("b", "wf", 1, 1));
    assert!([2, 3].contains(&sm.workflow("b").unwrap().owner));
}

#[test]
fn start_is_idempotent() {
    let mut sm = StateMachine::new();
    ok(&mut sm, &register(1, "wf", 1));
    ok(&mut sm, &start("a", "wf", 1, 1));
    ok(&mut sm, &checkpoint("a", 0, 1));
    let (outcome, events) = sm.apply(&start("a", "other", 2, 1));
    assert_eq!(
        outcome,
        Ok(Applied::Started {
            workflow_id: "a".into(),
            already_started: true
        })
    );
    assert!(events.is_empty());
    let wf = sm.workflow("a").unwrap();
    assert_eq!((wf.name.as_str(), wf.checkpoints.len()), ("wf", 1));
}

#[test]
fn checkpoints_are_fenced_by_owner_and_seq() {
    let mut sm = StateMachine::new();
    ok(&mut sm, &register(1, "wf", 1));
    ok(&mut sm, &register(2, "wf", 1));
    ok(&mut sm, &start("a", "wf", 1, 1));
    assert_eq!(
        sm.apply(&checkpoint("a", 0, 1)).0,
        Ok(Applied::CheckpointRecorded)
    );
    assert!(matches!(
        sm.apply(&checkpoint("a", 1, 2)).0,
        Err(Rejection::NotOwner {
            owner: 1,
            node: 2,
            ..
        })
    ));
    assert!(matches!(
        sm.apply(&checkpoint("a", 0, 1)).0,
        Err(Rejection::UnexpectedSeq {
            expected: 1,
            got: 0,
            ..
        })
    ));
    assert!(matches!(
        sm.apply(&checkpoint("a", 5, 1)).0,
        Err(Rejection::UnexpectedSeq {
            expected: 1,
            got: 5,
            ..
        })
    ));
    assert!(matches!(
        sm.apply(&checkpoint("nope", 0, 1)).0,
        Err(Rejection::UnknownWorkflow(_))
    ));
    assert_eq!(sm.workflow("a").unwrap().checkpoints.len(), 1);
}

#[test]
fn finish_and_cancel_are_terminal() {
    let mut sm = StateMachine::new();
    ok(&mut sm, &register(1, "wf", 1));
    ok(&mut sm, &start("a", "wf", 1, 1));
    ok(&mut sm, &start("b", "wf", 1, 1));
    let finish = cmd(Kind::FinishWorkflow(FinishWorkflow {
        workflow_id: "a".into(),
        node_id: 1,
        success: false,
        result: Bytes::new(),
        error: "boom".into(),
        failure: None,
    }));
    let (outcome, events) = sm.apply(&finish);
    assert_eq!(outcome, Ok(Applied::Finished));
    assert_eq!(
        events,
        vec![Event::WorkflowFinished {
            workflow_id: "a".into(),
            status: WorkflowStatus::Failed
        }]
    );
    assert_eq!(sm.workflow("a").unwrap().error, "boom");
    // A second result for a finished workflow is refused.
    assert!(matches!(
        sm.apply(&finish).0,
        Err(Rejection::NotRunning { .. })
    ));

    let cancel = cmd(Kind::CancelWorkflow(CancelWorkflow {
        workflow_id: "b".into(),
        reason: "user asked".into(),
        cleanup_ms: 0,
    }));
    let (_, events) = sm.apply(&cancel);
    assert_eq!(events.len(), 2);
    let b = sm.workflow("b").unwrap();
    assert_eq!(
        (b.status, b.error.as_str()),
        (WorkflowStatus::Cancelled, "user asked")
    );
    assert!(matches!(
        sm.apply(&checkpoint("b", 0, 1)).0,
        Err(Rejection::NotRunning { .. })
    ));
    // Cancelling a finished workflow changes nothing.
    let (outcome, events) = sm.apply(&cmd(Kind::CancelWorkflow(CancelWorkflow {
        workflow_id: "a".into(),
        reason: String::new(),
        cleanup_ms: 0,
    })));
    assert_eq!((outcome, events.len()), (Ok(Applied::Cancelled), 0));
    assert_eq!(sm.workflow("a").unwrap().status, WorkflowStatus::Failed);
}

#[test]
fn a_snapshot_restores_the_same_state() {
    let mut sm = StateMachine::new();
    ok(&mut sm, &register(1, "wf", 1));
    ok(&mut sm, &register(2, "wf", 1));
    ok(&mut sm, &start("a", "wf", 1, 1));
    ok(&mut sm, &checkpoint("a", 0, 1));
    ok(&mut sm, &start("p", "other", 3, 1));
    sm.set_applied_index(42);
    let restored = StateMachine::restore(&sm.snapshot(), 42).unwrap();
    assert_eq!(restored.applied_index(), 42);
    assert_eq!(restored.snapshot(), sm.snapshot());
    let a = restored.workflow("a").unwrap();
    assert_eq!(
        (a.status, a.owner, a.checkpoints.len()),
        (WorkflowStatus::Running, 1, 1)
    );
    assert_eq!(
        restored.workflow("p").unwrap().status,
        WorkflowStatus::Pending
    );
    assert!(restored.is_registered(2, "wf", 1));
    // The restored machine goes on exactly like the original.
    let mut restored = restored;
    assert_eq!(
        restored.apply(&checkpoint("a", 1, 1)).0,
        Ok(Applied::CheckpointRecorded)
    );
    assert!(StateMachine::restore(b"\xff\xff", 1).is_err());
}

#[test]
fn a_deposed_owners_late_proposal_is_refused_and_changes_nothing() {
    let mut sm = StateMachine::new();
    ok(&mut sm, &register(1, "wf", 1));
    ok(&mut sm, &register(2, "wf", 1));
    ok(&mut sm, &start("a", "wf", 1, 1));
    ok(&mut sm, &checkpoint("a", 0, 1));
    let failover = cmd(Kind::ChangeOwner(ChangeOwner {
        workflow_id: "a".into(),
        from_node_id: 1,
        to_node_id: 2,
    }));
    let (outcome, events) = sm.apply(&failover);
    assert_eq!(outcome, Ok(Applied::OwnerChanged));
    assert_eq!(
        events,
        vec![Event::OwnerChanged {
            workflow_id: "a".into(),
            old: 1,
            new: 2
        }]
    );
    // Node 1 did not hear of it yet and proposes seq 1: refused.
    assert!(matches!(
        sm.apply(&checkpoint("a", 1, 1)).0,
        Err(Rejection::NotOwner {
            owner: 2,
            node: 1,
            ..
        })
    ));
    assert_eq!(sm.workflow("a").unwrap().checkpoints.len(), 1);
    // The new owner goes on from seq 1.
    assert_eq!(
        sm.apply(&checkpoint("a", 1, 2)).0,
        Ok(Applied::CheckpointRecorded)
    );
    // A second, stale failover (from the old owner) is refused.
    assert!(matches!(
        sm.apply(&failover).0,
        Err(Rejection::NotOwner { .. })
    ));
}

fn presence(node: u64, live: &[(&str, u32)]) -> Command {
    cmd(Kind::SetWorkerPresence(SetWorkerPresence {
        node_id: node,
        present: !live.is_empty(),
        live: live
            .iter()
            .map(
                |(name, version)| raftoral_proto::cluster::v1::WorkflowType {
                    workflow_name: (*name).into(),
                    version: *version,
                },
            )
            .collect(),
        command_level: 0,
    }))
}

#[test]
fn placement_considers_only_types_a_connected_app_can_run() {
    let mut sm = StateMachine::new();
    ok(&mut sm, &register(1, "wf", 1));
    ok(&mut sm, &register(1, "other", 1));
    ok(&mut sm, &register(2, "wf", 1));
    // Node 1's app for "wf" left; another app there still runs "other".
    ok(&mut sm, &presence(1, &[("other", 1)]));
    ok(&mut sm, &start("a", "wf", 1, 1));
    assert_eq!(
        sm.workflow("a").unwrap().owner,
        2,
        "node 1 cannot run wf now"
    );
    assert!(sm.is_present(1) && sm.is_live(1, "other", 1) && !sm.is_live(1, "wf", 1));
    let restored = StateMachine::restore(&sm.snapshot(), 9).unwrap();
    assert!(restored.is_live(1, "other", 1) && !restored.is_live(1, "wf", 1));
    assert!(restored.is_live(2, "wf", 1));
}

#[test]
fn a_type_nobody_connected_can_run_is_pending_until_an_app_connects() {
    let mut sm = StateMachine::new();
    ok(&mut sm, &register(3, "lonely", 1));
    // The app registered, then closed its stream.
    ok(&mut sm, &presence(3, &[]));
    ok(&mut sm, &start("a", "lonely", 1, 3));
    let wf = sm.workflow("a").unwrap();
    assert_eq!(wf.status, WorkflowStatus::Pending);
    assert!(
        wf.pending_reason.contains("no live worker") && wf.pending_reason.contains('3'),
        "{}",
        wf.pending_reason
    );
    // The app is back: the workflow runs there.
    let (outcome, events) = sm.apply(&presence(3, &[("lonely", 1)]));
    assert!(outcome.is_ok());
    assert!(events.contains(&Event::WorkflowRunning {
        workflow_id: "a".into(),
        owner: 3
    }));
    assert_eq!(sm.workflow("a").unwrap().status, WorkflowStatus::Running);
}

#[test]
fn presence_without_types_means_every_registered_type() {
    let mut sm = StateMachine::new();
    ok(&mut sm, &register(1, "wf", 1));
    ok(&mut sm, &presence(1, &[]));
    assert!(!sm.is_present(1));
    // An entry written before per-type presence existed.
    ok(
        &mut sm,
        &cmd(Kind::SetWorkerPresence(SetWorkerPresence {
            node_id: 1,
            present: true,
            live: Vec::new(),
            command_level: 0,
        })),
    );
    assert!(sm.is_live(1, "wf", 1));
}

#[test]
fn a_removed_owner_s_workflows_move_or_wait_and_it_is_never_placed_again() {
    let mut sm = StateMachine::new();
    ok(&mut sm, &register(1, "wf", 1));
    ok(&mut sm, &register(4, "wf", 1));
    ok(&mut sm, &register(4, "solo", 1));
    ok(&mut sm, &start("a", "wf", 1, 4));
    ok(&mut sm, &start("b", "solo", 1, 4));
    assert_eq!(sm.workflow("a").unwrap().owner, 4);
    let events = sm.remove_member(4, 5000);
    assert_eq!(
        events,
        vec![Event::OwnerChanged {
            workflow_id: "a".into(),
            old: 4,
            new: 1
        }]
    );
    let b = sm.workflow("b").unwrap();
    assert_eq!((b.status, b.owner), (WorkflowStatus::Pending, 0));
    assert!(b.pending_reason.contains("removed"), "{}", b.pending_reason);
    // Its app's registration (say, still in flight) cannot bring it back.
    ok(&mut sm, &register(4, "wf", 1));
    ok(&mut sm, &start("c", "wf", 1, 4));
    assert_eq!(sm.workflow("c").unwrap().owner, 1);
}

#[test]
fn the_active_index_and_counters_follow_every_status_change_and_a_restore() {
    let mut sm = StateMachine::new();
    ok(&mut sm, &register(1, "wf", 1));
    ok(&mut sm, &start("a", "wf", 1, 1));
    ok(&mut sm, &start("b", "wf", 1, 1));
    ok(&mut sm, &start("p", "nobody", 1, 1));
    ok(
        &mut sm,
        &cmd(Kind::FinishWorkflow(FinishWorkflow {
            workflow_id: "a".into(),
            node_id: 1,
            success: true,
            result: Bytes::from_static(b"1"),
            error: String::new(),
            failure: None,
        })),
    );
    ok(
        &mut sm,
        &cmd(Kind::CancelWorkflow(CancelWorkflow {
            workflow_id: "p".into(),
            reason: String::new(),
            cleanup_ms: 0,
        })),
    );
    let active: Vec<&str> = sm.active_workflows().map(|w| w.id.as_str()).collect();
    assert_eq!(active, vec!["b"]);
    let counts = |sm: &StateMachine| {
        [
            WorkflowStatus::Pending,
            WorkflowStatus::Running,
            WorkflowStatus::Completed,
            WorkflowStatus::Failed,
            WorkflowStatus::Cancelled,
        ]
        .map(|s| sm.count(s))
    };
    assert_eq!(counts(&sm), [0, 1, 1, 0, 1]);
    let restored = StateMachine::restore(&sm.snapshot(), 9).unwrap();
    assert_eq!(counts(&restored), [0, 1, 1, 0, 1]);
    assert_eq!(restored.active_workflows().count(), 1);
    // Pending ones start when an app registers their type, go back to
    // pending when their owner node leaves, and the counters follow (they
    // are what /metrics reads, so they must match a walk).
    let walk = |sm: &StateMachine, status| {
        sm.active_workflows().filter(|w| w.status == status).count() as u64
    };
    let mut sm = restored;
    ok(&mut sm, &start("q1", "later", 1, 1));
    ok(&mut sm, &start("q2", "later", 1, 1));
    assert_eq!(counts(&sm)[..2], [2, 1]);
    ok(&mut sm, &register(2, "later", 1));
    assert_eq!(counts(&sm)[..2], [0, 3]);
    sm.remove_member(2, 2_000);
    assert_eq!(counts(&sm)[..2], [2, 1]);
    for status in [WorkflowStatus::Pending, WorkflowStatus::Running] {
        assert_eq!(sm.count(status), walk(&sm, status), "{status:?}");
    }
    let cancel = cmd(Kind::CancelWorkflow(CancelWorkflow {
        workflow_id: "q1".into(),
        reason: String::new(),
        cleanup_ms: 0,
    }));
    ok(&mut sm, &cancel);
    assert_eq!(counts(&sm), [1, 1, 1, 0, 2]);
}

#[test]
fn a_purge_removes_only_finished_workflows_older_than_its_cutoff() {
    let mut sm = StateMachine::new();
    let at = |ms: u64, kind: Kind| Command {
        proposer_node_id: 1,
        proposal_id: 1,
        proposed_at_ms: ms,
        kind: Some(kind),
    };
    let cancel = |id: &str| {
        Kind::CancelWorkflow(CancelWorkflow {
            workflow_id: id.into(),
            reason: String::new(),
            cleanup_ms: 0,
        })
    };
    ok(&mut sm, &start("old", "nobody", 1, 1));
    ok(&mut sm, &at(1_000, cancel("old")));
    ok(&mut sm, &start("new", "nobody", 1, 1));
    ok(&mut sm, &at(5_000, cancel("new")));
    ok(&mut sm, &start("waiting", "nobody", 1, 1));
    assert_eq!(sm.oldest_finished_ms(), Some(1_000));
    let (outcome, _) = sm.apply(&at(
        9_000,
        Kind::PurgeFinished(PurgeFinished {
            finished_before_ms: 3_000,
        }),
    ));
    assert_eq!(outcome, Ok(Applied::Purged(1)));
    assert!(sm.workflow("old").is_none());
    assert!(sm.workflow("new").is_some() && sm.workflow("waiting").is_some());
    assert_eq!(sm.count(WorkflowStatus::Cancelled), 1);
    assert_eq!(sm.purged_before_ms(), 3_000);
    let restored = StateMachine::restore(&sm.snapshot(), 9).unwrap();
    assert_eq!(restored.purged_before_ms(), 3_000);
    assert_eq!(restored.oldest_finished_ms(), Some(5_000));
}

fn finish(id: &str, node: u64) -> Command {
    cmd(Kind::FinishWorkflow(FinishWorkflow {
        workflow_id: id.into(),
        node_id: node,
        success: true,
        result: Bytes::from_static(b"1"),
        error: String::new(),
        failure: None,
    }))
}

/// Writes a flush of `sm` and lets memory drop what it archived.
fn flush_now(sm: &mut StateMachine) {
    let archived = sm.archive().writer().write(&sm.flush()).unwrap();
    sm.flushed(archived).unwrap();
    assert_eq!(sm.evict_archived(usize::MAX), 0);
}

#[test]
fn a_flush_keeps_its_point_in_time_while_commands_apply() {
    let mut sm = StateMachine::new();
    ok(&mut sm, &register(1, "steps", 1));
    ok(&mut sm, &start("w1", "steps", 1, 1));
    ok(&mut sm, &checkpoint("w1", 0, 1));
    sm.set_applied_index(3);
    let flush = sm.flush();
    // Changes after the flush was taken: a checkpoint, a finish, a new
    // workflow.
    ok(&mut sm, &checkpoint("w1", 1, 1));
    ok(&mut sm, &finish("w1", 1));
    ok(&mut sm, &start("w2", "steps", 1, 1));
    let writer = sm.archive().writer();
    writer.write(&flush).unwrap();
    let mut encoded = Vec::new();
    assert_eq!(writer.encode_to(&mut encoded).unwrap(), 3);
    let then = StateMachine::restore(&encoded, 3).unwrap();
    let w1 = then.workflow("w1").unwrap();
    assert_eq!(w1.checkpoints.len(), 1);
    assert_eq!(w1.status, WorkflowStatus::Running);
    assert!(then.workflow("w2").is_none());
    assert_eq!(sm.workflow("w1").unwrap().checkpoints.len(), 2);
}

#[test]
fn flushed_finished_workflows_leave_memory_and_stay_readable() {
    let mut sm = StateMachine::new();
    ok(&mut sm, &register(1, "ping_pong", 1));
    for i in 0..4 {
        ok(&mut sm, &start(&format!("w{i}"), "ping_pong", 1, 1));
    }
    ok(&mut sm, &finish("w0", 1));
    ok(&mut sm, &finish("w1", 1));
    flush_now(&mut sm);
    assert_eq!(
        sm.workflows.len(),
        2,
        "only the running ones stay in memory"
    );
    let w0 = sm.workflow("w0").unwrap();
    assert_eq!(
        (w0.status, w0.result.as_ref()),
        (WorkflowStatus::Completed, &b"1"[..])
    );
    assert_eq!(sm.workflow_count(), 4);
    assert_eq!(sm.count(WorkflowStatus::Completed), 2);
    // Commands on an archived workflow see it: a start is idempotent, a
    // checkpoint is refused as not running, a cancel is a no-op.
    let (outcome, _) = sm.apply(&start("w0", "ping_pong", 1, 1));
    assert_eq!(
        outcome,
        Ok(Applied::Started {
            workflow_id: "w0".into(),
            already_started: true
        })
    );
    let (outcome, _) = sm.apply(&checkpoint("w0", 0, 1));
    assert!(
        matches!(outcome, Err(Rejection::NotRunning { .. })),
        "{outcome:?}"
    );
    let (outcome, events) = sm.apply(&cmd(Kind::CancelWorkflow(CancelWorkflow {
        workflow_id: "w1".into(),
        reason: String::new(),
        cleanup_ms: 0,
    })));
    assert_eq!((outcome, events.len()), (Ok(Applied::Cancelled), 0));
    assert_eq!(sm.workflow("w1").unwrap().status, WorkflowStatus::Completed);
    // The whole state encodes the same from memory and from the archive.
    let restored = StateMachine::restore(&sm.snapshot(), 9).unwrap();
    assert_eq!(restored.workflow_count(), 4);
    assert_eq!(restored.count(WorkflowStatus::Completed), 2);
    assert_eq!(
        restored.workflow("w1").unwrap().status,
        WorkflowStatus::Completed
    );
}

#[test]
fn a_store_on_disk_gives_back_the_flushed_state_without_the_finished_workflows() {
    let dir = tempfile::tempdir().unwrap();
    let mut sm = StateMachine::with_archive(Archive::open_dir(dir.path()).unwrap());
    ok(&mut sm, &register(1, "ping_pong", 1));
    ok(&mut sm, &start("done", "ping_pong", 1, 1));
    ok(&mut sm, &start("running", "ping_pong", 1, 1));
    ok(&mut sm, &checkpoint("running", 0, 1));
    ok(&mut sm, &finish("done", 1));
    sm.set_applied_index(42);
    flush_now(&mut sm);
    drop(sm);
    let again = StateMachine::load(Archive::open_dir(dir.path()).unwrap())
        .unwrap()
        .expect("a flushed store");
    assert_eq!(again.applied_index(), 42);
    assert_eq!(
        again.workflows.len(),
        1,
        "only the running one is read into memory"
    );
    assert_eq!(again.workflow("running").unwrap().checkpoints.len(), 1);
    assert_eq!(
        again.workflow("done").unwrap().status,
        WorkflowStatus::Completed
    );
    assert_eq!(again.count(WorkflowStatus::Completed), 1);
    assert!(again.is_registered(1, "ping_pong", 1));
}

#[test]
fn retention_removes_archived_workflows_at_once_and_from_the_store_at_the_next_flush() {
    let mut sm = StateMachine::new();
    ok(&mut sm, &register(1, "ping_pong", 1));
    for (id, at) in [("old", 1_000), ("new", 5_000)] {
        ok(&mut sm, &start(id, "ping_pong", 1, 1));
        let mut c = finish(id, 1);
        c.proposed_at_ms = at;
        ok(&mut sm, &c);
    }
    flush_now(&mut sm);
    assert_eq!(sm.oldest_finished_ms(), Some(1_000));
    let (outcome, _) = sm.apply(&cmd(Kind::PurgeFinished(PurgeFinished {
        finished_before_ms: 3_000,
    })));
    assert_eq!(outcome, Ok(Applied::Purged(1)));
    assert!(sm.workflow("old").is_none());
    assert_eq!(sm.count(WorkflowStatus::Completed), 1);
    assert_eq!(sm.oldest_finished_ms(), Some(5_000));
    // A purged id can be used again, and finished again before the flush
    // that removes its old record from the store.
    let (outcome, _) = sm.apply(&start("old", "ping_pong", 1, 1));
    assert!(matches!(
        outcome,
        Ok(Applied::Started {
            already_started: false,
            ..
        })
    ));
    let mut again = finish("old", 1);
    again.proposed_at_ms = 7_000;
    ok(&mut sm, &again);
    flush_now(&mut sm);
    let reused = sm
        .workflow("old")
        .expect("the new workflow with the reused id");
    assert_eq!(
        (reused.status, reused.updated_at_ms),
        (WorkflowStatus::Completed, 7_000)
    );
    let named = PageFilter {
        name: Some("ping_pong"),
        status: None,
        sleeping: false,
        parent: None,
    };
    assert_eq!(sm.page("", &named, 10).0.len(), 2, "both in the name index");
    let restored = StateMachine::restore(&sm.snapshot(), 9).unwrap();
    assert_eq!(restored.count(WorkflowStatus::Completed), 2);
    assert_eq!(restored.workflow("old").unwrap().updated_at_ms, 7_000);
}

#[test]
fn eviction_after_a_flush_drops_the_record_it_wrote_not_a_newer_one_under_its_id() {
    let mut sm = StateMachine::new();
    ok(&mut sm, &register(1, "ping_pong", 1));
    for id in ["kept", "reused"] {
        ok(&mut sm, &start(id, "ping_pong", 1, 1));
        ok(&mut sm, &finish(id, 1));
    }
    let archived = sm.archive().writer().write(&sm.flush()).unwrap();
    assert_eq!(archived.len(), 2);
    sm.flushed(archived).unwrap();
    // Before memory let go of it, "reused" is purged, started again and
    // finished again: memory holds a record the flush never wrote. (The
    // purge is stamped at its cut-off: one past the log's time is clamped.)
    let mut purge = cmd(Kind::PurgeFinished(PurgeFinished {
        finished_before_ms: 3_000,
    }));
    purge.proposed_at_ms = 3_000;
    let (outcome, _) = sm.apply(&purge);
    assert_eq!(outcome, Ok(Applied::Purged(2)));
    ok(&mut sm, &start("reused", "ping_pong", 1, 1));
    let mut again = finish("reused", 1);
    again.proposed_at_ms = 7_000;
    ok(&mut sm, &again);
    assert_eq!(sm.evict_archived(1), 1, "one at a time");
    assert_eq!(sm.evict_archived(10), 0);
    let reused = sm.workflow("reused").expect("the newer record stays");
    assert_eq!(reused.updated_at_ms, 7_000);
    assert!(sm.workflow("kept").is_none(), "purged, and out of memory");
    assert_eq!(sm.resident_workflows(), 1);
}

#[test]
fn pages_share_records_and_an_active_filter_reads_only_active_ones() {
    let mut sm = StateMachine::new();
    ok(&mut sm, &register(1, "ping_pong", 1));
    for i in 0..6 {
        ok(&mut sm, &start(&format!("w{i}"), "ping_pong", 1, 1));
    }
    for i in [0, 2, 4] {
        ok(&mut sm, &finish(&format!("w{i}"), 1));
    }
    let running = PageFilter {
        status: Some(WorkflowStatus::Running),
        name: None,
        sleeping: false,
        parent: None,
    };
    let (page, more) = sm.page("", &running, 2);
    let ids: Vec<&str> = page.iter().map(|w| w.id.as_str()).collect();
    assert_eq!((ids, more), (vec!["w1", "w3"], true));
    let (page, more) = sm.page("w3", &running, 2);
    assert_eq!(page.len(), 1);
    assert_eq!((page[0].id.as_str(), more), ("w5", false));
    // The page holds the state's records, not copies of their histories.
    assert!(Arc::ptr_eq(&page[0], &sm.workflow("w5").unwrap()));
    let (all, more) = sm.page("", &PageFilter::default(), 10);
    assert_eq!((all.len(), more), (6, false));
}

#[test]
fn pages_merge_memory_and_the_archive_in_id_order_through_its_indexes() {
    let mut sm = StateMachine::new();
    ok(&mut sm, &register(1, "a", 1));
    ok(&mut sm, &register(1, "b", 1));
    // Archived: a0 a2 b4 (finished); then in memory: a1 (finished), a3 b5
    // (running).
    for (id, name) in [("a0", "a"), ("a2", "a"), ("b4", "b")] {
        ok(&mut sm, &start(id, name, 1, 1));
        ok(&mut sm, &finish(id, 1));
    }
    flush_now(&mut sm);
    for (id, name) in [("a1", "a"), ("a3", "a"), ("b5", "b")] {
        ok(&mut sm, &start(id, name, 1, 1));
    }
    ok(&mut sm, &finish("a1", 1));
    let list = |after: &str, filter: PageFilter<'_>, size| {
        let (page, more) = sm.page(after, &filter, size);
        (page.iter().map(|w| w.id.clone()).collect::<Vec<_>>(), more)
    };
    let all = PageFilter::default();
    assert_eq!(
        list("", all, 4),
        (
            vec!["a0".into(), "a1".into(), "a2".into(), "a3".into()],
            true
        )
    );
    assert_eq!(list("a3", all, 4), (vec!["b4".into(), "b5".into()], false));
    let named_a = PageFilter {
        name: Some("a"),
        status: None,
        sleeping: false,
        parent: None,
    };
    assert_eq!(
        list("a1", named_a, 10),
        (vec!["a2".into(), "a3".into()], false)
    );
    let completed = PageFilter {
        status: Some(WorkflowStatus::Completed),
        name: None,
        sleeping: false,
        parent: None,
    };
    assert_eq!(list("", completed, 10).0, vec!["a0", "a1", "a2", "b4"]);
    let completed_b = PageFilter {
        status: Some(WorkflowStatus::Completed),
        name: Some("b"),
        sleeping: false,
        parent: None,
    };
    assert_eq!(list("", completed_b, 10), (vec!["b4".into()], false));
}

/// Issue 24, defect 1: a workflow that finishes after a purge, stamped by a
/// proposer whose clock is behind the purge's cut-off, must look the same
/// on a replica that flushed it to its store and on one that did not.
#[test]
fn a_finish_stamped_before_an_applied_purge_reads_alike_on_every_replica() {
    let at = |ms: u64, mut c: Command| {
        c.proposed_at_ms = ms;
        c
    };
    let purge = |cutoff: u64| {
        cmd(Kind::PurgeFinished(PurgeFinished {
            finished_before_ms: cutoff,
        }))
    };
    let commands = [
        at(10_000, register(1, "ping_pong", 1)),
        at(10_000, start("w1", "ping_pong", 1, 1)),
        // The leader purges up to 5 s...
        at(10_000, purge(5_000)),
        // ...then the owner, its clock 9 s behind, finishes w1.
        at(1_000, finish("w1", 1)),
    ];
    let (mut flushed, mut in_memory) = (StateMachine::new(), StateMachine::new());
    for command in &commands {
        let a = flushed.apply(command).0;
        let b = in_memory.apply(command).0;
        assert_eq!(a, b, "{command:?}");
    }
    flush_now(&mut flushed);
    for (name, sm) in [("flushed", &flushed), ("in memory", &in_memory)] {
        let w1 = sm
            .workflow("w1")
            .unwrap_or_else(|| panic!("{name}: the finished workflow is gone"));
        assert_eq!(w1.status, WorkflowStatus::Completed, "{name}");
        assert!(
            w1.updated_at_ms >= sm.purged_before_ms(),
            "{name}: finished at {} before the purge's cut-off {}",
            w1.updated_at_ms,
            sm.purged_before_ms()
        );
        assert_eq!(sm.count(WorkflowStatus::Completed), 1, "{name}");
    }
    // A client's retried start of the same id is a no-op on both.
    let retry = at(10_500, start("w1", "ping_pong", 1, 1));
    for sm in [&mut flushed, &mut in_memory] {
        assert!(matches!(
            sm.apply(&retry).0,
            Ok(Applied::Started {
                already_started: true,
                ..
            })
        ));
    }
    let restored = StateMachine::restore(&flushed.snapshot(), 5).unwrap();
    assert_eq!(restored.log_time_ms(), 10_500);
    assert!(restored.workflow("w1").is_some());
}

/// A purge whose cut-off is ahead of the log's own time (a leader whose
/// clock jumped) removes only what the log has reached.
#[test]
fn a_purge_ahead_of_the_log_s_time_is_clamped_to_it() {
    let mut sm = StateMachine::new();
    ok(&mut sm, &register(1, "ping_pong", 1));
    for (id, finished_at) in [("old", 2_000), ("recent", 9_000)] {
        let mut s = start(id, "ping_pong", 1, 1);
        s.proposed_at_ms = finished_at;
        ok(&mut sm, &s);
        let mut f = finish(id, 1);
        f.proposed_at_ms = finished_at;
        ok(&mut sm, &f);
    }
    // Proposed with a stamp the log has not reached and a cut-off past it.
    let mut purge = cmd(Kind::PurgeFinished(PurgeFinished {
        finished_before_ms: 50_000,
    }));
    purge.proposed_at_ms = 5_000;
    assert_eq!(sm.apply(&purge).0, Ok(Applied::Purged(1)));
    assert_eq!(sm.purged_before_ms(), 9_000);
    assert!(sm.workflow("old").is_none());
    assert!(
        sm.workflow("recent").is_some(),
        "finished at the log's time"
    );
    // Time never runs backwards: a later entry stamped earlier applies at
    // the log's time.
    let mut s = start("late", "ping_pong", 1, 1);
    s.proposed_at_ms = 100;
    ok(&mut sm, &s);
    assert_eq!(sm.workflow("late").unwrap().created_at_ms, 9_000);
}

/// Issue 24, defect 4: a retention backlog is purged in bounded chunks,
/// each one log entry, so no apply walks the whole backlog at once.
#[test]
fn a_purge_backlog_goes_in_bounded_chunks() {
    let mut sm = StateMachine::new();
    ok(&mut sm, &register(1, "ping_pong", 1));
    // 25 finished workflows, one per millisecond, half of them flushed to
    // the store, and three more in one millisecond.
    let finish_at = |sm: &mut StateMachine, id: &str, at: u64| {
        let mut s = start(id, "ping_pong", 1, 1);
        s.proposed_at_ms = at;
        ok(sm, &s);
        let mut f = finish(id, 1);
        f.proposed_at_ms = at;
        ok(sm, &f);
    };
    for i in 0..12u64 {
        finish_at(&mut sm, &format!("a{i:02}"), 1_000 + i);
    }
    flush_now(&mut sm);
    for i in 12..25u64 {
        finish_at(&mut sm, &format!("a{i:02}"), 1_000 + i);
    }
    for id in ["t1", "t2", "t3"] {
        finish_at(&mut sm, id, 2_000);
    }
    let wanted = 10_000;
    let mut purged = Vec::new();
    while sm.oldest_finished_ms().is_some_and(|at| at < wanted) {
        let cutoff = sm.purge_cutoff(wanted, 10);
        let mut purge = cmd(Kind::PurgeFinished(PurgeFinished {
            finished_before_ms: cutoff,
        }));
        purge.proposed_at_ms = wanted;
        let (outcome, _) = sm.apply(&purge);
        let Ok(Applied::Purged(n)) = outcome else {
            panic!("{outcome:?}");
        };
        assert!(n <= 10, "a chunk of {n}");
        purged.push(n);
        assert!(purged.len() < 10, "no progress: {purged:?}");
    }
    assert_eq!(purged.iter().sum::<u64>(), 28, "{purged:?}");
    assert!(purged.len() >= 3, "{purged:?}");
    // Three in one millisecond, with a chunk of two: that millisecond whole.
    let mut sm = StateMachine::new();
    ok(&mut sm, &register(1, "ping_pong", 1));
    for id in ["t1", "t2", "t3"] {
        finish_at(&mut sm, id, 2_000);
    }
    assert_eq!(sm.purge_cutoff(wanted, 2), 2_001);
    assert_eq!(
        sm.purge_cutoff(1_500, 2),
        1_500,
        "never past the wanted cut-off"
    );
    // Fewer than a chunk: no further than the newest one seen, or those
    // finishing while the purge is in flight (behind a leader clock far
    // ahead) would join it, however many. Found by the simulation.
    assert_eq!(sm.purge_cutoff(3_600_000, 10), 2_001);
}

/// Issue 24, defect 3: promoting a restored store removes the older
/// stores, not the file of a restore of a later snapshot under way.
#[test]
fn promoting_a_store_leaves_a_newer_restore_s_file_alone() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    drop(Archive::open_dir(dir.path()).unwrap());
    let mut restored = Archive::create_for_snapshot(Some(dir.path()), 7).unwrap();
    let newer = Archive::create_for_snapshot(Some(dir.path()), 9).unwrap();
    restored.promote().unwrap();
    let mut left: Vec<String> = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["7.redb", "9.redb.tmp"]);
    drop(newer);
}
