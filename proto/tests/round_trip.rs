//! Every message survives encode → decode unchanged, with every field set, so
//! a field that the generator dropped or mistyped shows up here.

use prost::Message;
use raftoral_proto::cluster::v1 as cluster;
use raftoral_proto::sidecar::v1 as sidecar;

fn round_trip<M: Message + Default + PartialEq + std::fmt::Debug>(m: M) {
    let bytes = m.encode_to_vec();
    assert!(
        !bytes.is_empty(),
        "{m:?} encodes to nothing: a field is missing"
    );
    assert_eq!(M::decode(bytes.as_slice()).expect("decode"), m);
}

fn failure() -> sidecar::Failure {
    sidecar::Failure {
        r#type: "T".into(),
        message: "m".into(),
        details_json: "{}".into(),
        non_retryable: true,
        stack: "s".into(),
    }
}

fn info() -> sidecar::WorkflowInfo {
    sidecar::WorkflowInfo {
        workflow_id: "w".into(),
        workflow_name: "n".into(),
        version: 2,
        status: sidecar::WorkflowStatus::Running as i32,
        owner_node_id: 3,
        checkpoint_count: 4,
        input: "i".into(),
        result: "r".into(),
        error: "e".into(),
        pending_reason: "p".into(),
        created_at_ms: 5,
        updated_at_ms: 6,
        history_length: 7,
        failure: Some(failure()),
        pending_timers: vec![sidecar::PendingTimer {
            seq: 8,
            name: "nap".into(),
            fire_at_ms: 9,
        }],
        start_at_ms: 10,
        timeout_at_ms: 11,
        cancel_reason: "c".into(),
        cancel_deadline_ms: 12,
        inbox_size: 2,
        event_waits: vec![sidecar::EventWait {
            seq: 3,
            name: "approval".into(),
            timeout_at_ms: 13,
        }],
        parent_id: "p".into(),
        parent_seq: 14,
        parent_close: sidecar::ParentClosePolicy::Abandon as i32,
        open_children: vec!["w/1".into()],
    }
}

fn child() -> sidecar::ChildStart {
    sidecar::ChildStart {
        workflow_name: "ship".into(),
        version: 1,
        input: "i".into(),
        workflow_id: "w/9".into(),
        parent_close: sidecar::ParentClosePolicy::Terminate as i32,
    }
}

#[test]
fn app_stream_messages() {
    use sidecar::workflow_stream_request::Message as A;
    use sidecar::workflow_stream_response::Message as S;
    let requests = [
        A::RegisterWorkflow(sidecar::RegisterWorkflowRequest {
            workflow_name: "n".into(),
            version: 1,
            held_runs: vec![sidecar::HeldRun {
                workflow_id: "w".into(),
                checkpoints: 3,
            }],
            protocol_version: 2,
        }),
        A::CheckpointProposal(sidecar::CheckpointProposal {
            workflow_id: "w".into(),
            seq: 9,
            checkpoint_name: "c".into(),
            value: "v".into(),
            kind: sidecar::HistoryEntryKind::StepAttemptFailed as i32,
            failure: Some(failure()),
            attempt: 2,
            retry_delay_ms: 1000,
            timer_duration_ms: 7,
            child: Some(child()),
        }),
        A::WorkflowResult(sidecar::WorkflowResult {
            workflow_id: "w".into(),
            success: true,
            result: "r".into(),
            error: "e".into(),
            failure: Some(failure()),
        }),
        A::Heartbeat(sidecar::HeartbeatRequest { timestamp: 7 }),
    ];
    for m in requests {
        round_trip(sidecar::WorkflowStreamRequest { message: Some(m) });
    }
    let responses = [
        S::ExecuteWorkflow(sidecar::ExecuteWorkflowRequest {
            workflow_id: "w".into(),
            workflow_name: "n".into(),
            version: 1,
            input: "i".into(),
            is_owner: true,
            history: vec![sidecar::CheckpointRecord {
                seq: 2,
                checkpoint_name: "c".into(),
                value: "v".into(),
                kind: sidecar::HistoryEntryKind::StepFailed as i32,
                failure: Some(failure()),
                attempt: 3,
                next_attempt_at_ms: 11,
                committed_at_ms: 10,
                fire_at_ms: 13,
            }],
            history_start: 2,
            random_seed: 0x5eed,
        }),
        S::CheckpointEvent(sidecar::CheckpointEvent {
            workflow_id: "w".into(),
            seq: 1,
            checkpoint_name: "c".into(),
            value: "v".into(),
            kind: sidecar::HistoryEntryKind::StepAttemptFailed as i32,
            failure: Some(failure()),
            attempt: 1,
            next_attempt_at_ms: 12,
            committed_at_ms: 10,
            history_index: 5,
            fire_at_ms: 14,
        }),
        S::WorkflowCancellation(sidecar::WorkflowCancellation {
            workflow_id: "w".into(),
            reason: "r".into(),
            requested: true,
            cleanup_until_ms: 9,
        }),
        S::HeartbeatResponse(sidecar::HeartbeatResponse { timestamp: 8 }),
        S::OwnershipChange(sidecar::OwnershipChange {
            workflow_id: "w".into(),
            is_owner: true,
        }),
        S::RegistrationAck(sidecar::RegistrationAck {
            workflow_name: "n".into(),
            version: 3,
            heartbeat_interval_ms: 1250,
        }),
        S::Error(sidecar::StreamError {
            code: sidecar::ErrorCode::UnexpectedSeq as i32,
            message: "m".into(),
            workflow_id: "w".into(),
            seq: 4,
            subject: sidecar::StreamErrorSubject::CheckpointProposal as i32,
        }),
    ];
    for m in responses {
        round_trip(sidecar::WorkflowStreamResponse { message: Some(m) });
    }
}

