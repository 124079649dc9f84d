//! libFuzzer entry of the `multipart` target; the body is in the library
//! (`src/`), shared with the stable runner.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| cluster_fuzz::multipart::run(data));
