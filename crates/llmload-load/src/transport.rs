//! The engine's [`Transport`] over the OpenAI-compatible client.

use std::time::Instant;

use llmload_client::{Client, Outcome};
use llmload_core::RequestSpec;
use tokio_util::sync::CancellationToken;

use crate::engine::{Sent, Transport};

impl Transport for Client {
    async fn send(&self, spec: &RequestSpec, epoch: Instant, cancel: &CancellationToken) -> Sent {
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
