//! Every fuzz target over its seeds, then over a few thousand deterministic mutations of them:
//! what `cargo test --workspace` (and so CI) runs of the fuzzing. A panic fails the test and
//! prints the input that caused it.

use onshi_fuzz_targets::mutate::{SplitMix64, mutate};
use onshi_fuzz_targets::{TARGETS, seeds};

/// Mutations per target: a few seconds per target in a debug build.
const MUTATIONS: usize = 3_000;

/// Inputs longer than this are cut: libFuzzer's default is 4,096 bytes, and the parsers'
/// length limits are tested beside them.
const INPUT_BYTES_MAX: usize = 64 * 1024;

fn run(target: &str, body: fn(&[u8]), input: &[u8]) {
    let outcome = std::panic::catch_unwind(|| body(input));
    if outcome.is_err() {
        panic!("target {target} panicked on the input {:?}", String::from_utf8_lossy(input));
    }
}

fn check(name: &str) {
    let (_, body) = TARGETS.iter().find(|(n, _)| *n == name).expect("a target of that name");
    let seeds = seeds(name);
    assert!(!seeds.is_empty(), "target {name} has no seeds");
    for (_, bytes) in &seeds {
        run(name, *body, bytes);
    }
    let inputs: Vec<&[u8]> = seeds.iter().map(|(_, b)| b.as_slice()).collect();
    let mut rng = SplitMix64::new(0x6f6e_7368_6900 ^ name.len() as u64);
    for _ in 0..MUTATIONS {
        let input = inputs[rng.below(inputs.len())];
        let mutated = mutate(input, &inputs, &mut rng, INPUT_BYTES_MAX);
        run(name, *body, &mutated);
    }
}

#[test]
fn request_xml() {
    check("request_xml");
}

#[test]
fn uke() {
    check("uke");
}

#[test]
fn event_line() {
    check("event_line");
}

#[test]
fn api_json() {
    check("api_json");
}

#[test]
fn pki() {
    check("pki");
}

#[test]
fn gateway_toml() {
    check("gateway_toml");
}

#[test]
fn appointments_csv() {
    check("appointments_csv");
}

#[test]
fn card_apdu() {
    check("card_apdu");
}

#[test]
fn medical_line() {
    check("medical_line");
}

#[test]
fn subsidy_line() {
    check("subsidy_line");
}

#[test]
fn every_target_is_tested_here() {
    let names: Vec<&str> = TARGETS.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        [
            "request_xml",
            "uke",
            "event_line",
            "api_json",
            "pki",
            "gateway_toml",
            "appointments_csv",
            "card_apdu",
            "medical_line",
            "subsidy_line"
        ]
    );
}
