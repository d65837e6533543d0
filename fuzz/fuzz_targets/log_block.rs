#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    eventline_log::fuzzing::log_block(data);
});
