//! The short command-line scope form on arbitrary argument lists: never panics.
#![no_main]

use custody_grant::Scope;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let args: Vec<&str> = text.split('\0').collect();
    let _ = Scope::from_cli(&args);
});
