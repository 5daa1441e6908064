//! Fuzzes route patterns and the route table; see `verge_host::fuzzing::routes`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| verge_host::fuzzing::routes(data));
