//! The server-spec parser on arbitrary text: never panics, and whatever it accepts prints
//! (password redacted) as a spec that parses again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outbox_smtp::ServerSpec;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(spec) = ServerSpec::parse(text)
    {
        let shown = spec.to_string();
        assert!(ServerSpec::parse(&shown).is_ok(), "{text:?} -> {shown:?}");
    }
});