#[test]
fn client_api_messages() {
    round_trip(info());
    round_trip(sidecar::StartWorkflowRequest {
        workflow_id: "w".into(),
        workflow_name: "n".into(),
        version: 1,
        input: "i".into(),
        start_delay_ms: 2,
        execution_timeout_ms: 3,
    });
    round_trip(sidecar::StartWorkflowResponse {
        workflow: Some(info()),
        already_started: true,
    });
    round_trip(sidecar::GetWorkflowRequest {
        workflow_id: "w".into(),
    });
    round_trip(sidecar::GetWorkflowResponse {
        workflow: Some(info()),
    });
    round_trip(sidecar::WaitWorkflowRequest {
        workflow_id: "w".into(),
        timeout: Some(prost_types::Duration {
            seconds: 3,
            nanos: 5,
        }),
    });
    round_trip(sidecar::WaitWorkflowResponse {
        workflow: Some(info()),
    });
    round_trip(sidecar::CancelWorkflowRequest {
        workflow_id: "w".into(),
        reason: "r".into(),
        cleanup_ms: Some(0),
    });
    round_trip(sidecar::CancelWorkflowResponse {
        workflow: Some(info()),
    });
    round_trip(sidecar::ListWorkflowsRequest {
        status: sidecar::WorkflowStatus::Failed as i32,
        workflow_name: "n".into(),
        page_size: 10,
        page_token: "t".into(),
        sleeping: true,
        parent_id: "p".into(),
    });
    round_trip(sidecar::ListWorkflowsResponse {
        workflows: vec![info(), info()],
        next_page_token: "t".into(),
    });
    round_trip(sidecar::GetWorkflowHistoryRequest {
        workflow_id: "w".into(),
    });
    round_trip(sidecar::GetWorkflowHistoryResponse {
        entries: vec![sidecar::HistoryEntry {
            seq: 1,
            checkpoint_name: "c".into(),
            value: "v".into(),
            committed_at_ms: 2,
            kind: sidecar::HistoryEntryKind::StepAttemptFailed as i32,
            failure: Some(failure()),
            attempt: 1,
            next_attempt_at_ms: 3,
            fire_at_ms: 4,
        }],
    });
}

#[test]
fn log_commands() {
    use cluster::command::Kind;
    let kinds = [
        Kind::RegisterWorker(cluster::RegisterWorker {
            node_id: 1,
            workflow_name: "n".into(),
            version: 2,
        }),
        Kind::StartWorkflow(cluster::StartWorkflow {
            workflow_id: "w".into(),
            workflow_name: "n".into(),
            version: 1,
            input: "i".into(),
            origin_node_id: 3,
            start_delay_ms: 4,
            execution_timeout_ms: 5,
            signal: Some(Box::new(cluster::SendEvent {
                workflow_id: "w".into(),
                name: "e".into(),
                payload: "p".into(),
                idempotency_key: "k".into(),
                failure: None,
            })),
        }),
        Kind::RecordCheckpoint(cluster::RecordCheckpoint {
            workflow_id: "w".into(),
            seq: 4,
            checkpoint_name: "c".into(),
            value: "v".into(),
            node_id: 5,
        }),
        Kind::FinishWorkflow(cluster::FinishWorkflow {
            workflow_id: "w".into(),
            node_id: 1,
            success: false,
            result: "r".into(),
            error: "e".into(),
            failure: Some(failure()),
        }),
        Kind::RecordStep(cluster::RecordStep {
            workflow_id: "w".into(),
            seq: 4,
            checkpoint_name: "c".into(),
            node_id: 5,
            kind: sidecar::HistoryEntryKind::StepFailed as i32,
            value: "v".into(),
            failure: Some(failure()),
            attempt: 2,
            retry_delay_ms: 6,
            timer_duration_ms: 7,
            child: Some(Box::new(child())),
        }),
        Kind::FireTimers(cluster::FireTimers {
            timers: vec![cluster::TimerRef {
                workflow_id: "w".into(),
                seq: 3,
                kind: cluster::TimerKind::ExecutionTimeout as i32,
            }],
        }),
        Kind::SetWorkerPresence(cluster::SetWorkerPresence {
            node_id: 1,
            present: true,
            live: vec![cluster::WorkflowType {
                workflow_name: "n".into(),
                version: 1,
            }],
            command_level: 2,
        }),
        Kind::CancelWorkflow(cluster::CancelWorkflow {
            workflow_id: "w".into(),
            reason: "r".into(),
            cleanup_ms: 30_000,
        }),
    ];
    for kind in kinds {
        round_trip(cluster::Command {
            proposer_node_id: 1,
            proposal_id: 2,
            proposed_at_ms: 3,
            kind: Some(kind),
        });
    }
}

#[test]
fn unknown_enum_values_survive_and_map_to_unspecified_safely() {
    let m = sidecar::StreamError {
        code: 999,
        ..Default::default()
    };
    let back = sidecar::StreamError::decode(m.encode_to_vec().as_slice()).unwrap();
    assert_eq!(back.code, 999);
    // The typed accessor falls back to the default instead of panicking.
    assert_eq!(back.code(), sidecar::ErrorCode::Unspecified);
}
