//! The UKE claim file (レセプト電算処理システム, `RECEIPTC.UKE`) as receipt computers really write
//! it: CSV without quoting, one record per line, CP932 (or UTF-8 from some web clients), CRLF,
//! sometimes an EOF byte 0x1A at the end, full-width digits in 記号・番号.
//!
//! Reading keeps every line (its bytes and its fields) so that a corrected copy can reproduce
//! the untouched lines byte for byte, and builds typed claims on top. Problems are collected
//! as [`Diagnostic`]s with line and column; only a file that cannot be decoded or is not a
//! claim file at all is refused outright ([`ReadError`]).

use std::fmt;

use encoding_rs::SHIFT_JIS;
use onshi_domain::ids::{InstitutionCode, InsurerNumber, PublicPayerNumber, RecipientNumber, to_half_width};
use onshi_domain::{Date, FieldError};

/// The byte some receipt computers append after the last line (DOS end-of-file).
const EOF_MARKER: u8 = 0x1A;

/// Record types of the 医科 recording conditions; anything else is kept and reported.
const KNOWN_RECORDS: [&str; 22] =
    ["IR", "RE", "HO", "KO", "GR", "SN", "JD", "MF", "SY", "SI", "IY", "TO", "CO", "SJ", "TI", "TR", "TS", "GA", "GT", "HH", "KK", "GO"];

/// How the file's text is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextEncoding {
    /// Shift_JIS as Windows writes it (CP932 / Windows-31J): the recording conditions' encoding.
    Cp932,
    /// UTF-8 (web-based receipt computers), with or without a byte-order mark.
    Utf8 { bom: bool },
}

impl fmt::Display for TextEncoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TextEncoding::Cp932 => f.write_str("CP932 (Shift_JIS)"),
            TextEncoding::Utf8 { bom: false } => f.write_str("UTF-8"),
            TextEncoding::Utf8 { bom: true } => f.write_str("UTF-8 with BOM"),
        }
    }
}

/// How lines end, so that a corrected copy ends them the same way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineEnding {
    CrLf,
    Lf,
}

impl LineEnding {
    pub fn as_bytes(self) -> &'static [u8] {
        match self {
            LineEnding::CrLf => b"\r\n",
            LineEnding::Lf => b"\n",
        }
    }
}

/// The physical shape of the file: everything needed to write a copy the same way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub encoding: TextEncoding,
    pub line_ending: LineEnding,
    /// The file ends with 0x1A.
    pub eof_marker: bool,
    /// The last line ends with a line ending.
    pub final_newline: bool,
}

/// One line of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// 1-based line number.
    pub line: usize,
    /// The comma-separated fields, decoded; field 0 is the record type.
    pub fields: Vec<String>,
    /// The line's bytes as read, without the line ending.
    pub raw: Vec<u8>,
}

impl Record {
    pub fn kind(&self) -> &str {
        self.fields.first().map_or("", String::as_str)
    }

    /// Field `index` (0-based), or "" when the record is shorter.
    pub fn field(&self, index: usize) -> &str {
        self.fields.get(index).map_or("", String::as_str)
    }
}

/// How bad a problem is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Worth knowing; the file is otherwise usable.
    Warning,
    /// The file or a claim in it will be refused as it stands.
    Error,
}

/// A problem found while reading, located as precisely as the file allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// 1-based line number, when the problem belongs to a line.
    pub line: Option<usize>,
    /// 1-based column, counted in fields (the record type is column 1).
    pub column: Option<usize>,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = match self.severity {
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        match (self.line, self.column) {
            (Some(line), Some(column)) => write!(f, "{severity}: line {line}, column {column}: {}", self.message),
            (Some(line), None) => write!(f, "{severity}: line {line}: {}", self.message),
            _ => write!(f, "{severity}: {}", self.message),
        }
    }
}

/// A file that cannot be read as a claim file at all.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("the file is empty: export the claim file (RECEIPTC.UKE) again from the receipt computer")]
    Empty,
    #[error(
        "line {line}, byte {byte}: the text is neither CP932 (Shift_JIS) nor UTF-8 (a damaged copy, or another encoding such as EUC-JP or UTF-16); export the claim file again from the receipt computer"
    )]
    Encoding { line: usize, byte: usize },
    #[error(
        "line 1: this is not a UKE claim file: it starts with {found:?} where a claim file starts with the IR record (医療機関情報); check that you chose RECEIPTC.UKE"
    )]
    NotAClaimFile { found: String },
}

