//! List + watch of one kind of Kubernetes object, kept as a local copy.
//!
//! The loop is the API server's own protocol, written out so every failure
//! has a visible answer: list (which returns a resourceVersion), watch from
//! that version, apply events, follow bookmarks, and:
//! - a watch that ends (the server's timeout) is reopened from the last
//!   version seen;
//! - `410 Gone` (the version was compacted away) means relist;
//! - any other error (API server unreachable, connection cut) marks the copy
//!   stale and retries with exponential backoff; the copy is kept, so the
//!   cluster goes on with what it knew;
//! - `403 Forbidden` logs an error naming the verb and resource the
//!   service account lacks;
//! - a watch that stays silent past its timeout (a half-open connection:
//!   the server or a proxy stopped sending but the socket stays up) and a
//!   list or watch request that does not answer are cut, the copy marked
//!   stale, and the objects listed again: a copy is never older than
//!   [`SILENCE`] without being marked stale;
//! - on request ([`Relist`]) the objects are listed again, so a decision
//!   that would remove a member rests on a list made after the member was
//!   first missed, not on a watch that may have stalled.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::time::Duration;

use futures::{StreamExt as _, TryStreamExt as _};
use kube::api::{Api, ListParams, WatchEvent, WatchParams};
use kube::{Resource, ResourceExt as _};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

/// The local copy of the watched objects.
#[derive(Debug, Clone)]
pub struct Snapshot<K> {
    /// Objects by name.
    pub items: BTreeMap<String, K>,
    /// True while the copy follows the API server (listed, watch open);
    /// false after an error until the next successful list or watch.
    pub live: bool,
    /// Successful lists so far: a list counted after a moment saw the
    /// objects as they were after it.
    pub lists: u64,
}

impl<K> Default for Snapshot<K> {
    fn default() -> Self {
        Self {
            items: BTreeMap::new(),
            live: false,
            lists: 0,
        }
    }
}

/// Asks the watches given it to list their objects again (see the module
/// docs).
#[derive(Clone)]
pub struct Relist(std::sync::Arc<watch::Sender<u64>>);

impl Default for Relist {
    fn default() -> Self {
        Relist(std::sync::Arc::new(watch::channel(0).0))
    }
}

impl Relist {
    /// Every watch lists again soon (requests made before it did are one).
    pub fn request(&self) {
        self.0.send_modify(|n| *n += 1);
    }
}

/// What is watched, for messages: e.g. `pods` in group `` (core).
#[derive(Debug, Clone)]
pub struct Target {
    /// Plural resource name (`pods`, `endpointslices`).
    pub resource: &'static str,
    /// API group (`""` for core, `discovery.k8s.io`).
    pub group: &'static str,
    /// Namespace watched.
    pub namespace: String,
    /// Label selector, if any.
    pub labels: Option<String>,
}

impl Target {
    fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.resource.to_owned()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }
}

/// Shortest and longest wait between retries after an API error.
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Watches are reopened this often even when quiet (the server's timeout).
/// Short, so a silent connection is told from a quiet one quickly: a
/// re-watch from the last version costs the server next to nothing.
const WATCH_TIMEOUT_SECS: u32 = 15;
/// Longest a list or the opening of a watch may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest silence on an open watch: its timeout plus slack. Past it the
/// connection is taken for stalled.
pub const SILENCE: Duration = Duration::from_secs(WATCH_TIMEOUT_SECS as u64 + 10);

/// Starts following `target` through `api`; the receiver sees every change,
/// `relist` makes it list again. The task ends when `stop` turns true.
pub fn spawn<K>(
    api: Api<K>,
    target: Target,
    relist: Relist,
    mut stop: watch::Receiver<bool>,
) -> watch::Receiver<Snapshot<K>>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (tx, rx) = watch::channel(Snapshot::default());
    tokio::spawn(async move {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => {}
            _ = follow(api, target, relist, tx) => {}
        }
    });
    rx
}

/// Why one list or watch round ended.
enum Ended {
    /// The server's timeout closed the watch: reopen from the same version.
    Quietly,
    /// The version is gone (410): list again.
    Gone,
    /// An error: back off, then watch again (or list, if never listed).
    Failed,
    /// Silent past its timeout: the copy is stale; list again.
    Stalled,
    /// A relist was asked for.
    Relist,
}

