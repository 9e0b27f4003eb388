//! `--fix`: a corrected copy for the cases with exactly one right answer (a missing 枝番, the
//! newer coverage of the same person, the 摘要 of a 不詳 claim from the patient's recorded
//! 被保険者資格申立書), in the file's own encoding and line endings. Untouched
//! lines are copied byte for byte; every change is listed.

use std::collections::BTreeMap;
use std::fmt;

use onshi_domain::ids::InsurerNumber;

use crate::classify::Fix;
use crate::uke::{Claim, UkeFile, encode_line};

/// Where a change is, in the original file's lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Position {
    /// Field `column` (1-based) of line `line` was rewritten.
    Field { line: usize, column: usize },
    /// A new record was inserted after line `after_line`.
    Inserted { after_line: usize },
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Field { line, column } => write!(f, "line {line}, column {column}"),
            Position::Inserted { after_line } => write!(f, "new line after line {after_line}"),
        }
    }
}

/// One listed change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub receipt_number: String,
    pub position: Position,
    /// The record type changed or inserted (HO, SN).
    pub record: String,
    /// The field's name (保険者番号, 枝番, …) or "資格確認レコード" for an insertion.
    pub what: String,
    pub before: String,
    pub after: String,
}

/// The corrected file and its changes.
#[derive(Clone, Debug)]
pub struct Fixed {
    pub bytes: Vec<u8>,
    pub changes: Vec<Change>,
}

#[derive(Debug, thiserror::Error)]
pub enum FixError {
    #[error("line {line}: the corrected record has characters that CP932 cannot hold; the copy was not written")]
    Unencodable { line: usize },
}

/// The number of fields of an SN record (識別 + 8 items).
const SN_FIELDS: usize = 9;
/// 負担者種別 1: the health insurance.
const PAYER_HEALTH_INSURANCE: &str = "1";
/// 確認区分 01: confirmed at the counter (here, through the register).
const CONFIRMED_AT_COUNTER: &str = "01";
/// The comment record a 摘要 is written in: CO, 診療識別 11, 負担区分 1, and the free-text
/// comment code (フリーコメント 810000001), the shape `classify` counts as a claim's comment.
const NOTE_RECORD: [&str; 4] = ["CO", "11", "1", "810000001"];

/// Rewrites `value` in the digit width of `like` (full-width when `like` has full-width
/// characters), so that a corrected field looks like its neighbours.
fn in_width_of(value: &str, like: &str) -> String {
    let full_width = like.chars().any(|c| ('\u{FF01}'..='\u{FF5E}').contains(&c));
    if !full_width {
        return value.to_string();
    }
    value.chars().map(|c| if c.is_ascii_graphic() { char::from_u32(c as u32 + 0xFEE0).unwrap_or(c) } else { c }).collect()
}

/// Edits on the record list, applied when the copy is written.
struct Edits<'a> {
    file: &'a UkeFile,
    fields: BTreeMap<usize, Vec<String>>,
    inserted: BTreeMap<usize, Vec<Vec<String>>>,
    changes: Vec<Change>,
}

impl<'a> Edits<'a> {
    fn set(&mut self, claim: &Claim, record: usize, column: usize, what: &str, value: String) {
        let original = &self.file.records[record];
        let fields = self.fields.entry(record).or_insert_with(|| original.fields.clone());
        if fields.len() <= column {
            fields.resize(column + 1, String::new());
        }
        if fields[column] == value {
            return;
        }
        self.changes.push(Change {
            receipt_number: claim.receipt_number.clone(),
            position: Position::Field { line: original.line, column: column + 1 },
            record: original.kind().to_string(),
            what: what.to_string(),
            before: std::mem::replace(&mut fields[column], value.clone()),
            after: value,
        });
    }

    fn set_branch(&mut self, claim: &Claim, branch: &str) {
        if let Some(confirmation) = &claim.confirmation {
            let like = self.file.records[confirmation.record].field(6).to_string();
            self.set(claim, confirmation.record, 6, "枝番", in_width_of(branch, &like));
            return;
        }
        // SN follows the claim's HO, KO and GR records.
        let after = (claim.record + 1..claim.end)
            .take_while(|&i| matches!(self.file.records[i].kind(), "HO" | "KO" | "GR"))
            .last()
            .unwrap_or(claim.record);
        let mut record = vec![String::new(); SN_FIELDS];
        record[0] = "SN".into();
        record[1] = PAYER_HEALTH_INSURANCE.into();
        record[2] = CONFIRMED_AT_COUNTER.into();
        record[6] = branch.to_string();
        let after_line = self.file.records[after].line;
        self.changes.push(Change {
            receipt_number: claim.receipt_number.clone(),
            position: Position::Inserted { after_line },
            record: "SN".into(),
            what: "資格確認レコード".into(),
            before: String::new(),
            after: record.join(","),
        });
        self.inserted.entry(after).or_default().push(record);
    }

