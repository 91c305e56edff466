//! The verifier over arbitrary files: never panics. The input is split at
//! the first two `0xff` bytes into a segment, `checkpoints.jsonl` and the
//! latest checkpoint.
#![no_main]

use custody_log::ed25519_dalek::SigningKey;
use custody_log::verify::{LogFiles, VerifyOptions, verify_files};
use custody_log::{parse_vkey, vkey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |b| *b == 0xff);
    let seg = parts.next().unwrap_or_default().to_vec();
    let ck = parts.next().map(<[u8]>::to_vec);
    let latest = parts.next().map(<[u8]>::to_vec);
    let key = SigningKey::from_bytes(&[42; 32]);
    let Ok(k) = parse_vkey(&vkey("custody.test/log", &key.verifying_key())) else { return };
    let files = LogFiles { segments: vec![("log-000000.jsonl".into(), seg)], checkpoints: ck, latest };
    let opts = VerifyOptions { keys: vec![k], ..Default::default() };
    let _ = verify_files(&files, &opts);
    let _ = custody_log::query::select(&files, &custody_log::query::Filter::default());
});
