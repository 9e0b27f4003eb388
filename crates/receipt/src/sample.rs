//! Writes claim files for tests and benchmarks: the records a receipt computer writes for
//! simple 外来 claims (RE, HO, SN, SI, GO), CP932 with CRLF.

use onshi_domain::Date;
use onshi_domain::ids::{InstitutionCode, InsurerNumber};

use crate::uke::{TextEncoding, YearMonth, encode_line};

/// One simple outpatient claim.
#[derive(Clone, Debug)]
pub struct ClaimSpec {
    /// 保険者番号 (6 digits for 国保, written right-aligned with spaces).
    pub insurer: String,
    pub symbol: String,
    pub number: String,
    /// 枝番, recorded in an SN record when present.
    pub branch: Option<String>,
    pub birth_date: Date,
    pub sex: String,
    /// Days of care in the treatment month.
    pub care_days: Vec<u8>,
    pub points: u64,
    /// 氏名 and カタカナ氏名; `None` writes a placeholder patient name.
    pub name: Option<(String, String)>,
}

/// A complete claim file for `institution`, billed in the month after `treatment_month`.
pub fn claim_file(institution: &InstitutionCode, treatment_month: YearMonth, claims: &[ClaimSpec]) -> Vec<u8> {
    let code = institution.as_str();
    let billing = YearMonth::from_date(treatment_month.first_day().first_of_next_month());
    let mut text = format!("IR,1,{},{},{},,オンシ医院,{billing},00,0312345678\r\n", &code[..2], &code[2..3], &code[3..]);
    for (n, claim) in claims.iter().enumerate() {
        let number = n + 1;
        let (name, kana) = claim.name.clone().unwrap_or_else(|| ("シケン　カンジャ".into(), "シケン　カンジャ".into()));
        text.push_str(&format!(
            "RE,{number},1112,{treatment_month},{name},{},{},,,,,,,{number:08},,,,,,,,,,,,,,,,,,,,,,,{kana},\r\n",
            claim.sex,
            claim.birth_date.yyyymmdd()
        ));
        // HO writes 国保's six digits right-aligned with spaces, as the XML files do.
        let insurer = InsurerNumber::parse(&claim.insurer).map_or_else(|_| claim.insurer.clone(), |n| n.padded());
        text.push_str(&format!("HO,{insurer},{},{},{},{},,,,,,,,,\r\n", claim.symbol, claim.number, claim.care_days.len(), claim.points));
        if let Some(branch) = &claim.branch {
            text.push_str(&format!("SN,1,01,,,,{branch},,\r\n"));
        }
        let mut days = vec![String::new(); 31];
        for day in &claim.care_days {
            days[usize::from(*day) - 1] = "1".to_string();
        }
        text.push_str(&format!("SI,11,1,111000110,,{},{},,,,,,,{}\r\n", claim.points, claim.care_days.len(), days.join(",")));
    }
    let points: u64 = claims.iter().map(|c| c.points).sum();
    text.push_str(&format!("GO,{},{points},99\r\n", claims.len()));
    encode_line(&text, TextEncoding::Cp932).expect("the sample text is CP932")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uke;

    #[test]
    fn a_written_file_reads_back_without_problems() {
        let institution = InstitutionCode::with_check_digit("131123456").unwrap();
        let spec = |insurer: &str, branch: Option<&str>| ClaimSpec {
            insurer: insurer.into(),
            symbol: "12".into(),
            number: "345".into(),
            branch: branch.map(str::to_string),
            birth_date: Date::parse_yyyymmdd("19800101").unwrap(),
            sex: "2".into(),
            care_days: vec![3, 17],
            points: 250,
            name: None,
        };
        let month = YearMonth::parse("202610").unwrap();
        let bytes = claim_file(&institution, month, &[spec("06130488", Some("01")), spec("138057", None)]);
        let file = uke::read(&bytes).expect("reads");
        assert!(file.diagnostics.is_empty(), "{:?}", file.diagnostics);
        assert_eq!(file.institution.code.as_ref(), Some(&institution));
        assert_eq!(file.institution.billing_month, YearMonth::parse("202611"));
        assert_eq!(file.claims.len(), 2);
        assert_eq!(file.claims[0].branch(), Some("01"));
        assert_eq!(file.claims[0].care_days, [3, 17]);
        assert_eq!(file.claims[1].insurance.as_ref().unwrap().insurer_text, "  138057");
        assert_eq!(file.points_total(), 500);
    }
}
