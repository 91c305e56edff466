//! The request path, assembled in one place.

use std::convert::Infallible;
use std::sync::Arc;

use http::{Request, Response};
use tower::{Service, ServiceBuilder};

use crate::authenticate::Authenticate;
use crate::authorize::Authorize;
use crate::body::ProxyBody;
use crate::classify::Classify;
use crate::context::Shared;
use crate::forward::Forward;
use crate::record::Record;
use crate::resign::Resign;

/// The whole request path as one tower service: every response, including refusals, is
/// an AWS-shaped HTTP response, so the error type is `Infallible`.
pub fn request_path(
    shared: Arc<Shared>,
) -> impl Service<Request<ProxyBody>, Response = Response<ProxyBody>, Error = Infallible, Future: Send>
+ Clone
+ Send
+ 'static {
    ServiceBuilder::new()
        // Who is asking: the signature, checked with the secret of the grant it names.
        .layer(Authenticate::layer(shared.clone()))
        // What the request does, from the service models; unclassifiable means denied.
        .layer(Classify::layer(shared.clone()))
        // Whether the grant allows it: deny by default, explicit deny wins.
        .layer(Authorize::layer(shared.clone()))
        // Evidence before action: the decision is durable before anything is forwarded.
        .layer(Record::layer(shared.clone()))
        // Scoped credentials and the configured upstream; the body verified as it streams.
        .layer(Resign::layer(shared))
        .service(Forward::new())
}
