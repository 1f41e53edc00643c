//! Pages of workflows for `ListWorkflows`: memory and the archive merged
//! in id order, the archive read through its indexes by name and status.

use std::sync::Arc;

use raftoral_proto::sidecar::v1::WorkflowStatus;

use super::StateMachine;
use super::workflow::{Workflow, is_terminal};

/// What [`StateMachine::page`] lists.
#[derive(Debug, Default, Clone, Copy)]
pub struct PageFilter<'a> {
    /// Only this status.
    pub status: Option<WorkflowStatus>,
    /// Only this workflow type name.
    pub name: Option<&'a str>,
    /// Only workflows waiting on a durable timer.
    pub sleeping: bool,
    /// Only the children this workflow started.
    pub parent: Option<&'a str>,
}

impl StateMachine {
    /// Up to `size` workflows with ids after `after` that match `filter`,
    /// ordered by id, and whether more follow. The archive is read through
    /// its indexes (by name, by status), never scanned; a filter on PENDING
    /// or RUNNING reads only the active index.
    pub fn page(
        &self,
        after: &str,
        filter: &PageFilter<'_>,
        size: usize,
    ) -> (Vec<Arc<Workflow>>, bool) {
        use std::ops::Bound;
        let range = (Bound::Excluded(after), Bound::Unbounded);
        let keep = |w: &Workflow| {
            filter.status.is_none_or(|s| w.status == s)
                && filter.name.is_none_or(|n| w.name == n)
                && (!filter.sleeping || w.open_timers().next().is_some())
        };
        if let Some(parent) = filter.parent {
            // A parent's history names its children: read those, not the
            // whole state.
            let mut ids: Vec<String> = self.workflow(parent).map_or_else(Vec::new, |p| {
                p.checkpoints
                    .iter()
                    .filter(|e| {
                        e.kind == raftoral_proto::sidecar::v1::HistoryEntryKind::ChildStarted
                    })
                    .map(|e| String::from_utf8_lossy(&e.value).into_owned())
                    .filter(|id| id.as_str() > after)
                    .collect()
            });
            ids.sort();
            let mut page: Vec<Arc<Workflow>> = ids
                .iter()
                .filter_map(|id| self.workflow(id))
                .filter(|w| keep(w) && w.parent.as_ref().is_some_and(|l| l.workflow_id == parent))
                .take(size + 1)
                .collect();
            let more = page.len() > size;
            page.truncate(size);
            return (page, more);
        }
        // Finished workflows have no timers: a sleeping filter reads only
        // the active index.
        let active_only = filter.sleeping || filter.status.is_some_and(|s| !is_terminal(s));
        let mut matching: Box<dyn Iterator<Item = &Arc<Workflow>>> = if active_only {
            Box::new(
                self.active
                    .range::<str, _>(range)
                    .filter_map(|id| self.workflows.get(id)),
            )
        } else {
            Box::new(self.workflows.range::<_, str>(range).map(|(_, w)| w))
        };
        let memory: Vec<Arc<Workflow>> = matching
            .by_ref()
            .filter(|w| keep(w))
            .take(size + 1)
            .cloned()
            .collect();
        let archived = if active_only {
            Vec::new()
        } else {
            self.archived_page(after, filter, size + 1)
        };
        let mut merged = Vec::with_capacity(size + 1);
        let (mut m, mut a) = (
            memory.into_iter().peekable(),
            archived.into_iter().peekable(),
        );
        while merged.len() <= size {
            let next = match (m.peek(), a.peek()) {
                (Some(x), Some(y)) if y.id < x.id => a.next(),
                (Some(_), _) => m.next(),
                (None, Some(_)) => a.next(),
                (None, None) => break,
            };
            merged.extend(next);
        }
        let more = merged.len() > size;
        merged.truncate(size);
        (merged, more)
    }

    /// Up to `want` archived workflows after `after` matching `filter`
    /// that are not in memory (those are listed from memory) and were not
    /// purged since the last flush.
    fn archived_page(
        &self,
        after: &str,
        filter: &PageFilter<'_>,
        want: usize,
    ) -> Vec<Arc<Workflow>> {
        let mut out = Vec::new();
        let mut cursor = after.to_owned();
        let status = filter.status.map(|s| s as i32);
        while out.len() < want {
            let ids = match self.archive.ids_after(&cursor, filter.name, status, want) {
                Ok(ids) => ids,
                Err(e) => {
                    self.archive_failed(e);
                    break;
                }
            };
            let Some(last) = ids.last().cloned() else {
                break;
            };
            let full = ids.len() == want;
            for id in ids {
                if !self.workflows.contains_key(&id)
                    && let Some(w) = self.archived(&id)
                {
                    out.push(Arc::new(w));
                }
            }
            if !full {
                break;
            }
            cursor = last;
        }
        out.truncate(want);
        out
    }
}
