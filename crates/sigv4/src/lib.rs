//! Custody SigV4: inbound signature verification (header, presigned, aws-chunked), request
//! classification from AWS service models, and outbound re-signing.
//!
//! Pure logic: every function takes its inputs and a time and returns a value; no I/O.
#![forbid(unsafe_code)]

pub mod body;
pub mod canonical;
pub mod chunked;
pub mod classify;
pub mod error;
pub mod fidelity;
pub mod key;
pub mod resign;
pub mod sigv2;
pub mod verify;
