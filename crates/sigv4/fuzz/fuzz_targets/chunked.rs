//! The aws-chunked decoder on arbitrary bytes fed in arbitrary pieces: never panics, and once
//! failed keeps failing.
#![no_main]

use custody_sigv4::chunked::{ChunkDecoder, ChunkLimits, ChunkSigningContext};
use custody_sigv4::key::{SigningKey, SigningSecret};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let limits = ChunkLimits {
        max_chunk_size: 4096,
        max_line: 256,
        max_trailer_bytes: 512,
    };
    let trailer = mode & 1 == 1;
    let mut d = if mode & 2 == 2 {
        let ctx = ChunkSigningContext {
            key: SigningKey::derive(&SigningSecret::new("s"), "20261122", "us-east-1", "s3"),
            amz_date: "20261122T020000Z".into(),
            scope: "20261122/us-east-1/s3/aws4_request".into(),
        };
        ChunkDecoder::signed(ctx, &"0".repeat(64), trailer, None, limits)
    } else {
        ChunkDecoder::unsigned(trailer, None, limits)
    };
    let step = usize::from(mode >> 2) + 1;
    let mut failed = false;
    for piece in rest.chunks(step) {
        let r = d.push(piece);
        if failed {
            assert!(r.is_err(), "a failed decoder accepted more input");
        }
        failed |= r.is_err();
    }
    let _ = d.finish();
});
