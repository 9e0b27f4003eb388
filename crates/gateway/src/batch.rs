//! 一括照会: tomorrow's patients checked ahead, from an `OQSmuquc01req_` upload or an
//! appointment list (`onshi gateway batch --appointments FILE.csv`). The answers are cached for
//! the offline day and kept as the batch's snapshot, so that on the day every check (and the
//! next batch) says what changed since.

use onshi_api::verify::{BatchVerifyRequest, VerifyNumberRequest};

use crate::answer_xml::{self, BulkUnit};
use crate::check::{self, Outcome};
use crate::gateway::{Gateway, GatewayError};
use crate::request::{Header, SearchInfo};
use crate::store::OutFile;
use crate::xml::Charset;

/// Entries per call to the center's batch endpoint.
const CHUNK: usize = 1000;

/// A reception number: the time and a random tail, unique per gateway.
pub fn reception_number(gateway: &Gateway) -> String {
    format!("{}{}", gateway.now(), gateway.tag().to_uppercase())
}

fn request_of(search: &SearchInfo, header: &Header) -> VerifyNumberRequest {
    search.to_request(header.confirmation_date.as_deref())
}

/// Stores a batch (its journal row and answer file in the same transaction).
pub fn add(
    gateway: &Gateway,
    reception_number: &str,
    source: &str,
    header: &Header,
    entries: Vec<SearchInfo>,
    request: Option<(&str, &str)>,
    files: &[OutFile],
) -> Result<(), GatewayError> {
    let rows: Vec<(String, String, SearchInfo)> = entries
        .into_iter()
        .map(|search| {
            let request = request_of(&search, header);
            let label = search.arbitrary_identifier.clone().unwrap_or_else(|| crate::gateway::subject_of(&request));
            (check::patient_key(&request), label, search)
        })
        .collect();
    let at = gateway.now().to_string();
    let batch = crate::store::NewBatch { reception_number, at: &at, source, header, entries: &rows };
    gateway.store.add_batch(&batch, request, files)?;
    Ok(())
}

/// Asks the center about every batch entry still without an answer. Stops quietly when the
/// line is down (the entries wait for the re-verifier). Returns how many were answered.
pub async fn answer_waiting(gateway: &Gateway, progress: Option<&(dyn Fn(usize, usize) + Sync)>) -> Result<usize, GatewayError> {
    let waiting = gateway.store.unanswered_batch_entries()?;
    let total = waiting.len();
    let mut answered = 0;
    for chunk in waiting.chunks(CHUNK) {
        let entries: Vec<VerifyNumberRequest> = chunk.iter().map(|e| request_of(&e.search, &e.header)).collect();
        let results = match gateway.client.verify_batch(&BatchVerifyRequest { institution_code: None, entries }).await {
            Ok(response) => response.results.into_iter().map(|r| match (r.answer, r.error) {
                (Some(answer), _) => Outcome::Answered { answer, consents: None, certificate: None },
                (None, Some(error)) => Outcome::Refused { error },
                (None, None) => Outcome::Queued { reason: "the center gave no answer for this entry".into() },
            }),
            Err(error) if Gateway::offline_reason(&error).is_some() => return Ok(answered),
            Err(error) => {
                let outcome = crate::gateway::refused_outcome(error);
                let all = vec![outcome; chunk.len()];
                return finish(gateway, chunk, all.into_iter(), answered, total, progress).await;
            }
        };
        answered = finish(gateway, chunk, results.collect::<Vec<_>>().into_iter(), answered, total, progress).await?;
    }
    Ok(answered)
}

async fn finish(
    gateway: &Gateway,
    chunk: &[crate::store::BatchEntry],
    outcomes: impl Iterator<Item = Outcome>,
    answered: usize,
    total: usize,
    progress: Option<&(dyn Fn(usize, usize) + Sync)>,
) -> Result<usize, GatewayError> {
    let mut rows = Vec::with_capacity(chunk.len());
    for (entry, outcome) in chunk.iter().zip(outcomes) {
        let before = gateway.store.batch_outcome(&entry.key, Some(&entry.reception_number))?;
        let changes = before.map(|(_, before)| check::changes(Some(&before), &outcome)).unwrap_or_default();
        rows.push((entry.reception_number.clone(), entry.seq, entry.key.clone(), outcome, changes));
    }
    gateway.store.answer_batch_entries(&gateway.now().to_string(), &rows)?;
    let answered = answered + chunk.len();
    if let Some(progress) = progress {
        progress(answered, total);
    }
    Ok(answered)
}

