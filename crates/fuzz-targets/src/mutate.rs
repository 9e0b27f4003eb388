//! Deterministic mutations of seed inputs, so that `cargo test` runs every target over a few
//! thousand inputs near its seeds without libFuzzer. Not a fuzzer: no coverage feedback, only
//! the cheap mutations libFuzzer also starts with (flip, replace, insert, erase, duplicate,
//! splice, and tokens that parsers treat specially), the same inputs on every run.

/// SplitMix64 (Steele, Lea and Flood 2014): a tiny generator, enough to pick mutations.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `bound` (which must not be 0); the slight bias does not matter here.
    pub fn below(&mut self, bound: usize) -> usize {
        assert!(bound > 0, "below(0) has no answer");
        (self.next_u64() % bound as u64) as usize
    }
}

/// Tokens that the parsers of onshi give a meaning to: markup, separators, quotes, numbers at
/// and past the limits of integer types, dates at the edges of the calendar, encodings.
pub const TOKENS: &[&[u8]] = &[
    b"<",
    b">",
    b"</",
    b"/>",
    b"<![CDATA[",
    b"]]>",
    b"<!DOCTYPE x>",
    b"&amp;",
    b"&#0;",
    b"&#xFFFF;",
    b"<?xml version=\"1.0\" encoding=\"Shift_JIS\"?>",
    b"encoding=\"",
    b"\xEF\xBB\xBF",
    b",",
    b"\"",
    b"\r\n",
    b"\n",
    b"\x1A",
    b"\x00",
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b"null",
    b"-1",
    b"0",
    b"18446744073709551615",
    b"18446744073709551616",
    b"9223372036854775807",
    b"99999999999999999999999999",
    b"1e999",
    b"00000000",
    b"99991231",
    b"20260229",
    b"20240229",
    b"19000101",
    b"\xE3\x80\x80",
    b"\x82\xA0",
    b"\x81",
    b"\xFF",
    b"-----BEGIN CERTIFICATE-----\n",
    b"-----END CERTIFICATE-----\n",
    b"\x30\x82\xFF\xFF",
    b"\x30\x80",
    b"\x02\x01\x00",
    b"\x02\x09\x01\x00\x00\x00\x00\x00\x00\x00\x00",
    b"=",
    b"[[",
    b"]]",
    b"'''",
    b"0.0.0.0/0",
    b"::/200",
    b"https://[::1]:99999",
];

/// One mutation of `input`, with `others` for splicing. Never longer than `max_len`.
pub fn mutate(input: &[u8], others: &[&[u8]], rng: &mut SplitMix64, max_len: usize) -> Vec<u8> {
    let mut out = input.to_vec();
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        let at = if out.is_empty() { 0 } else { rng.below(out.len() + 1) };
        match rng.below(8) {
            0 if !out.is_empty() => {
                let i = at.min(out.len() - 1);
                out[i] ^= 1 << rng.below(8);
            }
            1 if !out.is_empty() => {
                let i = at.min(out.len() - 1);
                out[i] = rng.next_u64() as u8;
            }
            2 => out.insert(at, rng.next_u64() as u8),
            3 if !out.is_empty() => {
                let start = at.min(out.len() - 1);
                let end = (start + 1 + rng.below(16)).min(out.len());
                out.drain(start..end);
            }
            4 if !out.is_empty() => {
                let start = rng.below(out.len());
                let end = (start + 1 + rng.below(64)).min(out.len());
                let piece = out[start..end].to_vec();
                let times = 1 + rng.below(8);
                for _ in 0..times {
                    out.splice(at..at, piece.iter().copied());
                }
            }
            5 if !others.is_empty() => {
                let other = others[rng.below(others.len())];
                if !other.is_empty() {
                    let start = rng.below(other.len());
                    let end = (start + 1 + rng.below(256)).min(other.len());
                    out.splice(at..at, other[start..end].iter().copied());
                }
            }
            6 => {
                let token = TOKENS[rng.below(TOKENS.len())];
                out.splice(at..at, token.iter().copied());
            }
            _ => {
                // Replace a run of digits (or any byte) by a token: numbers and dates at their edges.
                let token = TOKENS[rng.below(TOKENS.len())];
                let end = (at + token.len().min(8)).min(out.len());
                out.splice(at..end, token.iter().copied());
            }
        }
    }
    out.truncate(max_len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_mix_64_matches_the_published_sequence() {
        // The first outputs for seed 1234567 of the reference implementation.
        let mut rng = SplitMix64::new(1_234_567);
        assert_eq!(rng.next_u64(), 6_457_827_717_110_365_317);
        assert_eq!(rng.next_u64(), 3_203_168_211_198_807_973);
    }

    #[test]
    fn mutations_are_deterministic_and_bounded() {
        let run = || {
            let mut rng = SplitMix64::new(7);
            (0..200).map(|_| mutate(b"<a>1,2</a>", &[b"xyz"], &mut rng, 64)).collect::<Vec<_>>()
        };
        let first = run();
        assert_eq!(first, run());
        assert!(first.iter().all(|m| m.len() <= 64));
        assert!(first.iter().any(|m| m.as_slice() != b"<a>1,2</a>"));
    }
}
