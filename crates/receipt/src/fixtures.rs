//! Where the shared real-world sample files are, for tests and benchmarks.

use std::path::PathBuf;

/// The directory of shared fixtures: `ONSHI_FIXTURES` when set, else `shared/fixtures` beside
/// this checkout or one of its ancestors (the team's layout puts the project in `main/` next to
/// `shared/`).
pub fn dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ONSHI_FIXTURES") {
        return PathBuf::from(dir);
    }
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .map(|a| a.join("shared/fixtures"))
        .chain(std::iter::once(PathBuf::from("/work/shared/fixtures")))
        .find(|candidate| candidate.join("uke").is_dir())
        .unwrap_or_else(|| {
            panic!("the shared fixtures were not found beside {}: set ONSHI_FIXTURES to the fixtures directory", here.display())
        })
}

/// The published 外来 sample claim file (CP932, CRLF; yokenzan/receiptisan, MIT).
pub fn sample_uke() -> PathBuf {
    dir().join("uke/RECEIPTC_GAIRAI_SAMPLE.UKE")
}

/// A coverage as the center answers it, with the fields the pre-check reads.
#[cfg(test)]
pub(crate) fn coverage(
    insurer: &str,
    symbol: &str,
    number: &str,
    branch: &str,
    acquired: &str,
    lost: Option<&str>,
) -> onshi_api::verify::Coverage {
    let label = |code: &str| onshi_api::verify::CodeLabel { code: code.into(), label: String::new() };
    onshi_api::verify::Coverage {
        insurer_number: insurer.into(),
        symbol: Some(symbol.into()),
        number: number.into(),
        branch: branch.into(),
        card_classification: label("01"),
        relationship: label("1"),
        name: String::new(),
        name_kana: String::new(),
        insured_name: None,
        sex: label("1"),
        birth_date: "19800101".into(),
        address: None,
        post_code: None,
        acquired_on: acquired.into(),
        lost_on: lost.map(str::to_string),
        loss_reason: None,
        copay_ratio_percent: None,
        preschool: false,
        elderly_recipient: false,
        limit: None,
        public_expense: Vec::new(),
    }
}
