//! Custody per-task grants: the scope language, the pure allow/deny decision, session-policy rendering and the grant store.
#![forbid(unsafe_code)]
