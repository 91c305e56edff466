//! The verifier on arbitrary request heads: never panics.
#![no_main]

use custody_sigv4::key::SigningSecret;
use custody_sigv4::verify::{VerifyOptions, verify};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let target = lines.next().unwrap_or("/");
    let mut b = http::Request::builder().method("GET").uri(target);
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            b = b.header(k, v);
        }
    }
    let Ok(req) = b.body(()) else { return };
    let parts = req.into_parts().0;
    let lookup = |_: &str| Some(SigningSecret::new("s"));
    let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_795_000_000);
    if let Ok(v) = verify(&parts, &lookup, now, &VerifyOptions::default()) {
        let _ = v.with_body(data);
    }
});
