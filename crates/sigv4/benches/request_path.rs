//! Request-path benchmarks for custody-sigv4.
fn main() {}
