//! The engine's [`Transport`] over the OpenAI-compatible client.

use std::time::Instant;

use llmload_client::{Client, Outcome, Prepared};
use llmload_core::RequestSpec;
use tokio_util::sync::CancellationToken;

use crate::engine::{Sent, Transport};

impl Transport for Client {
    type Ready = Prepared;

    fn prepare(&self, spec: RequestSpec) -> Prepared {
        Client::prepare(self, spec)
    }

    fn spec(ready: &Prepared) -> &RequestSpec {
        &ready.spec
    }

    async fn send(&self, ready: &Prepared, epoch: Instant, cancel: &CancellationToken) -> Sent {
        let Outcome {
            record,
            gaps,
            answer,
        } = self.send_prepared(ready, epoch, cancel).await;
        Sent {
            record,
            gaps,
            answer,
        }
    }
}
