//! Custody proxy: tower layers that authenticate, classify, authorize, record, re-sign and forward agent requests to AWS.
#![forbid(unsafe_code)]
