//! Custody STS role broker: scoped, short-lived AssumeRole credentials per grant with caching, refresh ahead of expiry and single-flight calls.
#![forbid(unsafe_code)]