/// 医療機関情報 (IR).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Institution {
    /// 審査支払機関: 1 社会保険診療報酬支払基金, 2 国民健康保険団体連合会.
    pub review_body: String,
    /// 都道府県 (2 digits).
    pub prefecture: String,
    /// 点数表 (1 医科).
    pub score_table: String,
    /// The 7-digit 医療機関コード as the IR record writes it.
    pub code7: String,
    /// The full 10-digit code (都道府県 + 点数表 + 7 digits), when it passes its check digit.
    pub code: Option<InstitutionCode>,
    pub name: String,
    /// 請求年月 YYYYMM.
    pub billing_month: Option<YearMonth>,
}

/// A calendar month, as in 診療年月 and 請求年月.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct YearMonth {
    pub year: u16,
    pub month: u8,
}

impl YearMonth {
    pub fn parse(text: &str) -> Option<YearMonth> {
        if text.len() != 6 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let year: u16 = text[..4].parse().ok()?;
        let month: u8 = text[4..].parse().ok()?;
        Date::new(year, month, 1)?;
        Some(YearMonth { year, month })
    }

    pub fn from_date(date: Date) -> YearMonth {
        YearMonth { year: date.year(), month: date.month() }
    }

    pub fn day(self, day: u8) -> Option<Date> {
        Date::new(self.year, self.month, day)
    }

    pub fn first_day(self) -> Date {
        Date::new(self.year, self.month, 1).expect("a valid month")
    }

    pub fn last_day(self) -> Date {
        self.first_day().first_of_next_month().add_days(-1)
    }
}

impl fmt::Display for YearMonth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}{:02}", self.year, self.month)
    }
}

/// The insurer numbers of a claim billed as 不詳 (coverage unknown at the counter, on the
/// patient's 被保険者資格申立書; MHLW 2023-07): 77777777, or 77777779 for a receipt computer
/// that checks the check digit.
pub const UNKNOWN_INSURERS: [&str; 2] = ["77777777", "77777779"];

/// 保険者レコード (HO): the health-insurance coverage the claim is billed to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Insurance {
    /// Index of the HO record in [`UkeFile::records`].
    pub record: usize,
    /// The insurer number as written (国保 numbers right-aligned with spaces).
    pub insurer_text: String,
    /// The number when it can be right (digits, law number, prefecture, check digit).
    pub insurer: Result<InsurerNumber, FieldError>,
    /// 記号, half-width.
    pub symbol: String,
    /// 番号, half-width.
    pub number: String,
    /// 合計点数.
    pub points: u64,
    /// Billed as 不詳 ([`UNKNOWN_INSURERS`]): no 記号・番号 are expected.
    pub unknown: bool,
}

/// 公費レコード (KO).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicExpense {
    pub record: usize,
    pub payer_text: String,
    pub payer: Result<PublicPayerNumber, FieldError>,
    pub recipient_text: String,
    /// `None` when the claim leaves the recipient number empty (some 公費 have none).
    pub recipient: Option<Result<RecipientNumber, FieldError>>,
    pub points: u64,
}

/// 資格確認レコード (SN) for the health insurance (負担者種別 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Confirmation {
    pub record: usize,
    /// 確認区分 (01 資格確認 at the counter, …).
    pub confirmation_kind: String,
    /// 枝番 as written (2 digits), empty when not recorded.
    pub branch: String,
}

/// One claim (レセプト): the RE record and everything up to the next RE or GO.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// Index of the RE record in [`UkeFile::records`].
    pub record: usize,
    /// Index one past the claim's last record.
    pub end: usize,
    /// レセプト番号.
    pub receipt_number: String,
    /// レセプト種別 (別表5).
    pub claim_kind: String,
    /// 診療年月; `None` when unreadable (reported).
    pub treatment_month: Option<YearMonth>,
    /// 氏名 as written.
    pub name: String,
    /// カタカナ氏名 (RE column 36), as written; empty in files made before the column existed.
    pub name_kana: String,
    /// Comment records (CO) in the claim: where its 摘要 is written.
    pub comments: usize,
    /// 男女区分.
    pub sex: String,
    /// 生年月日; `None` when unreadable (reported).
    pub birth_date: Option<Date>,
    /// カルテ番号等.
    pub chart_number: String,
    pub insurance: Option<Insurance>,
    pub public_expenses: Vec<PublicExpense>,
    pub confirmation: Option<Confirmation>,
    /// Days of the treatment month with care, from JD or else from the SI/IY/TO day columns;
    /// empty when the file does not say.
    pub care_days: Vec<u8>,
    /// The days came from a JD record, which outranks the day columns of the items.
    pub care_days_from_jd: bool,
    /// The claim's points: the HO total, or the first KO total for a 公費-only claim.
    pub points: u64,
    /// Errors that make the claim unusable as it stands (unreadable month or birth date).
    pub unreadable: Vec<String>,
}

