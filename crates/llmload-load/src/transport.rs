//! The engine's [`Transport`] over the OpenAI-compatible client.

use std::future::Future;
use std::time::Instant;

use llmload_client::{Client, Outcome};
use llmload_core::RequestSpec;
use tokio_util::sync::CancellationToken;

use crate::engine::{Sent, Transport};

impl Transport for Client {
    fn send<'a>(
        &'a self,
        spec: &'a RequestSpec,
        epoch: Instant,
        cancel: &'a CancellationToken,
    ) -> impl Future<Output = Sent> + Send + 'a {
        async move {
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
        }
    }
}
