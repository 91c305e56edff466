//! aws-chunked: the S3 documentation examples ("Signature calculations for the Authorization
//! header: transferring payload in multiple chunks", with and without trailers; the same
//! vectors `aws-runtime` tests its signer with), fed in every way, and tampered.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

mod common;

use bytes::Bytes;
use custody_sigv4::body::BodyPart;
use custody_sigv4::chunked::{ChunkDecoder, ChunkEvent, ChunkLimits, ChunkSigningContext};
use custody_sigv4::key::{SigningKey, SigningSecret};
use custody_sigv4::verify::{PayloadMode, Verification, VerifyOptions, verify};

const AKID: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const SEED: &str = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9";
const SIGS: [&str; 3] = [
    "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
    "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
    "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
];
const TRAILER_SEED: &str = "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e";
const TRAILER_SIGS: [&str; 4] = [
    "b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2",
    "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7",
    "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992",
    "d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435",
];

fn doc_body(sigs: &[&str], trailer: bool) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(format!("10000;chunk-signature={}\r\n", sigs[0]).as_bytes());
    b.extend_from_slice(&[b'a'; 65536]);
    b.extend_from_slice(format!("\r\n400;chunk-signature={}\r\n", sigs[1]).as_bytes());
    b.extend_from_slice(&[b'a'; 1024]);
    b.extend_from_slice(format!("\r\n0;chunk-signature={}\r\n", sigs[2]).as_bytes());
    if trailer {
        b.extend_from_slice(
            format!(
                "x-amz-checksum-crc32c:sOO8/Q==\r\nx-amz-trailer-signature:{}\r\n",
                sigs[3]
            )
            .as_bytes(),
        );
    }
    b.extend_from_slice(b"\r\n");
    b
}

