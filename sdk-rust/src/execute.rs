//! Client conveniences: start a workflow and wait for its result in one
//! call, and list workflows as a stream that pages by itself.

use futures::Stream;
use raftoral_proto::sidecar::v1::{ListWorkflowsRequest, WorkflowInfo};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::client::RaftoralClient;
use crate::error::ClientError;
use crate::start_options::StartOptions;

impl RaftoralClient {
    /// Starts workflow `workflow_name` with `input` and `options` and waits
    /// for its result: [`start_workflow_with`](Self::start_workflow_with)
    /// then the handle's result. With an id in `options`, a call retried
    /// after a lost answer waits for the same workflow.
    ///
    /// ```no_run
    /// # async fn f(client: raftoral_client::RaftoralClient) -> Result<(), raftoral_client::ClientError> {
    /// let pong: String = client
    ///     .execute_workflow("ping_pong", 1, &"ping", &Default::default())
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn execute_workflow<I, T>(
        &self,
        workflow_name: &str,
        version: u32,
        input: &I,
        options: &StartOptions,
    ) -> Result<T, ClientError>
    where
        I: Serialize + ?Sized,
        T: DeserializeOwned,
    {
        self.start_workflow_with(workflow_name, version, input, options)
            .await?
            .result()
            .await
    }

    /// Every workflow `filter` matches (its `page_token` is where to
    /// start), fetched a page at a time as the stream is read.
    ///
    /// ```no_run
    /// # async fn f(client: raftoral_client::RaftoralClient) -> Result<(), raftoral_client::ClientError> {
    /// use futures::TryStreamExt;
    /// use raftoral_client::proto::sidecar::v1::ListWorkflowsRequest;
    /// let children: Vec<_> = client
    ///     .workflows(ListWorkflowsRequest { parent_id: "order-42".into(), ..Default::default() })
    ///     .try_collect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn workflows(
        &self,
        filter: ListWorkflowsRequest,
    ) -> impl Stream<Item = Result<WorkflowInfo, ClientError>> + '_ {
        let state = (Vec::<WorkflowInfo>::new().into_iter(), Some(filter));
        futures::stream::unfold(state, move |(mut page, mut next)| async move {
            loop {
                if let Some(info) = page.next() {
                    return Some((Ok(info), (page, next)));
                }
                let request = next.take()?;
                match self.list_workflows(request.clone()).await {
                    Ok(r) => {
                        page = r.workflows.into_iter();
                        if !r.next_page_token.is_empty() {
                            next = Some(ListWorkflowsRequest {
                                page_token: r.next_page_token,
                                ..request
                            });
                        }
                    }
                    Err(e) => return Some((Err(e), (page, None))),
                }
            }
        })
    }
}
