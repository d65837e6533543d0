#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| eventline_faults::hostile::batch_json(data));
