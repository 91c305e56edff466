//! Entry, note, key and checkpoint parsers: never panic; entries that
//! decode re-encode to something that decodes to the same entry.
#![no_main]

use custody_log::note::{Checkpoint, Note, parse_skey};
use custody_log::{Entry, parse_vkey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(e) = Entry::decode(data) {
        if let Ok(line) = e.encode() {
            assert_eq!(Entry::decode(line.as_bytes()).ok(), Some(e));
        }
    }
    let text = String::from_utf8_lossy(data);
    let _ = Note::parse(&text);
    let _ = Checkpoint::parse(&text);
    let _ = parse_vkey(&text);
    let _ = parse_skey(&text);
});
