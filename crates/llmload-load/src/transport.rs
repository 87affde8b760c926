//! The engine's [`Transport`] over the OpenAI-compatible client.

use std::any::Any;
use std::time::Instant;

use llmload_client::{Client, Outcome, Pending, Prepared};
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

    async fn send(
        &self,
        ready: &Prepared,
        epoch: Instant,
        cancel: &CancellationToken,
        settle_later: bool,
    ) -> Sent {
        let Outcome {
            record,
            gaps,
            answer,
            pending,
        } = if settle_later {
            self.send_prepared_unsettled(ready, epoch, cancel).await
        } else {
            self.send_prepared(ready, epoch, cancel).await
        };
        Sent {
            record,
            gaps,
            answer,
            pending: pending.map(|p| p as Box<dyn Any + Send>),
        }
    }

    fn settle(&self, sent: &mut Sent) {
        let Some(pending) = sent.pending.take() else {
            return;
        };
        if let Ok(p) = pending.downcast::<Pending>() {
            self.settle_into(&mut sent.record, *p);
        }
    }
}