/// The `OQSmuquc02res_` document of a reception number.
pub fn results_file(
    gateway: &Gateway,
    header: &Header,
    reception_number: &str,
    now: &str,
    charset: Charset,
) -> Result<Vec<u8>, GatewayError> {
    let code = &gateway.config.institution_code;
    let Some((_, entries)) = gateway.store.batch(reception_number)? else {
        return Ok(answer_xml::bulk_results(header, reception_number, None, now, code, charset, &crate::reference::Found::none()));
    };
    let units: Vec<BulkUnit<'_>> =
        entries.iter().map(|(_, search, outcome, changes)| BulkUnit { search, outcome: outcome.as_ref(), changes }).collect();
    let references = crate::reference::for_outcomes(&gateway.store, entries.iter().filter_map(|(_, _, outcome, _)| outcome.as_ref()));
    Ok(answer_xml::bulk_results(header, reception_number, Some(&units), now, code, charset, &references))
}

/// One appointment: a row of the CSV.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Appointment {
    pub patient: String,
    pub date: String,
    pub search: SearchInfo,
}

/// Why an appointment list cannot be read: the line and what to do.
#[derive(Debug, thiserror::Error)]
#[error("appointments line {line}: {detail}")]
pub struct AppointmentError {
    pub line: usize,
    pub detail: String,
}

/// The columns of an appointment list; the header row names them in any order.
pub const COLUMNS: [&str; 7] = ["patient_id", "date", "insurer_number", "symbol", "number", "branch", "birth_date"];

/// Reads an appointment list: UTF-8 (with or without BOM) or Shift_JIS, a header row naming the
/// columns of [`COLUMNS`] (`symbol` and `branch` may be left empty), one patient per line.
pub fn read_appointments(bytes: &[u8]) -> Result<Vec<Appointment>, AppointmentError> {
    let text = match std::str::from_utf8(bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)) {
        Ok(text) => text.to_string(),
        Err(_) => {
            let (text, had_errors) = encoding_rs::SHIFT_JIS.decode_without_bom_handling(bytes);
            if had_errors {
                return Err(AppointmentError { line: 1, detail: "the file is neither UTF-8 nor Shift_JIS; save it as UTF-8".into() });
            }
            text.into_owned()
        }
    };
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let (_, header) = lines.next().ok_or(AppointmentError { line: 1, detail: "the file is empty".into() })?;
    let names: Vec<String> = header.split(',').map(|h| h.trim().to_ascii_lowercase()).collect();
    let column = |name: &str| names.iter().position(|n| n == name);
    for required in ["patient_id", "date", "insurer_number", "number", "birth_date"] {
        if column(required).is_none() {
            return Err(AppointmentError {
                line: 1,
                detail: format!("the header has no `{required}` column; the columns are {}", COLUMNS.join(",")),
            });
        }
    }
    let mut appointments = Vec::new();
    for (index, line) in lines {
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        let cell = |name: &str| column(name).and_then(|i| cells.get(i)).map(|c| c.trim_matches('"').to_string()).filter(|c| !c.is_empty());
        let need = |name: &str| cell(name).ok_or(AppointmentError { line: index + 1, detail: format!("`{name}` is empty") });
        let date = need("date")?;
        if onshi_domain::date::Date::parse_yyyymmdd(&date).is_err() {
            return Err(AppointmentError { line: index + 1, detail: format!("`date` is {date:?}; write YYYYMMDD") });
        }
        let (symbol, number) = (cell("symbol"), need("number")?);
        if let Some(column) = crate::request::holding_my_number(&[("number", Some(&number)), ("symbol", symbol.as_deref())]) {
            return Err(AppointmentError { line: index + 1, detail: format!("`{column}` {}", onshi_domain::ids::MY_NUMBER_REFUSED) });
        }
        appointments.push(Appointment {
            patient: need("patient_id")?,
            date,
            search: SearchInfo {
                insurer_number: need("insurer_number")?,
                symbol,
                number,
                branch: cell("branch"),
                birth_date: need("birth_date")?,
                limit_consent: false,
                arbitrary_identifier: cell("patient_id"),
            },
        });
    }
    Ok(appointments)
}