fn doc_parts() -> http::request::Parts {
    common::parts(
        "PUT",
        "/examplebucket/chunkObject.txt",
        &[
            ("host", "s3.amazonaws.com"),
            ("x-amz-date", "20130524T000000Z"),
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            (
                "authorization",
                "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class,Signature=4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
            ),
            ("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
            ("content-encoding", "aws-chunked"),
            ("x-amz-decoded-content-length", "66560"),
            ("content-length", "66824"),
        ],
    )
}

fn ctx() -> ChunkSigningContext {
    ChunkSigningContext {
        key: SigningKey::derive(&SigningSecret::new(SECRET), "20130524", "us-east-1", "s3"),
        amz_date: "20130524T000000Z".to_owned(),
        scope: "20130524/us-east-1/s3/aws4_request".to_owned(),
    }
}

fn decode_in_pieces(
    mut d: ChunkDecoder,
    body: &[u8],
    piece: usize,
) -> Result<Vec<ChunkEvent>, String> {
    let mut events = Vec::new();
    for p in body.chunks(piece) {
        events.extend(d.push(p).map_err(|e| e.to_string())?);
    }
    d.finish().map_err(|e| e.to_string())?;
    Ok(events)
}

#[test]
fn doc_example_seed_signature_verifies() {
    let lookup = common::one_key(AKID, SECRET);
    let parts = doc_parts();
    let now = common::at("20130524T000500Z");
    let Verification::Verified(v) =
        verify(&parts, &lookup, now, &VerifyOptions::default()).unwrap()
    else {
        panic!("head should verify without the body");
    };
    assert_eq!(v.signature, SEED);
    assert_eq!(
        v.payload,
        PayloadMode::StreamingSigned {
            trailer: false,
            decoded_len: Some(66560)
        }
    );
    assert_eq!(body_len(&doc_body(&SIGS, false)), 66824);

    // The whole body through the request's own body verifier.
    let mut bv = v.body_verifier();
    let mut chunks = Vec::new();
    for piece in doc_body(&SIGS, false).chunks(1000) {
        for part in bv.push(Bytes::copy_from_slice(piece)).unwrap() {
            chunks.push(part);
        }
    }
    bv.finish().unwrap();
    let sizes: Vec<usize> = chunks
        .iter()
        .filter_map(|p| match p {
            BodyPart::Chunked(ChunkEvent::Chunk(c)) => Some(c.data.len()),
            _ => None,
        })
        .collect();
    assert_eq!(sizes, vec![65536, 1024, 0]);
    v.check_body(&doc_body(&SIGS, false)).unwrap();
}

fn body_len(b: &[u8]) -> usize {
    b.len()
}

#[test]
fn doc_example_decodes_at_every_feeding_granularity() {
    let body = doc_body(&SIGS, false);
    for piece in [1, 2, 3, 7, 64, 1000, 65536, 65537, body.len()] {
        let d = ChunkDecoder::signed(ctx(), SEED, false, Some(66560), ChunkLimits::default());
        let events = decode_in_pieces(d, &body, piece).unwrap();
        assert_eq!(events.len(), 4, "piece {piece}");
        assert_eq!(events[3], ChunkEvent::End);
    }
}

#[test]
fn doc_example_with_trailer_verifies() {
    let body = doc_body(&TRAILER_SIGS, true);
    let d = ChunkDecoder::signed(
        ctx(),
        TRAILER_SEED,
        true,
        Some(66560),
        ChunkLimits::default(),
    );
    let events = decode_in_pieces(d, &body, 4096).unwrap();
    let ChunkEvent::Trailers(t) = &events[3] else {
        panic!("trailers expected: {events:?}")
    };
    assert_eq!(t.lines, vec!["x-amz-checksum-crc32c:sOO8/Q==".to_owned()]);
    assert_eq!(events[4], ChunkEvent::End);
}

#[test]
fn every_single_byte_change_is_rejected() {
    let body = doc_body(&TRAILER_SIGS, true);
    // Flip one byte at a spread of positions: framing, signatures, data, trailer.
    let mut positions: Vec<usize> = (0..120).collect();
    positions.extend([1000, 65535 + 88, 65626, 65700, 66700]);
    positions.extend(body.len() - 130..body.len());
    for pos in positions {
        let mut t = body.clone();
        t[pos] ^= 0x01;
        let d = ChunkDecoder::signed(
            ctx(),
            TRAILER_SEED,
            true,
            Some(66560),
            ChunkLimits::default(),
        );
        assert!(
            decode_in_pieces(d, &t, 977).is_err(),
            "flip at {pos} accepted"
        );
    }
}

#[test]
fn a_bad_chunk_is_never_released() {
    let mut body = doc_body(&SIGS, false);
    // Corrupt the second chunk's data: the first chunk is released, the second never is.
    body[65626 + 86 + 10] = b'b';
    let mut d = ChunkDecoder::signed(ctx(), SEED, false, None, ChunkLimits::default());
    let first = d.push(&body[..65626 + 86 + 500]).unwrap();
    assert_eq!(first.len(), 1);
    assert!(d.push(&body[65626 + 86 + 500..]).is_err());
    assert!(d.push(b"0").is_err(), "errors are sticky");
}

#[test]
fn truncated_and_oversized_streams_are_rejected() {
    let body = doc_body(&SIGS, false);
    let d = ChunkDecoder::signed(ctx(), SEED, false, None, ChunkLimits::default());
    assert!(decode_in_pieces(d, &body[..body.len() - 2], 100).is_err());
    let d = ChunkDecoder::signed(ctx(), SEED, false, Some(66559), ChunkLimits::default());
    assert!(decode_in_pieces(d, &body, 100).is_err());
    let limits = ChunkLimits {
        max_chunk_size: 1024,
        ..ChunkLimits::default()
    };
    let d = ChunkDecoder::signed(ctx(), SEED, false, None, limits);
    assert!(decode_in_pieces(d, &body, 100).is_err());
    let mut d = ChunkDecoder::unsigned(false, None, ChunkLimits::default());
    assert!(d.push(b"ffffffffffffffffff\r\n").is_err());
    let mut d = ChunkDecoder::unsigned(false, None, ChunkLimits::default());
    assert!(d.push(&[b'1'; 10_000]).is_err(), "endless size line");
    let mut d = ChunkDecoder::signed(ctx(), SEED, false, None, ChunkLimits::default());
    assert!(
        d.push(b"5\r\nhello\r\n").is_err(),
        "unsigned chunk in a signed stream"
    );
}

#[test]
fn unsigned_trailer_stream_decodes() {
    let body = b"5\r\nhello\r\n0\r\nx-amz-checksum-crc32:NhCmhg==\r\n\r\n";
    let d = ChunkDecoder::unsigned(true, Some(5), ChunkLimits::default());
    let events = decode_in_pieces(d, body, 3).unwrap();
    assert_eq!(events.len(), 4);
}

#[test]
fn chunk_extensions_other_than_the_signature_are_refused() {
    use custody_sigv4::chunked::ChunkDecoder;
    let mut d = ChunkDecoder::unsigned(false, None, Default::default());
    let err = d
        .push(b"3;x=&Action=Scan\r\nabc\r\n0\r\n\r\n")
        .expect_err("an extension that is not chunk-signature");
    assert!(err.to_string().contains("chunk extension `x`"), "{err}");
    let mut d = ChunkDecoder::unsigned(false, None, Default::default());
    assert!(d.push(b"3\r\nabc\r\n0\r\n\r\n").is_ok());
}