    fn apply(&mut self, claim: &Claim, fix: &Fix) {
        match fix {
            Fix::AddBranch { branch } => self.set_branch(claim, branch),
            Fix::AddNote { text } => {
                // A field holds no comma and the record no line break: they would split it.
                let text: String = text
                    .chars()
                    .map(|c| {
                        if c == ',' {
                            '、'
                        } else if c.is_control() {
                            '　'
                        } else {
                            c
                        }
                    })
                    .collect();
                let mut record: Vec<String> = NOTE_RECORD.iter().map(|f| f.to_string()).collect();
                record.push(text);
                let after = claim.end - 1;
                self.changes.push(Change {
                    receipt_number: claim.receipt_number.clone(),
                    position: Position::Inserted { after_line: self.file.records[after].line },
                    record: "CO".into(),
                    what: "摘要（被保険者資格申立書）".into(),
                    before: String::new(),
                    after: record.join(","),
                });
                self.inserted.entry(after).or_default().push(record);
            }
            Fix::Reroute { coverage } => {
                let Some(insurance) = &claim.insurance else { return };
                let ho = &self.file.records[insurance.record];
                // HO writes 国保's six digits right-aligned with spaces to eight.
                let insurer = InsurerNumber::parse(&coverage.insurer_number).map_or(coverage.insurer_number.clone(), |n| n.padded());
                let symbol = in_width_of(coverage.symbol.as_deref().unwrap_or(""), ho.field(2));
                let number = in_width_of(&coverage.number, ho.field(3));
                self.set(claim, insurance.record, 1, "保険者番号", insurer);
                self.set(claim, insurance.record, 2, "記号", symbol);
                self.set(claim, insurance.record, 3, "番号", number);
                self.set_branch(claim, &coverage.branch);
            }
        }
    }

    fn write(self) -> Result<Fixed, FixError> {
        let layout = self.file.layout;
        let ending = layout.line_ending.as_bytes();
        let mut bytes = Vec::with_capacity(self.file.records.iter().map(|r| r.raw.len() + 2).sum::<usize>() + 64);
        if layout.encoding == (crate::uke::TextEncoding::Utf8 { bom: true }) {
            bytes.extend_from_slice(b"\xEF\xBB\xBF");
        }
        let encode = |fields: &[String], line: usize| encode_line(&fields.join(","), layout.encoding).ok_or(FixError::Unencodable { line });
        let count = self.file.records.len();
        for (index, record) in self.file.records.iter().enumerate() {
            match self.fields.get(&index) {
                Some(fields) => bytes.extend(encode(fields, record.line)?),
                None => bytes.extend_from_slice(&record.raw),
            }
            let inserted = self.inserted.get(&index).map_or(&[][..], Vec::as_slice);
            for new in inserted {
                bytes.extend_from_slice(ending);
                bytes.extend(encode(new, record.line)?);
            }
            if index + 1 < count || layout.final_newline {
                bytes.extend_from_slice(ending);
            }
        }
        if layout.eof_marker {
            bytes.push(0x1A);
        }
        Ok(Fixed { bytes, changes: self.changes })
    }
}

