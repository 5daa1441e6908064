//! Fuzzes raw bytes on a connection to a real host's front door; see `verge_host::fuzzing::front_door`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| verge_host::fuzzing::front_door(data));