impl Claim {
    /// 枝番 recorded in SN, if any.
    pub fn branch(&self) -> Option<&str> {
        self.confirmation.as_ref().map(|c| c.branch.as_str()).filter(|b| !b.is_empty())
    }

    /// The first and the last day of care, or the month's first and last day when the file
    /// does not record days. A coverage is one interval, so checking both ends checks all days.
    pub fn care_span(&self) -> Option<(Date, Date)> {
        let month = self.treatment_month?;
        let first = self.care_days.first().and_then(|d| month.day(*d)).unwrap_or(month.first_day());
        let last = self.care_days.last().and_then(|d| month.day(*d)).unwrap_or(month.last_day());
        Some((first, last))
    }
}

/// 診療報酬請求書レコード (GO): the file's totals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Totals {
    pub record: usize,
    /// 総件数, `None` when unreadable (reported).
    pub claims: Option<u64>,
    /// 総合計点数, `None` when unreadable (reported).
    pub points: Option<u64>,
}

/// A claim file as read.
#[derive(Clone, Debug)]
pub struct UkeFile {
    pub layout: Layout,
    pub records: Vec<Record>,
    pub institution: Institution,
    pub claims: Vec<Claim>,
    pub totals: Option<Totals>,
    pub diagnostics: Vec<Diagnostic>,
}

impl UkeFile {
    /// The claims' points added up as the GO record should state them.
    pub fn points_total(&self) -> u64 {
        // Saturating: each claim's points have at most 9 digits (the reader refuses more), so
        // this cannot reach u64::MAX, but a total must never panic on a file built in code.
        self.claims.iter().fold(0u64, |total, c| total.saturating_add(c.points))
    }

    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(|d| d.severity == Severity::Error)
    }
}

/// The most digits a count or a point total of a claim file has (総合計点数 in GO: 9).
pub const NUMBER_DIGITS_MAX: usize = 9;

/// Reads a claim file from its bytes.
pub fn read(bytes: &[u8]) -> Result<UkeFile, ReadError> {
    let (layout, lines) = split_lines(bytes)?;
    let mut records = Vec::with_capacity(lines.len());
    for (index, raw) in lines.into_iter().enumerate() {
        let text = decode_line(raw, layout.encoding).ok_or_else(|| ReadError::Encoding { line: index + 1, byte: bad_byte(raw) + 1 })?;
        let fields = text.split(',').map(str::to_string).collect();
        records.push(Record { line: index + 1, fields, raw: raw.to_vec() });
    }
    let Some(first) = records.first() else { return Err(ReadError::Empty) };
    if first.kind() != "IR" {
        return Err(ReadError::NotAClaimFile { found: first.raw.iter().take(20).map(|&b| b as char).collect() });
    }
    Ok(Parser::default().parse(layout, records))
}

/// Splits the bytes into lines (without endings) and notes the layout. Splitting bytes on LF
/// is safe in CP932: no trail byte is below 0x40.
fn split_lines(bytes: &[u8]) -> Result<(Layout, Vec<&[u8]>), ReadError> {
    let (bytes, bom) = match bytes.strip_prefix(b"\xEF\xBB\xBF") {
        Some(rest) => (rest, true),
        None => (bytes, false),
    };
    let (bytes, eof_marker) = match bytes.strip_suffix(&[EOF_MARKER]) {
        Some(rest) => (rest, true),
        None => (bytes, false),
    };
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ReadError::Empty);
    }
    if let Some(zero) = bytes.iter().position(|&b| b == 0) {
        let line = bytes[..zero].iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = bytes[..zero].iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
        return Err(ReadError::Encoding { line, byte: zero - line_start + 1 });
    }
    let final_newline = bytes.ends_with(b"\n");
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let line_ending = if body.split(|&b| b == b'\n').next().is_some_and(|l| l.ends_with(b"\r")) || bytes.ends_with(b"\r\n") {
        LineEnding::CrLf
    } else {
        LineEnding::Lf
    };
    let lines: Vec<&[u8]> = body.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l)).collect();
    let encoding = if std::str::from_utf8(bytes).is_ok() { TextEncoding::Utf8 { bom } } else { TextEncoding::Cp932 };
    Ok((Layout { encoding, line_ending, eof_marker, final_newline }, lines))
}