/// What a batch from an appointment list came to.
#[derive(Debug)]
pub struct BatchSummary {
    pub reception_number: String,
    pub patients: usize,
    pub answered: usize,
    /// (patient, changes) for each patient whose answer changed since the previous batch.
    pub changed: Vec<(String, Vec<String>)>,
    /// (patient, what staff read) for each patient whose coverage is not valid.
    pub attention: Vec<(String, String)>,
    pub result_file: std::path::PathBuf,
}

/// Runs a batch for appointments (one batch per date of care), writes its result file to
/// `res/` and returns the summary.
pub async fn from_appointments(
    gateway: &Gateway,
    appointments: Vec<Appointment>,
    progress: Option<&(dyn Fn(usize, usize) + Sync)>,
) -> Result<Vec<BatchSummary>, GatewayError> {
    let mut by_date: std::collections::BTreeMap<String, Vec<SearchInfo>> = Default::default();
    for a in appointments {
        by_date.entry(a.date).or_default().push(a.search);
    }
    let mut reception_numbers = Vec::new();
    for (date, entries) in by_date {
        let header = Header { confirmation_date: Some(date), ..Header::default() };
        let number = reception_number(gateway);
        add(gateway, &number, "appointments", &header, entries, None, &[])?;
        reception_numbers.push((number, header));
    }
    answer_waiting(gateway, progress).await?;
    let now = gateway.now().to_string();
    let mut summaries = Vec::new();
    for (number, header) in reception_numbers {
        let bytes = results_file(gateway, &header, &number, &now, Charset::Utf8)?;
        let path = gateway.config.res_dir().join(format!("OQSmuquc02res_{number}.xml"));
        gateway.store.queue_files(&[OutFile { path: path.clone(), bytes, remove_after: None }])?;
        let (_, entries) = gateway.store.batch(&number)?.unwrap_or_default();
        summaries.push(BatchSummary {
            reception_number: number,
            patients: entries.len(),
            answered: entries.iter().filter(|e| e.2.is_some()).count(),
            changed: entries.iter().filter(|e| !e.3.is_empty()).map(|e| (e.0.clone(), e.3.clone())).collect(),
            attention: entries
                .iter()
                .filter(|e| e.2.as_ref().is_some_and(|o| o.answer().is_none_or(|a| a.validity.code != "1")))
                .map(|e| (e.0.clone(), e.2.as_ref().map(Outcome::summary_ja).unwrap_or_default()))
                .collect(),
            result_file: path,
        });
    }
    crate::files::flush(&gateway.store)?;
    Ok(summaries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_appointments_in_any_column_order_and_names_bad_lines() {
        let csv = "\u{FEFF}date,patient_id,insurer_number,number,birth_date,symbol,branch\n20261126,K001,  123456,34,19800101,12,\n\n";
        let list = read_appointments(csv.as_bytes()).unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].patient, "K001");
        assert_eq!(list[0].search.symbol.as_deref(), Some("12"));
        assert_eq!(list[0].search.branch, None);
        let sjis =
            encoding_rs::SHIFT_JIS.encode("patient_id,date,insurer_number,number,birth_date\n山田,20261126,06123456,１,19800101\n").0;
        assert_eq!(read_appointments(&sjis).unwrap()[0].patient, "山田");
        let e = read_appointments(b"patient_id,date,insurer_number,number,birth_date\nK1,2026-11-26,1,2,19800101\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.to_string().contains("YYYYMMDD"));
        assert!(read_appointments(b"patient,date\n").unwrap_err().to_string().contains("patient_id"));
        let my_number = read_appointments(b"patient_id,date,insurer_number,number,birth_date\nK1,20261126,06123456,1,19800101\nK2,20261126,06123456,123456789018,19800101\n").unwrap_err();
        assert_eq!(my_number.line, 3);
        assert!(my_number.to_string().contains("My Number") && !my_number.to_string().contains("9018"), "{my_number}");
    }
}
