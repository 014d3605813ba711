//! Feeds arbitrary bytes (as lossy UTF-8) to the policy parser: it must not
//! panic, and every rule it accepts must print to text that parses back to
//! the same rule.
#![no_main]

use appswitch::policy::{parse_policy, parse_rule};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(file) = parse_policy(&text) {
        for r in file.rules {
            let printed = r.to_string();
            assert_eq!(parse_rule(&printed), Ok(r), "printed as {printed:?} from {text:?}");
        }
    }
    // A single rule too (parse_rule reads newlines as whitespace).
    if let Ok(r) = parse_rule(&text) {
        let printed = r.to_string();
        assert_eq!(parse_rule(&printed), Ok(r), "printed as {printed:?} from {text:?}");
    }
});
