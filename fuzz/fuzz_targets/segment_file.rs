#![no_main]

// One data directory per process, reused by every input.
static DIR: std::sync::LazyLock<tempfile::TempDir> =
    std::sync::LazyLock::new(|| tempfile::tempdir().expect("temporary directory"));

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    eventline_log::fuzzing::segment_file(DIR.path(), data);
});
