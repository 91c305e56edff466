//! What can go wrong getting credentials for a grant, and what the caller does about it.

/// Why the broker could not hand out credentials for a grant.
///
/// Every variant means: forward nothing. [`BrokerError::http_status`] and
/// [`BrokerError::aws_code`] say how to answer the agent; [`BrokerError::is_retryable`] says
/// whether the same request may succeed later.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// STS refused AssumeRole with AccessDenied: the role's trust policy does not name the
    /// gateway's principal (or the gateway's own IAM policy does not allow `sts:AssumeRole`,
    /// `sts:SetSourceIdentity` and `sts:TagSession` on the role).
    #[error(
        "role `{role}` does not trust the gateway principal: add it to the role's trust policy with sts:AssumeRole, sts:SetSourceIdentity and sts:TagSession ({message})"
    )]
    RoleNotTrusted {
        /// The role ARN.
        role: String,
        /// What STS said.
        message: String,
    },
    /// The grant's session policy (plus tags) is larger than STS accepts.
    #[error(
        "session policy for grant `{grant_id}` is too large for sts ({size} characters, limit 2048 plain, packed limit varies): narrow the grant's scope"
    )]
    PolicyTooLarge {
        /// The grant id.
        grant_id: String,
        /// The policy's length in characters.
        size: usize,
    },
    /// STS throttled AssumeRole and the bounded retries ran out.
    #[error(
        "sts throttled assume-role for grant `{grant_id}` after {attempts} attempts: retry later"
    )]
    Throttled {
        /// The grant id.
        grant_id: String,
        /// How many calls were made.
        attempts: u32,
    },
    /// STS could not be reached or failed (connect error, timeout, 5xx); nothing was forwarded.
    #[error("sts at `{endpoint}` is unavailable after {attempts} attempts: {message}")]
    Unavailable {
        /// The STS endpoint (or `default` for the regional endpoint).
        endpoint: String,
        /// How many calls were made.
        attempts: u32,
        /// The last failure.
        message: String,
    },
    /// The grant has expired (by the broker's clock); no credentials are served for it.
    #[error("grant `{grant_id}` has expired")]
    GrantExpired {
        /// The grant id.
        grant_id: String,
    },
    /// The grant was revoked; no credentials are served for it.
    #[error("grant `{grant_id}` was revoked")]
    Revoked {
        /// The grant id.
        grant_id: String,
    },
    /// A field of the request cannot be sent to STS at all.
    #[error("invalid credentials request for grant `{grant_id}`: {reason}")]
    InvalidRequest {
        /// The grant id.
        grant_id: String,
        /// What is wrong.
        reason: String,
    },
    /// STS rejected AssumeRole for another reason (malformed policy, region disabled, …).
    #[error("sts rejected assume-role for role `{role}`: {code}: {message}")]
    Rejected {
        /// The role ARN.
        role: String,
        /// The STS error code.
        code: String,
        /// What STS said.
        message: String,
    },
    /// The broker's own configuration is unusable (no base credentials, bad endpoint).
    #[error("broker configuration error: {0}")]
    Config(String),
}

// === impl BrokerError ===

impl BrokerError {
    /// Whether the same request may succeed if tried again later (throttling, outage).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Throttled { .. } | Self::Unavailable { .. })
    }

    /// The HTTP status the proxy answers the agent with.
    ///
    /// 503 when STS is throttling or unreachable (try again), 403 when the grant cannot be
    /// used (expired, revoked, role not assumable, policy too large, policy rejected by STS),
    /// 500 for the gateway's own misconfiguration.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::Throttled { .. } | Self::Unavailable { .. } => 503,
            Self::RoleNotTrusted { .. }
            | Self::PolicyTooLarge { .. }
            | Self::GrantExpired { .. }
            | Self::Revoked { .. }
            | Self::InvalidRequest { .. }
            | Self::Rejected { .. } => 403,
            Self::Config(_) => 500,
        }
    }

    /// An AWS-shaped error code for the agent's error response.
    pub fn aws_code(&self) -> &'static str {
        match self {
            Self::Throttled { .. } => "SlowDown",
            Self::Unavailable { .. } => "ServiceUnavailable",
            Self::GrantExpired { .. } => "ExpiredToken",
            Self::RoleNotTrusted { .. }
            | Self::PolicyTooLarge { .. }
            | Self::Revoked { .. }
            | Self::InvalidRequest { .. }
            | Self::Rejected { .. } => "AccessDenied",
            Self::Config(_) => "InternalError",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outages_are_503_and_retryable() {
        let e = BrokerError::Unavailable {
            endpoint: "http://127.0.0.1:1".into(),
            attempts: 3,
            message: "connection refused".into(),
        };
        assert_eq!(e.http_status(), 503);
        assert!(e.is_retryable());
        let t = BrokerError::Throttled {
            grant_id: "g".into(),
            attempts: 4,
        };
        assert_eq!(t.http_status(), 503);
        assert!(t.is_retryable());
    }

    #[test]
    fn grant_problems_are_403_and_final() {
        let e = BrokerError::RoleNotTrusted {
            role: "arn:aws:iam::1:role/r".into(),
            message: "denied".into(),
        };
        assert_eq!(e.http_status(), 403);
        assert!(!e.is_retryable());
        assert!(
            e.to_string()
                .starts_with("role `arn:aws:iam::1:role/r` does not trust")
        );
    }
}