fn decode_line(raw: &[u8], encoding: TextEncoding) -> Option<String> {
    match encoding {
        TextEncoding::Utf8 { .. } => std::str::from_utf8(raw).ok().map(str::to_string),
        TextEncoding::Cp932 => SHIFT_JIS.decode_without_bom_handling_and_without_replacement(raw).map(|c| c.into_owned()),
    }
}

/// The 0-based byte offset of the first byte that does not decode as CP932.
fn bad_byte(raw: &[u8]) -> usize {
    let mut decoder = SHIFT_JIS.new_decoder_without_bom_handling();
    let mut out = String::with_capacity(raw.len() * 3);
    for end in 1..=raw.len() {
        out.clear();
        let (result, _) = decoder.decode_to_string_without_replacement(&raw[end - 1..end], &mut out, false);
        if matches!(result, encoding_rs::DecoderResult::Malformed(..)) {
            return end - 1;
        }
    }
    raw.len().saturating_sub(1)
}

/// Encodes a line for a copy in the file's encoding. `None` when a character has no CP932 form.
pub fn encode_line(text: &str, encoding: TextEncoding) -> Option<Vec<u8>> {
    match encoding {
        TextEncoding::Utf8 { .. } => Some(text.as_bytes().to_vec()),
        TextEncoding::Cp932 => {
            let (bytes, _, unmappable) = SHIFT_JIS.encode(text);
            (!unmappable).then(|| bytes.into_owned())
        }
    }
}

/// Builds claims from the records, collecting diagnostics.
#[derive(Default)]
struct Parser {
    diagnostics: Vec<Diagnostic>,
}

