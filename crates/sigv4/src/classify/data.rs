//! The embedded service data and its indexes, parsed once on first use.
//!
//! Parsing all services (~1,400 operations, ~200 KB of JSON) takes about a millisecond;
//! it happens on the first call to `classify` and is cached in a `OnceLock` for the life
//! of the process. A parse failure is cached too and turns every classification into an
//! error (deny); the data tests make sure that never ships.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use serde::Deserialize;

use super::route::Template;
use super::{ClassifyError, Protocol};

/// One service's data file.
#[derive(Debug, Deserialize)]
pub(crate) struct ServiceData {
    pub(crate) service: String,
    pub(crate) protocol: String,
    pub(crate) signing_name: String,
    pub(crate) target_prefix: Option<String>,
    #[serde(default)]
    pub(crate) query_compatible: bool,
    pub(crate) operations: Vec<OpData>,
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
}

/// Value transforms that need code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Transform {
    SqsQueueUrl,
    KmsKey,
    LambdaFunction,
    SsmParameter,
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

/// All services.
#[derive(Debug)]
pub(crate) struct Registry {
    pub(crate) services: Vec<Service>,
    by_signing_name: HashMap<String, Vec<usize>>,
}

static REGISTRY: OnceLock<Result<Registry, String>> = OnceLock::new();

/// The parsed registry (parsed on first use).
pub(crate) fn registry() -> Result<&'static Registry, ClassifyError> {
    REGISTRY
        .get_or_init(|| Registry::parse(super::data_files::SERVICE_DATA))
        .as_ref()
        .map_err(|e| ClassifyError::Data(e.clone()))
}

// === impl Registry ===

impl Registry {
    pub(crate) fn parse(files: &[(&str, &str)]) -> Result<Self, String> {
        let mut services = Vec::with_capacity(files.len());
        let mut by_signing_name: HashMap<String, Vec<usize>> = HashMap::new();
        for (name, text) in files {
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
            by_signing_name
                .entry(data.signing_name.clone())
                .or_default()
                .push(services.len());
            services.push(Service {
                data,
                protocol,
                by_name,
                routes,
            });
        }
        Ok(Registry {
            services,
            by_signing_name,
        })
    }

    /// Services that sign with this name.
    pub(crate) fn by_signing_name(&self, signing_name: &str) -> Vec<&Service> {
        self.by_signing_name
            .get(signing_name)
            .map(|ix| ix.iter().filter_map(|&i| self.services.get(i)).collect())
            .unwrap_or_default()
    }
}

// === impl Service ===

impl Service {
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
