//! Fuzzes the admin API's upload (multipart) on a real host; see `verge_host::fuzzing::admin_upload`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| verge_host::fuzzing::admin_upload(data));