impl Parser {
    fn error(&mut self, record: &Record, column: Option<usize>, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic { severity: Severity::Error, line: Some(record.line), column, message: message.into() });
    }

    fn warning(&mut self, line: Option<usize>, column: Option<usize>, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic { severity: Severity::Warning, line, column, message: message.into() });
    }

    fn parse(mut self, layout: Layout, records: Vec<Record>) -> UkeFile {
        let institution = self.institution(&records[0]);
        let mut claims: Vec<Claim> = Vec::new();
        let mut totals: Option<Totals> = None;
        let mut reported_unknown: Vec<String> = Vec::new();
        for (index, record) in records.iter().enumerate().skip(1) {
            let kind = record.kind();
            if totals.is_some() && !(kind.is_empty() && record.fields.len() == 1) {
                self.warning(Some(record.line), None, format!("record {kind} after the closing GO record is ignored by the review body"));
            }
            match kind {
                "RE" => {
                    if let Some(open) = claims.last_mut() {
                        open.end = index;
                    }
                    let claim = self.claim(index, record);
                    claims.push(claim);
                }
                "GO" => {
                    if let Some(open) = claims.last_mut() {
                        open.end = index;
                    }
                    totals = Some(self.totals(index, record));
                }
                "" if record.fields.len() == 1 => self.warning(Some(record.line), None, "empty line"),
                "IR" => self.error(record, Some(1), "a second IR record: one claim file holds one institution's claims for one month"),
                _ => {
                    if !KNOWN_RECORDS.contains(&kind) && !reported_unknown.iter().any(|k| k == kind) {
                        reported_unknown.push(kind.to_string());
                        self.warning(Some(record.line), Some(1), format!("unknown record type {kind:?}: kept as it is, not interpreted"));
                    }
                    match claims.last_mut() {
                        Some(claim) if totals.is_none() => self.attach(claim, index, record),
                        _ if totals.is_some() => {}
                        _ => self.error(record, Some(1), format!("record {kind} comes before the first RE record: it belongs to no claim")),
                    }
                }
            }
        }
        if totals.is_none() {
            if let Some(open) = claims.last_mut() {
                open.end = records.len();
            }
            let last = records.last().map_or(1, |r| r.line);
            self.diagnostics.push(Diagnostic {
                severity: Severity::Error,
                line: Some(last),
                column: None,
                message: format!(
                    "the file ends at line {last} without the closing GO record: it was cut short (an incomplete copy or an interrupted export); export the claim file again"
                ),
            });
        }
        for claim in &mut claims {
            claim.care_days.sort_unstable();
            claim.care_days.dedup();
            claim.points = claim.insurance.as_ref().map(|h| h.points).or(claim.public_expenses.first().map(|k| k.points)).unwrap_or(0);
        }
        let mut file = UkeFile { layout, records, institution, claims, totals, diagnostics: Vec::new() };
        self.check_totals(&file);
        file.diagnostics = self.diagnostics;
        file
    }

    fn institution(&mut self, record: &Record) -> Institution {
        let code7 = to_half_width(record.field(4));
        let full = format!("{}{}{}", record.field(2), record.field(3), code7);
        let code = match InstitutionCode::parse(&full) {
            Ok(code) => Some(code),
            Err(e) => {
                self.warning(
                    Some(record.line),
                    Some(5),
                    format!("医療機関コード {full} (都道府県 + 点数表 + IR code) {}: the review body will refuse the file", e.reason),
                );
                None
            }
        };
        let billing_month = YearMonth::parse(record.field(7));
        if billing_month.is_none() {
            self.error(record, Some(8), format!("請求年月 {:?} is not a month written YYYYMM", record.field(7)));
        }
        Institution {
            review_body: record.field(1).to_string(),
            prefecture: record.field(2).to_string(),
            score_table: record.field(3).to_string(),
            code7,
            code,
            name: record.field(6).to_string(),
            billing_month,
        }
    }

    fn claim(&mut self, index: usize, record: &Record) -> Claim {
        let mut unreadable = Vec::new();
        let receipt_number = record.field(1).to_string();
        if receipt_number.is_empty() || !receipt_number.bytes().all(|b| b.is_ascii_digit()) {
            self.error(record, Some(2), format!("レセプト番号 {receipt_number:?} is not a number"));
        }
        let treatment_month = YearMonth::parse(record.field(3));
        if treatment_month.is_none() {
            let message = format!("診療年月 {:?} is not a month written YYYYMM", record.field(3));
            self.error(record, Some(4), message.clone());
            unreadable.push(message);
        }
        let birth_date = Date::parse_yyyymmdd(record.field(6)).ok();
        if birth_date.is_none() {
            // The value is a birth date: say what is wrong without repeating it.
            let message = format!("生年月日 is not a date written YYYYMMDD ({} characters)", record.field(6).chars().count());
            self.error(record, Some(7), message.clone());
            unreadable.push(message);
        }
        Claim {
            record: index,
            end: index + 1,
            receipt_number,
            claim_kind: record.field(2).to_string(),
            treatment_month,
            name: record.field(4).to_string(),
            name_kana: record.field(36).to_string(),
            comments: 0,
            sex: record.field(5).to_string(),
            birth_date,
            chart_number: record.field(13).to_string(),
            insurance: None,
            public_expenses: Vec::new(),
            confirmation: None,
            care_days: Vec::new(),
            care_days_from_jd: false,
            points: 0,
            unreadable,
        }
    }

    /// A count or total; empty reads as 0, anything else not a number is reported.
    fn number(&mut self, record: &Record, column: usize, what: &str) -> Option<u64> {
        let text = record.field(column);
        if text.is_empty() {
            return Some(0);
        }
        let parsed = text.parse().ok();
        if parsed.is_none() {
            self.error(record, Some(column + 1), format!("{what} {text:?} is not a number"));
            return None;
        }
        // The record layout gives these fields at most 9 digits; a longer number is a damaged
        // file, and summing such numbers overflowed (a panic; found writing the uke fuzz target).
        if text.len() > NUMBER_DIGITS_MAX {
            self.error(
                record,
                Some(column + 1),
                format!("{what} {text:?} has more than {NUMBER_DIGITS_MAX} digits; no count or total of a claim file is that large"),
            );
            return None;
        }
        parsed
    }

    fn attach(&mut self, claim: &mut Claim, index: usize, record: &Record) {
        match record.kind() {
            "HO" => {
                if claim.insurance.is_some() {
                    self.error(record, Some(1), "a second HO record in one claim");
                    return;
                }
                let insurer_text = record.field(1).to_string();
                let insurer = InsurerNumber::parse(&insurer_text);
                // A 不詳 claim is written so on purpose, without 記号・番号.
                let unknown = UNKNOWN_INSURERS.contains(&to_half_width(insurer_text.trim()).as_str());
                if let (Err(e), false) = (&insurer, unknown) {
                    self.error(record, Some(2), format!("保険者番号 {insurer_text:?} cannot be right: it {}", e.reason));
                }
                let number = to_half_width(record.field(3));
                if number.is_empty() && !unknown {
                    self.error(record, Some(4), "番号 is empty");
                }
                let points = self.number(record, 5, "合計点数").unwrap_or(0);
                claim.insurance = Some(Insurance {
                    record: index,
                    insurer_text,
                    insurer,
                    symbol: to_half_width(record.field(2)),
                    number,
                    points,
                    unknown,
                });
            }
            "KO" => {
                let payer_text = record.field(1).to_string();
                let payer = PublicPayerNumber::parse(&payer_text);
                if let Err(e) = &payer {
                    self.error(record, Some(2), format!("公費負担者番号 {payer_text:?} cannot be right: it {}", e.reason));
                }
                let recipient_text = record.field(2).to_string();
                let recipient = (!recipient_text.trim().is_empty()).then(|| RecipientNumber::parse(&recipient_text));
                if let Some(Err(e)) = &recipient {
                    self.error(record, Some(3), format!("公費受給者番号 {recipient_text:?} cannot be right: it {}", e.reason));
                }
                let points = self.number(record, 5, "合計点数").unwrap_or(0);
                claim.public_expenses.push(PublicExpense { record: index, payer_text, payer, recipient_text, recipient, points });
            }
            "SN" if record.field(1) == "1" => {
                let branch = to_half_width(record.field(6));
                if !branch.is_empty() && (branch.len() != 2 || !branch.bytes().all(|b| b.is_ascii_digit())) {
                    self.error(record, Some(7), format!("枝番 {branch:?} is not two digits"));
                }
                claim.confirmation = Some(Confirmation { record: index, confirmation_kind: record.field(2).to_string(), branch });
            }
            "JD" if record.field(1) == "1" => {
                // 受診日等: columns 2–32 are days 1–31; any code there means a visit that day.
                claim.care_days = (1..=31u8).filter(|day| !record.field(1 + *day as usize).is_empty()).collect();
                claim.care_days_from_jd = true;
            }
            "SI" | "IY" => self.care_days(claim, record, 13),
            "CO" => claim.comments += 1,
            "TO" => self.care_days(claim, record, 17),
            _ => {}
        }
    }

    /// Days with a count in the 算定日 columns (day 1 at `first_column`).
    fn care_days(&mut self, claim: &mut Claim, record: &Record, first_column: usize) {
        if claim.care_days_from_jd {
            return;
        }
        let month = claim.treatment_month;
        for day in 1..=31u8 {
            let text = record.field(first_column + day as usize - 1);
            if text.is_empty() {
                continue;
            }
            if !text.bytes().all(|b| b.is_ascii_digit()) {
                self.error(record, Some(first_column + day as usize), format!("the count for day {day} ({text:?}) is not a number"));
                continue;
            }
            if month.is_some_and(|m| m.day(day).is_none()) {
                self.error(
                    record,
                    Some(first_column + day as usize),
                    format!("care on day {day}, which the treatment month does not have"),
                );
                continue;
            }
            claim.care_days.push(day);
        }
    }

    fn totals(&mut self, index: usize, record: &Record) -> Totals {
        let claims = self.number(record, 1, "総件数");
        let points = self.number(record, 2, "総合計点数");
        Totals { record: index, claims, points }
    }

    fn check_totals(&mut self, file: &UkeFile) {
        let Some(totals) = &file.totals else { return };
        let line = file.records[totals.record].line;
        if let Some(claims) = totals.claims.filter(|&c| c != file.claims.len() as u64) {
            self.warning(
                Some(line),
                Some(2),
                format!(
                    "GO states {claims} claims but the file holds {}: the receipt computer's count is off; check the export",
                    file.claims.len()
                ),
            );
        }
        let sum = file.points_total();
        if let Some(points) = totals.points.filter(|&p| p != sum) {
            self.warning(Some(line), Some(3), format!("GO states {points} points in total but the claims add up to {sum}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        std::fs::read(crate::fixtures::sample_uke()).expect("the sample claim file")
    }

    fn errors(file: &UkeFile) -> Vec<&Diagnostic> {
        file.diagnostics.iter().filter(|d| d.severity == Severity::Error).collect()
    }

    /// A small valid file in CP932 with the given claim lines between IR and GO.
    fn small(claim_lines: &[&str], go: &str) -> Vec<u8> {
        let mut text = String::from("IR,1,13,1,1234569,,テスト医院,202110,00,0312345678\r\n");
        for line in claim_lines {
            text.push_str(line);
            text.push_str("\r\n");
        }
        text.push_str(go);
        text.push_str("\r\n");
        encode_line(&text, TextEncoding::Cp932).expect("CP932")
    }

    /// Regression (found writing the uke fuzz target): two claims of 18446744073709551615 points each made the GO check's
    /// sum overflow (a panic in debug builds). Numbers of more than 9 digits are refused.
    #[test]
    fn points_too_long_to_be_real_are_an_error_not_an_overflow() {
        let huge = "18446744073709551615";
        let bytes = small(
            &[
                "RE,1,1112,202109,テスト,1,19850505",
                &format!("HO,06130488,77,1234,3,{huge}"),
                "RE,2,1112,202109,テスト,2,19400229",
                &format!("HO,39131011,,00012345,1,{huge}"),
            ],
            "GO,2,1",
        );
        let file = read(&bytes).expect("reads, with errors");
        assert!(errors(&file).iter().any(|d| d.message.contains("more than 9 digits")), "{:?}", file.diagnostics);
        assert_eq!(file.points_total(), 0);
    }

    #[test]
    fn the_sample_is_read_completely() {
        let file = read(&sample()).expect("reads");
        assert_eq!(
            file.layout,
            Layout { encoding: TextEncoding::Cp932, line_ending: LineEnding::CrLf, eof_marker: false, final_newline: true }
        );
        assert_eq!(file.records.len(), 636);
        assert_eq!(file.claims.len(), 75);
        let totals = file.totals.as_ref().expect("GO");
        assert_eq!((totals.claims, totals.points), (Some(140), Some(86392)));
        assert_eq!(Some(file.points_total()), totals.points, "the claims' points add up to the GO total");
        // Every record belongs to exactly one claim, in order.
        let covered: usize = file.claims.iter().map(|c| c.end - c.record).sum();
        assert_eq!(covered, 636 - 2, "all but IR and GO");
        assert_eq!(file.institution.billing_month, YearMonth::parse("202111"));
        assert_eq!(file.institution.code7, "0000000");
    }

    #[test]
    fn the_sample_claims_carry_their_fields() {
        let file = read(&sample()).expect("reads");
        let second = &file.claims[1];
        assert_eq!(second.receipt_number, "2");
        assert_eq!(second.treatment_month, YearMonth::parse("202110"));
        assert_eq!(second.birth_date, Date::parse_yyyymmdd("19910125").ok());
        let insurance = second.insurance.as_ref().expect("HO");
        assert_eq!(insurance.insurer.as_ref().map(|i| i.as_str().to_string()), Ok("01130012".to_string()));
        assert_eq!((insurance.symbol.as_str(), insurance.number.as_str()), ("64440718", "7"), "full-width digits read half-width");
        assert_eq!(second.branch(), Some("00"), "SN carries the 枝番");
        assert_eq!(file.claims[0].branch(), None);
        assert_eq!(file.claims[0].care_days.first(), Some(&1), "SI day 1 is counted");
        let public_only: Vec<&str> = file.claims.iter().filter(|c| c.insurance.is_none()).map(|c| c.receipt_number.as_str()).collect();
        assert_eq!(public_only, ["4", "5", "67", "68", "69", "70"]);
    }

    #[test]
    fn check_digits_of_every_number_are_judged_and_reported_not_fatal() {
        let file = read(&sample()).expect("reads");
        let all_ho_judged = file.claims.iter().filter_map(|c| c.insurance.as_ref()).all(|h| h.insurer.is_ok());
        assert!(all_ho_judged, "the sample's insurer numbers pass");
        let bad: Vec<&PublicExpense> = file.claims.iter().flat_map(|c| &c.public_expenses).filter(|k| k.payer.is_err()).collect();
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].payer_text, "83136019");
        let reported = errors(&file);
        assert!(reported.iter().any(|d| d.line == Some(4) && d.column == Some(2) && d.message.contains("83136019")), "{reported:?}");
        let count_warning = file.diagnostics.iter().find(|d| d.message.contains("GO states 140 claims")).expect("the count is reported");
        assert_eq!(count_warning.severity, Severity::Warning);
    }

    #[test]
    fn a_trailing_eof_byte_lf_endings_and_utf8_are_all_read() {
        let cp932 = small(&["RE,1,1112,202110,テスト　太郎,1,19800101,,,,,,,001", "HO,06130488,１２,３４,1,100"], "GO,1,100,99");
        let mut with_eof = cp932.clone();
        with_eof.push(EOF_MARKER);
        let file = read(&with_eof).expect("reads");
        assert!(file.layout.eof_marker);
        assert_eq!(file.claims.len(), 1);
        assert!(errors(&file).is_empty(), "{:?}", file.diagnostics);

        let utf8 = SHIFT_JIS.decode(&cp932).0.replace("\r\n", "\n");
        let mut bom = b"\xEF\xBB\xBF".to_vec();
        bom.extend_from_slice(utf8.as_bytes());
        let file = read(&bom).expect("reads");
        assert_eq!(file.layout.encoding, TextEncoding::Utf8 { bom: true });
        assert_eq!(file.layout.line_ending, LineEnding::Lf);
        assert_eq!(file.claims[0].name, "テスト　太郎");
        assert_eq!(file.claims[0].insurance.as_ref().map(|h| h.symbol.as_str()), Some("12"));
    }

    #[test]
    fn a_truncated_file_is_an_error_naming_the_cause() {
        let whole = sample();
        let cut = &whole[..whole.len() / 2];
        let file = read(cut).expect("what is there is read");
        let error = errors(&file).into_iter().find(|d| d.message.contains("without the closing GO record")).expect("reported");
        assert!(error.message.contains("export the claim file again"));
        assert!(file.claims.len() < 75);
    }

    #[test]
    fn a_mis_encoded_file_is_refused_with_its_line() {
        // An EUC-JP 3-byte form (0x8F-led) followed by 0xFF: neither decodes as CP932.
        let mut bytes = small(&["RE,1,1112,202110,X,1,19800101"], "GO,1,0,99");
        // Search after line 1: CP932 trail bytes include ASCII letters (ス is 0x83 0x58, "X").
        let line_two = bytes.iter().position(|&b| b == b'\n').unwrap();
        let at = line_two + bytes[line_two..].iter().position(|&b| b == b'X').unwrap();
        bytes.splice(at..at + 1, [0x8F, 0xA1, 0xA1, 0xFF]);
        match read(&bytes) {
            Err(ReadError::Encoding { line, .. }) => assert_eq!(line, 2),
            other => panic!("expected an encoding error, got {other:?}"),
        }
        let utf16: Vec<u8> = "IR,1\r\n".encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
        assert!(matches!(read(&utf16), Err(ReadError::Encoding { line: 1, .. })));
        assert!(matches!(read(b""), Err(ReadError::Empty)));
        assert!(matches!(read(b"\x1a"), Err(ReadError::Empty)));
        let error = read(b"RE,1,1112\r\n").unwrap_err();
        assert!(error.to_string().contains("not a UKE claim file"), "{error}");
    }

    #[test]
    fn malformed_lines_are_reported_with_line_and_column_and_unknown_records_kept() {
        let bytes = small(
            &[
                "RE,1,1112,2021XX,テスト　太郎,1,19800101",
                "HO,06130488,12,34,1,1O0",
                "ZZ,something new",
                "RE,2,1112,202110,テスト　花子,2,19800231",
                "HO,06130487,12,35,1,50",
            ],
            "GO,2,50,99",
        );
        let file = read(&bytes).expect("reads");
        let found = |line: usize, column: usize, needle: &str| {
            file.diagnostics.iter().any(|d| d.line == Some(line) && d.column == Some(column) && d.message.contains(needle))
        };
        assert!(found(2, 4, "診療年月"), "{:?}", file.diagnostics);
        assert!(found(3, 6, "合計点数"), "{:?}", file.diagnostics);
        assert!(found(4, 1, "unknown record type \"ZZ\""), "{:?}", file.diagnostics);
        assert!(found(5, 7, "生年月日"), "{:?}", file.diagnostics);
        assert!(!file.diagnostics.iter().any(|d| d.message.contains("19800231")), "a birth date is never repeated");
        assert!(found(6, 2, "check digit"), "{:?}", file.diagnostics);
        assert_eq!(file.records[3].fields, ["ZZ", "something new"], "kept as it is");
        assert_eq!(file.claims.len(), 2);
        assert_eq!(file.claims[0].unreadable.len(), 1);
    }
}
