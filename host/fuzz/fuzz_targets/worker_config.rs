//! Fuzzes verge.toml text → WorkerConfig::parse; see `verge_host::fuzzing::worker_config`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| verge_host::fuzzing::worker_config(data));
