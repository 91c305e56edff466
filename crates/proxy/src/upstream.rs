//! Where a request goes: the upstream endpoint comes from configuration and the
//! service/region table, never from the request (no SSRF through `Host` or the URL).

use http::uri::{Authority, Scheme};

use crate::error::{Refusal, RefusalKind};

/// How upstream endpoints are chosen.
#[derive(Debug, Clone)]
pub enum UpstreamConfig {
    /// Real AWS: `https://{endpoint prefix}.{region}.amazonaws.com`, or the service's one
    /// global host, from the classification data.
    Aws,
    /// Every service at one AWS-compatible endpoint (moto in tests, a VPC endpoint, …).
    Override {
        /// `http` or `https`.
        scheme: Scheme,
        /// `host[:port]`.
        authority: Authority,
    },
}

/// The resolved upstream for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTarget {
    /// `http` or `https`.
    pub scheme: Scheme,
    /// `host[:port]`, also the `Host` header the request is re-signed for.
    pub authority: Authority,
    /// The region the request is signed for and sent to.
    pub region: String,
    /// The SigV4 signing name.
    pub signing_name: String,
}

impl UpstreamConfig {
    /// Parse an endpoint override such as `http://127.0.0.1:5000`.
    pub fn from_endpoint(endpoint: &str) -> Result<Self, String> {
        let uri: http::Uri = endpoint
            .parse()
            .map_err(|e| format!("endpoint `{endpoint}` is not a url: {e}"))?;
        let scheme = uri
            .scheme()
            .cloned()
            .ok_or_else(|| format!("endpoint `{endpoint}` has no scheme (http:// or https://)"))?;
        if scheme != Scheme::HTTP && scheme != Scheme::HTTPS {
            return Err(format!("endpoint `{endpoint}` must be http or https"));
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| format!("endpoint `{endpoint}` has no host"))?;
        if uri.path() != "/" && !uri.path().is_empty() {
            return Err(format!("endpoint `{endpoint}` must not have a path"));
        }
        Ok(Self::Override { scheme, authority })
    }

    /// The upstream for the classified `service` (botocore's name, whose endpoint the
    /// classification data carries), signed as `signing_name` in `region`.
    pub fn target(
        &self,
        service: &str,
        signing_name: &str,
        region: &str,
    ) -> Result<UpstreamTarget, Refusal> {
        if !is_region_name(region) {
            return Err(Refusal::new(
                RefusalKind::InvalidRequest,
                format!("region `{region}` in the credential scope is not a region name"),
            ));
        }
        let Some(endpoint) = custody_sigv4::classify::endpoint(service) else {
            return Err(Refusal::new(
                RefusalKind::AccessDenied,
                format!("service `{service}` is not forwarded by this gateway"),
            ));
        };
        let (scheme, authority) = match self {
            Self::Override { scheme, authority } => (scheme.clone(), authority.clone()),
            Self::Aws => {
                let host = match endpoint.global_host {
                    Some(global) => global.to_owned(),
                    None => format!("{}.{region}.amazonaws.com", endpoint.prefix),
                };
                let authority = host.parse::<Authority>().map_err(|_| {
                    Refusal::new(
                        RefusalKind::InvalidRequest,
                        format!("no endpoint for `{host}`"),
                    )
                })?;
                (Scheme::HTTPS, authority)
            }
        };
        Ok(UpstreamTarget {
            scheme,
            authority,
            region: region.to_owned(),
            signing_name: signing_name.to_owned(),
        })
    }
}

/// `us-east-1`, `eu-central-2`, `us-gov-west-1`: lowercase words and a number.
///
/// The region goes into the upstream host name, so anything else is refused here.
fn is_region_name(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    parts.len() >= 3
        && parts.len() <= 5
        && region.len() <= 32
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts
            .last()
            .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    #[test]
    fn aws_hosts_come_from_the_classification_data() {
        let t = UpstreamConfig::Aws
            .target("dynamodb", "dynamodb", "eu-west-1")
            .unwrap();
        assert_eq!(t.authority.as_str(), "dynamodb.eu-west-1.amazonaws.com");
        assert_eq!(t.scheme, Scheme::HTTPS);
        // The endpoint prefix, not the signing name: CloudWatch signs as `monitoring`,
        // Bedrock runtime as `bedrock`.
        let t = UpstreamConfig::Aws
            .target("bedrock-runtime", "bedrock", "us-west-2")
            .unwrap();
        assert_eq!(
            t.authority.as_str(),
            "bedrock-runtime.us-west-2.amazonaws.com"
        );
        assert_eq!(t.signing_name, "bedrock");
        // A global service: one host, whatever the region.
        let t = UpstreamConfig::Aws
            .target("iam", "iam", "us-east-1")
            .unwrap();
        assert_eq!(t.authority.as_str(), "iam.amazonaws.com");
    }

    #[test]
    fn hostile_regions_and_unknown_services_are_refused() {
        for region in [
            "evil.com/x",
            "us-east-1.attacker.net",
            "",
            "us-east",
            "US-EAST-1",
            "a-b-c-d-e-f-1",
        ] {
            assert!(
                UpstreamConfig::Aws.target("s3", "s3", region).is_err(),
                "{region}"
            );
        }
        assert!(
            UpstreamConfig::Aws
                .target("no-such-service", "x", "us-east-1")
                .is_err()
        );
    }

    #[test]
    fn override_sends_everything_to_one_endpoint() {
        let c = UpstreamConfig::from_endpoint("http://127.0.0.1:5000").unwrap();
        let t = c.target("sqs", "sqs", "us-east-1").unwrap();
        assert_eq!(t.authority.as_str(), "127.0.0.1:5000");
        assert!(UpstreamConfig::from_endpoint("ftp://x").is_err());
        assert!(UpstreamConfig::from_endpoint("http://x/path").is_err());
    }
}