async fn follow<K>(api: Api<K>, target: Target, relist: Relist, tx: watch::Sender<Snapshot<K>>)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let mut backoff = BACKOFF_MIN;
    let mut version: Option<String> = None;
    let mut asked = relist.0.subscribe();
    loop {
        let ended = match &version {
            None => list(&api, &target, &tx).await.map_or(Ended::Failed, |v| {
                version = Some(v);
                Ended::Quietly
            }),
            Some(v) => {
                tokio::select! {
                    ended = watch_from(&api, &target, &tx, v.clone(), &mut version) => ended,
                    Ok(()) = asked.changed() => Ended::Relist,
                }
            }
        };
        match ended {
            Ended::Quietly => backoff = BACKOFF_MIN,
            Ended::Gone => {
                tracing::info!(resource = %target.qualified(), "watch version expired (410 Gone); listing again");
                version = None;
            }
            Ended::Relist => {
                tracing::debug!(resource = %target.qualified(), "listing again on request");
                version = None;
            }
            Ended::Stalled => {
                tx.send_modify(|s| s.live = false);
                tracing::warn!(resource = %target.qualified(), silent_for = ?SILENCE, "the watch stayed silent past its timeout (a stalled connection); the copy is stale until a new list");
                version = None;
            }
            Ended::Failed => {
                tx.send_modify(|s| s.live = false);
                tracing::info!(resource = %target.qualified(), retry_in = ?backoff, "discovery keeps the last known pods and retries");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

async fn list<K>(api: &Api<K>, target: &Target, tx: &watch::Sender<Snapshot<K>>) -> Option<String>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let mut params = ListParams::default();
    if let Some(labels) = &target.labels {
        params = params.labels(labels);
    }
    let listed = match tokio::time::timeout(REQUEST_TIMEOUT, api.list(&params)).await {
        Ok(listed) => listed,
        Err(_) => {
            tracing::warn!(resource = %target.qualified(), timeout = ?REQUEST_TIMEOUT, "Kubernetes API list did not answer in time");
            return None;
        }
    };
    match listed {
        Ok(list) => {
            let items = list
                .items
                .into_iter()
                .map(|o| (o.name_any(), o))
                .collect::<BTreeMap<_, _>>();
            tracing::debug!(resource = %target.qualified(), count = items.len(), "listed");
            tx.send_modify(|s| {
                s.items = items;
                s.live = true;
                s.lists += 1;
            });
            Some(list.metadata.resource_version.unwrap_or_default())
        }
        Err(e) => {
            report(&e, "list", target);
            None
        }
    }
}

async fn watch_from<K>(
    api: &Api<K>,
    target: &Target,
    tx: &watch::Sender<Snapshot<K>>,
    from: String,
    version: &mut Option<String>,
) -> Ended
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let mut params = WatchParams::default().timeout(WATCH_TIMEOUT_SECS);
    if let Some(labels) = &target.labels {
        params = params.labels(labels);
    }
    let stream = match tokio::time::timeout(REQUEST_TIMEOUT, api.watch(&params, &from)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return ended_by(&e, "watch", target),
        Err(_) => return Ended::Stalled,
    };
    tx.send_modify(|s| s.live = true);
    let mut stream = stream.boxed();
    loop {
        let Ok(next) = tokio::time::timeout(SILENCE, stream.try_next()).await else {
            return Ended::Stalled;
        };
        match next {
            Ok(Some(event)) => match event {
                WatchEvent::Added(o) | WatchEvent::Modified(o) => {
                    *version = o.resource_version().or(version.take());
                    tx.send_modify(|s| {
                        s.items.insert(o.name_any(), o);
                        s.live = true;
                    });
                }
                WatchEvent::Deleted(o) => {
                    *version = o.resource_version().or(version.take());
                    tx.send_modify(|s| {
                        s.items.remove(&o.name_any());
                    });
                }
                WatchEvent::Bookmark(b) => {
                    *version = Some(b.metadata.resource_version);
                }
                WatchEvent::Error(status) if status.code == 410 => return Ended::Gone,
                WatchEvent::Error(status) => {
                    report(&kube::Error::Api(status), "watch", target);
                    return Ended::Failed;
                }
            },
            Ok(None) => return Ended::Quietly,
            Err(e) => return ended_by(&e, "watch", target),
        }
    }
}

fn ended_by(e: &kube::Error, verb: &str, target: &Target) -> Ended {
    if let kube::Error::Api(status) = e
        && status.code == 410
    {
        return Ended::Gone;
    }
    report(e, verb, target);
    Ended::Failed
}

/// Logs an API error; a 403 names what the service account is missing.
fn report(e: &kube::Error, verb: &str, target: &Target) {
    match e {
        kube::Error::Api(status) if status.code == 403 => tracing::error!(
            verb,
            resource = %target.qualified(),
            namespace = %target.namespace,
            "{}",
            forbidden_message(verb, target, &status.message)
        ),
        _ => {
            tracing::warn!(verb, resource = %target.qualified(), error = %e, "Kubernetes API request failed")
        }
    }
}

/// The one-line explanation of a 403.
pub fn forbidden_message(verb: &str, target: &Target, server: &str) -> String {
    format!(
        "Kubernetes RBAC denies '{verb}' on '{}' in namespace '{}' ({server}): give the pod's service account a Role with verbs get, list, watch on pods and endpointslices.discovery.k8s.io (k8s/base/rbac.yaml)",
        target.qualified(),
        target.namespace
    )
}
