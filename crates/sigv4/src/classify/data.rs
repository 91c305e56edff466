//! The embedded service data and its indexes, parsed once on first use.
//!
//! The index (signing name → services) is built from the generated table on the first
//! call; each service's JSON is parsed the first time a request signs with its name, and
//! cached in a `OnceLock` for the life of the process. A parse failure is cached too and
//! turns every classification for that service into an error (deny); the data tests make
//! sure that never ships.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use serde::Deserialize;

use super::route::Template;
use super::{ClassifyError, Protocol};

/// One service's data file.
#[derive(Debug, Deserialize)]
pub(crate) struct ServiceData {
    pub(crate) service: String,
    /// botocore version the data was generated from (named in refusals).
    #[serde(default)]
    pub(crate) botocore: String,
    /// The service model's API version (named in refusals).
    #[serde(default)]
    pub(crate) api_version: String,
    pub(crate) protocol: String,
    pub(crate) signing_name: String,
    /// The IAM service prefix of its actions.
    #[serde(default)]
    pub(crate) iam_prefix: String,
    /// The first label of its regional host.
    #[serde(default)]
    pub(crate) endpoint_prefix: String,
    pub(crate) target_prefix: Option<String>,
    #[serde(default)]
    pub(crate) query_compatible: bool,
    pub(crate) operations: Vec<OpData>,
    /// Input shapes reachable from the operations' inputs, by name (see [`Shape`]).
    #[serde(default)]
    pub(crate) shapes: HashMap<String, Shape>,
    /// The same shapes with the query protocol's wire names, for AWS JSON services that
    /// still take query requests (SQS).
    #[serde(default)]
    pub(crate) qshapes: HashMap<String, Shape>,
}

/// An input shape as the member check reads it. A member refers to another shape by
/// name; the name `""` is a scalar and `"*"` a document (any JSON).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Shape {
    /// A structure: wire name → shape.
    Struct(Members),
    /// `["l", member shape, member segment]`: a list; on the query wire its elements are
    /// `Name.<segment>.N` (`Name.N` when the segment is null: flattened, and EC2).
    List(ListTag, String, Option<String>),
    /// `["m", value shape, key name, value name, flattened]`: a map; on the query wire
    /// `Name.entry.N.key` / `Name.entry.N.value` (`Name.N.key` when flattened).
    Map(MapTag, String, String, String, bool),
}

/// Structure members: wire name → shape name.
pub(crate) type Members = BTreeMap<String, String>;

/// The `"l"` tag of a list shape.
#[derive(Debug, Deserialize)]
pub(crate) enum ListTag {
    #[serde(rename = "l")]
    L,
}

/// The `"m"` tag of a map shape.
#[derive(Debug, Deserialize)]
pub(crate) enum MapTag {
    #[serde(rename = "m")]
    M,
}

/// One operation.
#[derive(Debug, Deserialize)]
pub(crate) struct OpData {
    pub(crate) name: String,
    pub(crate) action: String,
    pub(crate) method: Option<String>,
    pub(crate) path: Option<String>,
    /// Query keys (and values) that must be present: template discriminators and
    /// required query members.
    #[serde(default)]
    pub(crate) disc: Vec<(String, Option<String>)>,
    /// Every query member name (REST-XML only).
    #[serde(default)]
    pub(crate) qkeys: Vec<String>,
    /// Input members used for resources: member → (location, wire name).
    #[serde(default)]
    pub(crate) mem: BTreeMap<String, (Loc, String)>,
    /// Resource groups; in each, the first alternative whose members are present wins.
    #[serde(default)]
    pub(crate) res: Vec<Vec<ResAlt>>,
    pub(crate) handler: Option<String>,
    /// This operation is a deprecated twin of another, which wins routing ties.
    pub(crate) alias: Option<String>,
    pub(crate) requires_header: Option<String>,
    pub(crate) forbids_header: Option<String>,
    pub(crate) version_action: Option<String>,
    #[serde(default)]
    pub(crate) mints: bool,
    /// The operation's name is no action of the service's IAM prefix in the Service
    /// Authorization Reference: refused (which action AWS checks is not known).
    #[serde(default)]
    pub(crate) noaction: bool,
    /// The members the body may carry (JSON, query, EC2; REST-JSON body members), by
    /// wire name. `None` for REST operations whose body the data does not describe.
    #[serde(rename = "in")]
    pub(crate) input: Option<Members>,
    /// The same members with the query protocol's wire names (query-compatible JSON).
    #[serde(rename = "qin")]
    pub(crate) query_input: Option<Members>,
    /// Header members (lower case), REST only: any other `x-amz-*` header is refused.
    #[serde(default)]
    pub(crate) hkeys: Vec<String>,
    /// Prefixes of header-map members (`x-amz-meta-`), REST only.
    #[serde(default)]
    pub(crate) hpre: Vec<String>,
    /// REST: nothing of this operation travels in the body, so a body is refused.
    #[serde(default)]
    pub(crate) nobody: bool,
    /// The model has the request-compression trait with gzip: a gzip body is decoded.
    #[serde(default)]
    pub(crate) gzip: bool,
}

/// Where an input member travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Loc {
    Uri,
    Query,
    Header,
    Body,
    Xml,
}

/// One way to build a resource ARN.
#[derive(Debug, Deserialize)]
pub(crate) struct ResAlt {
    /// Template with `{partition}`, `{region}`, `{account}` and `{Member}` placeholders.
    pub(crate) t: String,
    /// If this member's value is already an ARN, it replaces the template up to and
    /// including its placeholder.
    pub(crate) arn: Option<String>,
    /// A transform that turns the (single) member's value into an ARN.
    pub(crate) tr: Option<Transform>,
    /// The member is a list: one resource per element.
    #[serde(default)]
    pub(crate) each: bool,
    /// This alternative applies when this member is present (for a template without
    /// placeholders, such as `*` for an SNS `PhoneNumber`).
    #[serde(rename = "if")]
    pub(crate) if_member: Option<String>,
}

