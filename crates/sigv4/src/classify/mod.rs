//! Request classification: from a verified request to service, operation, IAM action(s),
//! resource ARNs and condition-key context.
//!
//! The routing data is generated from botocore's service models by
//! `crates/sigv4/tools/gen_classify_data.py` (one JSON file per service under
//! `crates/sigv4/data/`, embedded with `include_str!` and parsed once on first use).
//! Knowledge the models do not carry — IAM action names that differ from operation names,
//! how to build ARNs from input members, credential-minting actions — lives in
//! `data/overrides.json`; the few request-time rules that need code (S3 copy sources and
//! `versionId`, DynamoDB batch and transact bodies, SQS queue URLs, …) live in `handlers`.
//!
//! Anything this module cannot classify is an error, and the caller denies it: the
//! gateway never guesses an operation. Where the resource an operation acts on cannot be
//! known from the request, the resource is `*`, never a narrower guess.
//!
//! ```
//! use custody_sigv4::classify::{classify, ClassifyInput};
//! let headers = http::HeaderMap::new();
//! let input = ClassifyInput {
//!     method: &http::Method::GET,
//!     path: "/bucket/dir/key.txt",
//!     query: None,
//!     headers: &headers,
//!     body: None,
//!     signing_name: "s3",
//!     region: "us-east-1",
//!     account_id: "123456789012",
//! };
//! let c = classify(&input).unwrap();
//! assert_eq!(c.operation, "GetObject");
//! assert_eq!(c.actions[0].action, "s3:GetObject");
//! assert_eq!(c.actions[0].resources, ["arn:aws:s3:::bucket/dir/key.txt"]);
//! ```

use std::collections::BTreeMap;

mod data;
mod data_files;
mod dispatch;
mod handlers;
mod json;
mod members;
mod reading;
mod request;
mod resources;
mod route;
mod s3;

/// A verified request, as the proxy received it, to classify.
#[derive(Debug, Clone, Copy)]
pub struct ClassifyInput<'a> {
    /// HTTP method.
    pub method: &'a http::Method,
    /// Raw path as received, still percent-encoded (S3 keys are not normalised).
    pub path: &'a str,
    /// Raw query string without the leading `?`, if any.
    pub query: Option<&'a str>,
    /// Request headers.
    pub headers: &'a http::HeaderMap,
    /// The body, when the proxy buffered it (see [`needs_body`]); `None` for streamed
    /// bodies such as S3 object uploads.
    pub body: Option<&'a [u8]>,
    /// Signing name from the credential scope (`s3`, `sqs`, `dynamodb`, …).
    pub signing_name: &'a str,
    /// Region from the credential scope; used in ARNs.
    pub region: &'a str,
    /// Account for ARNs of resources named without an account: the account of the grant's role.
    pub account_id: &'a str,
}

/// What a request does, in IAM terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    /// Service name of the model (`s3`, `sqs`, `dynamodb`, …).
    pub service: String,
    /// Operation name from the service model (`GetObject`).
    pub operation: String,
    /// Wire protocol the request used.
    pub protocol: Protocol,
    /// Every IAM action the request needs, each on its resources. All must be allowed.
    pub actions: Vec<ActionOnResources>,
    /// The call mints credentials or tokens (`sts:AssumeRole`, `s3express:CreateSession`,
    /// an EKS token presign, …): deny unless a grant names the action explicitly.
    pub mints_credentials: bool,
    /// Condition-key values taken from the request (for example `s3:prefix`).
    pub context: BTreeMap<String, String>,
}

/// One IAM action and the resources it is evaluated against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionOnResources {
    /// IAM action, `<prefix>:<Name>` (for example `s3:GetObject`).
    pub action: String,
    /// Resource ARNs, or `*` when the action takes no resource or it cannot be known.
    pub resources: Vec<String>,
}

/// The wire protocol of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// AWS query: `Action=` in the query string or a form body (STS, SNS, legacy SQS).
    Query,
    /// AWS JSON 1.0/1.1: `X-Amz-Target: Prefix.Operation`.
    Json,
    /// REST with JSON bodies: method plus URI template (Lambda).
    RestJson,
    /// REST with XML bodies: method, URI template and query discriminators (S3).
    RestXml,
    /// EC2's dialect of the query protocol.
    Ec2,
}

/// Format of the error responses a client expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorFormat {
    /// XML `<ErrorResponse>` / `<Error>` (query, EC2, REST-XML).
    Xml,
    /// JSON `{"__type": …, "message": …}` (AWS JSON, REST-JSON).
    Json,
}

