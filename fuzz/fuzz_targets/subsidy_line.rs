#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| onshi_fuzz_targets::subsidy_line(data));
