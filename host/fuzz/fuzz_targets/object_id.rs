//! Fuzzes object ids: parse, display, from_name; see `verge_host::fuzzing::object_id`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| verge_host::fuzzing::object_id(data));
