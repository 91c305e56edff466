//! The shape every decision-path layer shares: a `Foo<S>` service with
//! `Foo::layer(shared)`, which hands each request to an async function together with the
//! inner service. Written once here as a macro so each layer's module holds only its logic.

use std::convert::Infallible;

use http::{Request, Response};
use tower::Service;

use crate::body::ProxyBody;

/// What a decision-path layer wraps: the rest of the stack, answering every request with
/// a response (refusals included).
pub trait Inner:
    Service<
        Request<ProxyBody>,
        Response = Response<ProxyBody>,
        Error = Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
}

impl<S> Inner for S where
    S: Service<
            Request<ProxyBody>,
            Response = Response<ProxyBody>,
            Error = Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static
{
}

/// `stage! { /// docs  Name, handler }` defines `Name<S>`, its `layer`, and a `Service`
/// impl that calls `handler(shared, request, inner).await`.
macro_rules! stage {
    ($(#[$doc:meta])* $name:ident, $handler:path) => {
        $(#[$doc])*
        #[derive(Clone, Debug)]
        pub struct $name<S> {
            inner: S,
            shared: std::sync::Arc<crate::context::Shared>,
        }

        impl<S> $name<S> {
            /// The layer.
            pub fn layer(
                shared: std::sync::Arc<crate::context::Shared>,
            ) -> impl tower::Layer<S, Service = Self> + Clone {
                tower::layer::layer_fn(move |inner| Self {
                    inner,
                    shared: shared.clone(),
                })
            }
        }

        impl<S: crate::stage::Inner> tower::Service<http::Request<crate::body::ProxyBody>> for $name<S> {
            type Response = http::Response<crate::body::ProxyBody>;
            type Error = std::convert::Infallible;
            type Future = crate::seams::BoxFuture<'static, Result<Self::Response, Self::Error>>;

            fn poll_ready(
                &mut self,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<Result<(), Self::Error>> {
                self.inner.poll_ready(cx)
            }

            fn call(&mut self, req: http::Request<crate::body::ProxyBody>) -> Self::Future {
                // The ready clone goes with the request; a fresh clone waits for the next.
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                Box::pin($handler(self.shared.clone(), req, inner))
            }
        }
    };
}

pub(crate) use stage;
