//! The IAM policy parser on arbitrary text: never panics; what it accepts renders to a
//! session policy that parses back to the same scope.
#![no_main]

use custody_grant::Scope;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(scope) = Scope::from_iam_json(text) else {
        return;
    };
    if let Ok(policy) = scope.session_policy() {
        // Source-IP conditions are left out of session policies, so only check that the
        // rendered policy is itself acceptable input.
        assert!(Scope::from_iam_json(&policy).is_ok(), "rendered policy does not parse: {policy}");
    }
});
