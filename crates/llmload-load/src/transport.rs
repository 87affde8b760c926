//! The engine's [`Transport`] over the OpenAI-compatible client.

use std::time::Instant;

use llmload_client::{Client, Outcome};
use llmload_core::RequestSpec;
use tokio_util::sync::CancellationToken;

use crate::engine::{BoxFuture, Sent, Transport};

impl Transport for Client {
    fn send<'a>(
        &'a self,
        spec: &'a RequestSpec,
        epoch: Instant,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, Sent> {
        Box::pin(async move {
            let Outcome {
                record,
                gaps,
                answer,
            } = Client::send(self, spec, epoch, cancel).await;
            Sent {
                record,
                gaps,
                answer,
            }
        })
    }
}
