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
