//! Custody session log: canonical hash-chained entries, RFC 6962 Merkle tree, Ed25519-signed C2SP checkpoints, group-committed durable appends and the offline verification library.
#![forbid(unsafe_code)]