/// Writes a copy of `file` with `fixes` (claim index, fix) applied.
pub fn apply(file: &UkeFile, fixes: &[(usize, Fix)]) -> Result<Fixed, FixError> {
    let mut edits = Edits { file, fields: BTreeMap::new(), inserted: BTreeMap::new(), changes: Vec::new() };
    for (claim, fix) in fixes {
        edits.apply(&file.claims[*claim], fix);
    }
    edits.write()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uke::{self, LineEnding, TextEncoding};
    use onshi_api::verify::Coverage;

    fn sample() -> (Vec<u8>, UkeFile) {
        let bytes = std::fs::read(crate::fixtures::sample_uke()).expect("the sample");
        let file = uke::read(&bytes).expect("reads");
        (bytes, file)
    }

    fn coverage(insurer: &str, symbol: &str, number: &str, branch: &str) -> Coverage {
        crate::fixtures::coverage(insurer, symbol, number, branch, "20210101", None)
    }

    /// The original records with the listed changes applied, as field lists.
    fn with_changes(original: &UkeFile, changes: &[Change]) -> Vec<Vec<String>> {
        let mut out: Vec<(usize, Vec<String>)> = original.records.iter().map(|r| (r.line, r.fields.clone())).collect();
        for change in changes {
            match change.position {
                Position::Field { line, column } => {
                    let fields = &mut out.iter_mut().find(|(l, _)| *l == line).expect("line").1;
                    fields.resize(fields.len().max(column), String::new());
                    assert_eq!(fields[column - 1], change.before);
                    fields[column - 1] = change.after.clone();
                }
                Position::Inserted { after_line } => {
                    let at = out.iter().rposition(|(l, _)| *l == after_line).expect("line") + 1;
                    out.insert(at, (after_line, change.after.split(',').map(str::to_string).collect()));
                }
            }
        }
        out.into_iter().map(|(_, f)| f).collect()
    }

    #[test]
    fn without_fixes_the_copy_is_the_input_byte_for_byte() {
        let (bytes, file) = sample();
        let fixed = apply(&file, &[]).expect("writes");
        assert!(fixed.changes.is_empty());
        assert_eq!(fixed.bytes, bytes);
    }

    #[test]
    fn the_copy_differs_from_the_input_exactly_in_the_listed_changes() {
        let (_, file) = sample();
        let fixes = vec![
            (0, Fix::AddBranch { branch: "01".into() }),
            (1, Fix::AddBranch { branch: "02".into() }),
            (5, Fix::Reroute { coverage: Box::new(coverage("138057", "12", "345", "00")) }),
        ];
        let fixed = apply(&file, &fixes).expect("writes");
        let reread = uke::read(&fixed.bytes).expect("the copy reads");
        assert_eq!(reread.layout, file.layout, "same encoding, line endings and end");
        let fields: Vec<Vec<String>> = reread.records.iter().map(|r| r.fields.clone()).collect();
        assert_eq!(fields, with_changes(&file, &fixed.changes));
        assert_eq!(reread.claims.len(), file.claims.len());
        assert_eq!(reread.claims[0].branch(), Some("01"), "SN inserted after HO/KO");
        assert_eq!(reread.claims[1].branch(), Some("02"), "the existing SN's 枝番 rewritten");
        let rerouted = reread.claims[5].insurance.as_ref().expect("HO");
        assert_eq!(rerouted.insurer_text, "  138057", "国保 right-aligned with spaces");
        assert_eq!((rerouted.symbol.as_str(), rerouted.number.as_str()), ("12", "345"));
        assert_eq!(reread.records[reread.claims[5].insurance.as_ref().unwrap().record].field(2), "１２", "full-width like the input");
        assert_eq!(reread.claims[5].branch(), Some("00"));
        assert_eq!(reread.points_total(), file.points_total());
        // Three fields of HO and one insertion for the reroute, one insertion, one field.
        assert_eq!(fixed.changes.len(), 6, "{:#?}", fixed.changes);
    }

    #[test]
    fn a_note_is_a_comment_at_the_claims_end_and_cannot_split_the_record() {
        let (_, file) = sample();
        let claim = &file.claims[3];
        let fixed = apply(&file, &[(3, Fix::AddNote { text: "被保険者資格申立書による、ﾐﾄｳ ｼﾞﾛｳ\n東京都".into() })]).expect("writes");
        let reread = uke::read(&fixed.bytes).expect("the copy reads");
        assert_eq!(reread.claims[3].comments, claim.comments + 1, "one more comment on that claim");
        let last = &reread.records[reread.claims[3].end - 1];
        assert_eq!(last.fields[..4], ["CO", "11", "1", "810000001"]);
        assert_eq!(last.field(4), "被保険者資格申立書による、ﾐﾄｳ ｼﾞﾛｳ　東京都", "no comma, no line break");
        assert_eq!(last.fields.len(), 5);
        let fields: Vec<Vec<String>> = reread.records.iter().map(|r| r.fields.clone()).collect();
        assert_eq!(fields, with_changes(&file, &fixed.changes));
        assert_eq!(reread.points_total(), file.points_total());
    }

    #[test]
    fn utf8_lf_and_an_eof_byte_survive_a_fix() {
        let (bytes, _) = sample();
        let text = encoding_rs::SHIFT_JIS.decode(&bytes).0.replace("\r\n", "\n");
        let mut utf8 = text.into_bytes();
        utf8.push(0x1A);
        let file = uke::read(&utf8).expect("reads");
        assert_eq!((file.layout.encoding, file.layout.line_ending), (TextEncoding::Utf8 { bom: false }, LineEnding::Lf));
        let fixed = apply(&file, &[(2, Fix::AddBranch { branch: "00".into() })]).expect("writes");
        let reread = uke::read(&fixed.bytes).expect("reads");
        assert_eq!(reread.layout, file.layout);
        assert_eq!(fixed.bytes.len(), utf8.len() + "SN,1,01,,,,00,,\n".len());
    }
}
