//! Where the shared real-world sample files are, for tests and benchmarks.

use std::path::PathBuf;

/// The directory of shared fixtures: `ONSHI_FIXTURES` when set, else `shared/fixtures` beside
/// this checkout or one of its ancestors (the team's layout puts the project in `main/` next to
/// `shared/`). Only places relative to the repository are looked at; when none holds the
/// fixtures, the panic names the folder and what belongs in it (the sample stays outside the
/// repository, with its licence).
pub fn dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ONSHI_FIXTURES") {
        return PathBuf::from(dir);
    }
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.ancestors().map(|a| a.join("shared/fixtures")).find(|candidate| candidate.join("uke").is_dir()).unwrap_or_else(|| {
        let expected = here.ancestors().nth(3).map_or_else(|| here.join("shared/fixtures"), |root| root.join("shared/fixtures"));
        panic!(
            "the shared fixtures are missing: put the folder `uke/` holding RECEIPTC_GAIRAI_SAMPLE.UKE (the published 外来 \
             sample claim file of yokenzan/receiptisan, MIT, with its LICENSE-receiptisan.txt) in {}, the `shared/` folder \
             beside this repository, or set ONSHI_FIXTURES to a folder that holds `uke/`",
            expected.display()
        )
    })
}

/// The published 外来 sample claim file (CP932, CRLF; yokenzan/receiptisan, MIT).
pub fn sample_uke() -> PathBuf {
    let path = dir().join("uke/RECEIPTC_GAIRAI_SAMPLE.UKE");
    if !path.is_file() {
        panic!(
            "{} is missing: the published 外来 sample claim file (yokenzan/receiptisan, MIT) belongs there, with its licence",
            path.display()
        );
    }
    path
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
        qualification_certificate: None,
    }
}
