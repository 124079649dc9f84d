//! libFuzzer entry of the `server_config` target; the body is in the library
//! (`src/`), shared with the stable runner.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| cluster_fuzz::server_config::run(data));
