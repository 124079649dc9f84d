//! libFuzzer entry of the `rest_query` target; the body is in the library
//! (`src/`), shared with the stable runner.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| cluster_fuzz::rest_query::run(data));