/// Value transforms that need code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Transform {
    SqsQueueUrl,
    KmsKey,
    LambdaFunction,
    SsmParameter,
    SecretsmanagerSecret,
}

/// One service's embedded data file, with what picks the service before the file is
/// parsed (see `data_files.rs`, generated).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Embedded {
    pub(crate) name: &'static str,
    pub(crate) signing_name: &'static str,
    pub(crate) endpoint_prefix: &'static str,
    /// The host of its one global endpoint in the `aws` partition (IAM, Route 53, …);
    /// empty for a regional service.
    pub(crate) global_host: &'static str,
    pub(crate) json: &'static str,
}

/// A service with its lookup indexes.
#[derive(Debug)]
pub(crate) struct Service {
    pub(crate) data: ServiceData,
    pub(crate) protocol: Protocol,
    by_name: HashMap<String, usize>,
    /// REST routes by HTTP method: (operation index, parsed path template).
    routes: HashMap<String, Vec<(usize, Template)>>,
}

/// All services: indexed by signing name from the embedded table, each parsed the first
/// time a request names its signing name (over 400 services and 5 MB of JSON: parsing them
/// all up front would cost every gateway start, and memory, for services it never sees).
#[derive(Debug)]
pub(crate) struct Registry {
    files: Vec<Embedded>,
    parsed: Vec<OnceLock<Result<Service, String>>>,
    by_signing_name: HashMap<&'static str, Vec<usize>>,
    /// Service name → entry (the upstream lookup runs on every forwarded request).
    by_name: HashMap<&'static str, usize>,
}

static REGISTRY: OnceLock<Registry> = OnceLock::new();

/// The registry (indexed on first use; services parsed as they are asked for).
pub(crate) fn registry() -> &'static Registry {
    REGISTRY.get_or_init(|| Registry::new(super::data_files::SERVICE_DATA))
}

// === impl Registry ===

impl Registry {
    pub(crate) fn new(files: &[Embedded]) -> Self {
        let mut by_signing_name: HashMap<&'static str, Vec<usize>> = HashMap::new();
        for (i, f) in files.iter().enumerate() {
            by_signing_name.entry(f.signing_name).or_default().push(i);
        }
        Registry {
            files: files.to_vec(),
            parsed: files.iter().map(|_| OnceLock::new()).collect(),
            by_signing_name,
            by_name: files.iter().enumerate().map(|(i, f)| (f.name, i)).collect(),
        }
    }

    /// Services that sign with this name, parsed. A data file that does not parse is an
    /// error (the request is refused); the data tests make sure none ships.
    pub(crate) fn by_signing_name(
        &self,
        signing_name: &str,
    ) -> Result<Vec<&Service>, ClassifyError> {
        self.by_signing_name
            .get(signing_name)
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .map(|&i| self.service(i))
            .collect()
    }

    /// Every service, parsed.
    pub(crate) fn all(&self) -> Result<Vec<&Service>, ClassifyError> {
        (0..self.files.len()).map(|i| self.service(i)).collect()
    }

    /// The service `name`'s embedded entry (no parsing).
    pub(crate) fn entry(&self, name: &str) -> Option<&Embedded> {
        self.by_name.get(name).and_then(|&i| self.files.get(i))
    }

    fn service(&self, i: usize) -> Result<&Service, ClassifyError> {
        let (Some(file), Some(cell)) = (self.files.get(i), self.parsed.get(i)) else {
            return Err(ClassifyError::Data(format!("no service data #{i}")));
        };
        cell.get_or_init(|| Service::parse(file.name, file.json))
            .as_ref()
            .map_err(|e| ClassifyError::Data(e.clone()))
    }
}

// === impl Service ===

impl Service {
    fn parse(name: &str, text: &str) -> Result<Self, String> {
        let data: ServiceData =
            serde_json::from_str(text).map_err(|e| format!("`{name}.json`: {e}"))?;
        let protocol = match data.protocol.as_str() {
            "query" => Protocol::Query,
            "json" => Protocol::Json,
            "rest-json" => Protocol::RestJson,
            "rest-xml" => Protocol::RestXml,
            "ec2" => Protocol::Ec2,
            other => return Err(format!("`{name}.json`: unknown protocol `{other}`")),
        };
        let mut by_name = HashMap::with_capacity(data.operations.len());
        let mut routes: HashMap<String, Vec<(usize, Template)>> = HashMap::new();
        for (i, op) in data.operations.iter().enumerate() {
            by_name.insert(op.name.clone(), i);
            if matches!(protocol, Protocol::RestJson | Protocol::RestXml) {
                let (Some(method), Some(path)) = (&op.method, &op.path) else {
                    return Err(format!("`{name}.json`: `{}` has no http route", op.name));
                };
                routes
                    .entry(method.clone())
                    .or_default()
                    .push((i, Template::parse(path)?));
            }
        }
        Ok(Service {
            data,
            protocol,
            by_name,
            routes,
        })
    }

    /// REST routes for an HTTP method.
    pub(crate) fn routes(&self, method: &str) -> &[(usize, Template)] {
        self.routes.get(method).map_or(&[], Vec::as_slice)
    }

    /// An operation by name.
    pub(crate) fn op(&self, name: &str) -> Option<&OpData> {
        self.by_name
            .get(name)
            .and_then(|&i| self.data.operations.get(i))
    }
}
