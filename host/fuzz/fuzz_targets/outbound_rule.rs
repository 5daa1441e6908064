//! Fuzzes allowed_outbound_hosts rules and the URLs they allow; see `verge_host::fuzzing::outbound_rule`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| verge_host::fuzzing::outbound_rule(data));
