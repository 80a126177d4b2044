//! The SMTP reply parser on arbitrary bytes: never panics, never claims more bytes than it
//! was given, and a parsed reply survives a trip through its wire form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outbox_smtp::parse_reply;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((reply, used))) = parse_reply(data) {
        assert!(used > 0 && used <= data.len());
        let wire = reply.to_wire();
        let (again, _) = parse_reply(wire.as_bytes())
            .expect("the wire form of a reply parses")
            .expect("the wire form of a reply is complete");
        assert_eq!(again, reply);
    }
});