/// Why a request could not be classified. Every variant means: deny.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClassifyError {
    /// No allowlisted service signs with this name.
    #[error("cannot classify: no known service signs as `{signing_name}`")]
    UnknownService {
        /// The signing name from the credential scope.
        signing_name: String,
    },
    /// The request does not name an operation this service's data knows.
    #[error("cannot classify: unknown operation `{operation}` for service `{service}`")]
    UnknownOperation {
        /// Service name.
        service: String,
        /// The operation name as sent (or the request line for REST services).
        operation: String,
    },
    /// The request is not shaped like any request of the service.
    #[error("cannot classify `{service}` request: {reason}")]
    Unrecognised {
        /// Service name (or signing name).
        service: String,
        /// What is missing or wrong.
        reason: String,
    },
    /// The request matches more than one operation.
    #[error("cannot classify: request matches both `{first}` and `{second}`")]
    Ambiguous {
        /// One candidate.
        first: String,
        /// Another candidate.
        second: String,
    },
    /// A parameter or header that decides the operation or a resource appears twice;
    /// two parsers could disagree about it.
    #[error("cannot classify: duplicate parameter `{name}`")]
    DuplicateParameter {
        /// Parameter or header name.
        name: String,
    },
    /// A JSON object in the body repeats a key.
    #[error("cannot classify: duplicate json key `{key}` in the request body")]
    DuplicateJsonKey {
        /// The repeated key.
        key: String,
    },
    /// A member (JSON key, form parameter, header) the operation's input shape in the
    /// service model does not have: an upstream could honour it, this gateway cannot.
    #[error("cannot classify: `{member}` is not a member of `{operation}` ({model})")]
    UnknownMember {
        /// The member as sent (a JSON path, a form key, `header x-amz-…`).
        member: String,
        /// The operation the request otherwise matched.
        operation: String,
        /// The model it was judged by (`dynamodb 2012-08-10, botocore 1.43.11`).
        model: String,
    },
    /// The request could be read in more than one way by the upstream (a second
    /// operation selector, a path or content type the protocol does not use, a body
    /// where none belongs): refused rather than guessed.
    #[error("cannot classify `{service}` request: {reason}")]
    NotOneReading {
        /// Service name.
        service: String,
        /// What allows a second reading.
        reason: String,
    },
    /// A query parameter that could name a subresource this data does not know.
    #[error("cannot classify: unknown query parameter `{name}` for `{operation}`")]
    UnknownParameter {
        /// Parameter name.
        name: String,
        /// Operation the request otherwise matched.
        operation: String,
    },
    /// The body, path, query or a header cannot be parsed.
    #[error("cannot classify: malformed {part}: {reason}")]
    Malformed {
        /// Which part of the request.
        part: &'static str,
        /// Parser message.
        reason: String,
    },
    /// A parameter has a value resources cannot be derived from.
    #[error("cannot classify: invalid `{name}` value `{value}`")]
    InvalidParameter {
        /// Parameter name.
        name: String,
        /// The value as received.
        value: String,
    },
    /// The operation's resources are in the body but the body was not given.
    #[error("cannot classify `{operation}` without its request body")]
    BodyRequired {
        /// Operation name.
        operation: String,
    },
    /// The embedded service data failed to parse (a build defect; tests catch it).
    #[error("cannot classify: embedded service data is invalid: {0}")]
    Data(String),
}

// === impl Protocol ===

impl Protocol {
    /// The error format clients of this protocol expect.
    pub fn error_format(self) -> ErrorFormat {
        match self {
            Protocol::Query | Protocol::RestXml | Protocol::Ec2 => ErrorFormat::Xml,
            Protocol::Json | Protocol::RestJson => ErrorFormat::Json,
        }
    }

    /// The protocol's name as botocore spells it (`query`, `json`, `rest-json`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Query => "query",
            Protocol::Json => "json",
            Protocol::RestJson => "rest-json",
            Protocol::RestXml => "rest-xml",
            Protocol::Ec2 => "ec2",
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

// === public functions ===

/// Classifies a verified request. Any error means the request must be denied.
pub fn classify(input: &ClassifyInput<'_>) -> Result<Classification, ClassifyError> {
    dispatch::classify(input)
}

/// Whether [`classify`] needs the request body buffered: true for the JSON and query
/// protocols (the operation or its resources are in the body) and for REST operations
/// whose resources are in the body (S3 `DeleteObjects`, Lambda `CreateFunction`); false
/// for everything that can stream (S3 `PutObject`/`UploadPart`, Lambda `Invoke`) and for
/// requests that will not classify anyway.
pub fn needs_body(
    signing_name: &str,
    method: &http::Method,
    headers: &http::HeaderMap,
    path: &str,
    query: Option<&str>,
) -> bool {
    dispatch::needs_body(signing_name, method, headers, path, query)
}

/// The error format to answer a request with, even when it cannot be classified:
/// JSON for AWS JSON and REST-JSON services (and SQS requests with `X-Amz-Target` or a
/// JSON content type), XML otherwise (query, EC2, S3 and unknown signing names).
pub fn error_format(signing_name: &str, headers: &http::HeaderMap) -> ErrorFormat {
    dispatch::error_format(signing_name, headers)
}

/// Where AWS serves a classified service (`Classification::service`): its one global
/// host (`iam.amazonaws.com`), or `None` for `{endpoint prefix}.{region}.amazonaws.com`
/// with the endpoint prefix given. `None` for a service the data does not know.
pub fn endpoint(service: &str) -> Option<Endpoint> {
    data::registry().entry(service).map(|e| Endpoint {
        prefix: e.endpoint_prefix,
        global_host: (!e.global_host.is_empty()).then_some(e.global_host),
    })
}

/// Where AWS serves a service (see [`endpoint`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    /// The first label of its regional host (`monitoring` for CloudWatch).
    pub prefix: &'static str,
    /// Its one global host in the `aws` partition, if it has one.
    pub global_host: Option<&'static str>,
}

/// The services the embedded data covers, as `(service, signing name, protocol)`.
pub fn services() -> Result<Vec<(String, String, Protocol)>, ClassifyError> {
    Ok(data::registry()
        .all()?
        .into_iter()
        .map(|s| {
            (
                s.data.service.clone(),
                s.data.signing_name.clone(),
                s.protocol,
            )
        })
        .collect())
}
