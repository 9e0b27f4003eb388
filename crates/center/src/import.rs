//! Insurer import: JSON Lines in, register transactions out. Good lines apply while bad lines
//! are reported with their line number, field and reason; events are applied in transactions of
//! bounded size, so an interrupted import keeps what it committed and a re-run skips it by
//! event id.

use std::io::BufRead;

use onshi_api::events::{ImportReport, InsurerEvent, REJECTED_LISTED_MAX, RejectedLine};
use onshi_domain::Timestamp;
use onshi_domain::ids::InsurerNumber;
use onshi_store::model::{ApplyOutcome, CoverageEvent};
use onshi_store::{Direct, EventSink, Register, StoreError};

use crate::validate::coverage_event;

/// Events per transaction unless told otherwise: large enough to amortise the commit (an
/// fsync, and, in a large register, every page of the random-keyed indexes the batch touched:
/// at 10 M persons a fifth-size batch made the commits 29 % of the import and the import 30 %
/// slower, docs/PERFORMANCE.md), small enough that a crash loses little work (a few seconds)
/// and memory stays bounded (1.6 GiB at its peak at 10 M, the writer's 1 GiB cache included).
pub const BATCH_EVENTS_DEFAULT: usize = 100_000;

/// Longest line accepted, in bytes. A real event is well under 2 KiB.
pub const LINE_BYTES_MAX: usize = 64 * 1024;

/// How an import runs.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    pub batch_events: usize,
    /// When set (an upload by an insurer), events for any other insurer number are refused.
    pub only_insurer: Option<InsurerNumber>,
    /// The registration time written with every applied event.
    pub registered_at: Timestamp,
}

/// Where an import has got to, reported after every committed batch.
#[derive(Clone, Copy, Debug, Default)]
pub struct ImportProgress {
    pub bytes_read: u64,
    pub lines: u64,
    pub applied: u64,
    pub already_applied: u64,
    pub rejected: u64,
}

/// Why an import stopped early. Lines already committed stay committed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read the input after line {line}: {source}")]
    Read { line: u64, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
}

struct Pending {
    line: u64,
    event: CoverageEvent,
}

/// A line refused before it reached the register.
struct Refused {
    line: u64,
    event_id: Option<String>,
    field: String,
    reason: String,
}

/// One batch as parsed: the valid events and the refused lines among them.
#[derive(Default)]
struct ParsedBatch {
    events: Vec<Pending>,
    refused: Vec<Refused>,
    lines: u64,
    bytes_read: u64,
}

/// Parses and validates one line into `batch`.
fn take_line(batch: &mut ParsedBatch, options: &ImportOptions, line_number: u64, bytes: &[u8]) {
    let mut refuse = |event_id: Option<String>, field: String, reason: String| {
        batch.refused.push(Refused { line: line_number, event_id, field, reason });
    };
    // First: a line cut at the limit by `read_line_bounded` may end inside a character.
    if bytes.len() > LINE_BYTES_MAX {
        batch.lines += 1;
        return refuse(None, "line".into(), format!("is longer than {LINE_BYTES_MAX} bytes"));
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text.trim_start_matches('\u{feff}').trim(),
        Err(e) => {
            batch.lines += 1;
            return refuse(None, "line".into(), format!("is not UTF-8 (byte {}); save the file as UTF-8", e.valid_up_to()));
        }
    };
    if text.is_empty() {
        return;
    }
    batch.lines += 1;
    let wire: InsurerEvent = match serde_json::from_str(text) {
        Ok(wire) => wire,
        Err(e) => {
            let (field, reason) = describe_json_error(&e);
            return refuse(None, field, reason);
        }
    };
    if let Some(own) = &options.only_insurer {
        let same = InsurerNumber::parse(&wire.insurer_number).is_ok_and(|n| &n == own);
        if !same {
            let reason = crate::errors::foreign_insurer(&wire.insurer_number, own.as_str());
            return refuse(Some(wire.event_id), "insurer_number".into(), reason);
        }
    }
    match coverage_event(&wire) {
        Ok(event) => batch.events.push(Pending { line: line_number, event }),
        Err(refusal) => refuse(Some(wire.event_id), refusal.field, refusal.reason),
    }
}

/// Reads one line (through its `\n`) into `line`, keeping at most `max + 1` of its bytes: a
/// longer line is consumed to its end but never held whole, so that a file of one endless line
/// cannot exhaust memory, and the caller sees it is too long. Returns the bytes consumed (0 at
/// the end of the input).
pub fn read_line_bounded(input: &mut impl BufRead, line: &mut Vec<u8>, max: usize) -> std::io::Result<usize> {
    line.clear();
    let mut consumed = 0;
    loop {
        let (used, ended) = {
            let available = match input.fill_buf() {
                Ok(available) => available,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if available.is_empty() {
                return Ok(consumed);
            }
            let (chunk, ended) = match available.iter().position(|&b| b == b'\n') {
                Some(end) => (&available[..=end], true),
                None => (available, false),
            };
            let room = (max + 1).saturating_sub(line.len());
            line.extend_from_slice(&chunk[..chunk.len().min(room)]);
            (chunk.len(), ended)
        };
        input.consume(used);
        consumed += used;
        if ended {
            return Ok(consumed);
        }
    }
}

/// Reads and validates lines, handing over a batch every `batch_events` valid events.
fn parse_batches(mut input: impl BufRead, options: &ImportOptions, mut hand_over: impl FnMut(Result<ParsedBatch, ImportError>) -> bool) {
    let mut buffer = Vec::with_capacity(1024);
    let mut line_number = 0u64;
    let mut batch = ParsedBatch::default();
    loop {
        buffer.clear();
        let read = match read_line_bounded(&mut input, &mut buffer, LINE_BYTES_MAX) {
            Ok(read) => read,
            Err(source) => {
                hand_over(Err(ImportError::Read { line: line_number, source }));
                return;
            }
        };
        if read == 0 {
            break;
        }
        line_number += 1;
        batch.bytes_read += read as u64;
        take_line(&mut batch, options, line_number, &buffer);
        if batch.events.len() >= options.batch_events && !hand_over(Ok(std::mem::take(&mut batch))) {
            return;
        }
    }
    hand_over(Ok(batch));
}

/// Applies parsed batches to the register and keeps the report.
struct Applier<'a> {
    sink: &'a mut dyn EventSink,
    options: &'a ImportOptions,
    report: ImportReport,
    progress: ImportProgress,
}

impl Applier<'_> {
    fn refuse(&mut self, refused: Refused) {
        self.report.rejected_total += 1;
        self.progress.rejected += 1;
        if self.report.rejected.len() < REJECTED_LISTED_MAX {
            let Refused { line, event_id, field, reason } = refused;
            self.report.rejected.push(RejectedLine { line, event_id, field, reason });
        }
    }

    fn apply(&mut self, batch: ParsedBatch) -> Result<(), StoreError> {
        self.report.lines += batch.lines;
        self.progress.lines += batch.lines;
        self.progress.bytes_read += batch.bytes_read;
        for refused in batch.refused {
            self.refuse(refused);
        }
        if batch.events.is_empty() {
            return Ok(());
        }
        let (lines, events): (Vec<u64>, Vec<CoverageEvent>) = batch.events.into_iter().map(|p| (p.line, p.event)).unzip();
        let outcomes = self.sink.apply_events(&events, self.options.registered_at)?;
        debug_assert_eq!(outcomes.len(), events.len());
        for ((line, event), outcome) in lines.into_iter().zip(events).zip(outcomes) {
            match outcome {
                ApplyOutcome::Applied => {
                    self.report.applied += 1;
                    self.progress.applied += 1;
                }
                ApplyOutcome::AlreadyApplied => {
                    self.report.already_applied += 1;
                    self.progress.already_applied += 1;
                }
                ApplyOutcome::Rejected { field, reason } => {
                    self.refuse(Refused { line, event_id: Some(event.event_id), field: field.to_string(), reason });
                }
            }
        }
        Ok(())
    }
}

/// Turns a serde_json error into (field, reason) that a person at an insurer or a payer can act
/// on, without echoing a value.
pub(crate) fn describe_json_error(error: &serde_json::Error) -> (String, String) {
    let message = error.to_string();
    let quoted = |prefix: &str| -> Option<String> {
        let start = message.find(prefix)? + prefix.len();
        let rest = &message[start..];
        Some(rest[..rest.find('`')?].to_string())
    };
    if let Some(field) = quoted("missing field `") {
        return (field, "is missing".into());
    }
    if let Some(field) = quoted("unknown field `") {
        return (field, "is not a field of this event (check the spelling; a My Number is never accepted)".into());
    }
    // serde quotes the offending value ("invalid type: string \"19800101\", expected …"); it
    // may be a birth date or a name, so only what was expected is reported.
    if message.starts_with("invalid type") || message.starts_with("invalid value") {
        let expected = message.split_once(", expected ").map_or("another value", |(_, rest)| rest);
        return ("line".into(), format!("is not a valid event: a field has a value of the wrong type; expected {expected}"));
    }
    ("line".into(), format!("is not a valid event: {message}"))
}

/// Imports JSON Lines from `input`, calling `on_progress` after every committed batch.
///
/// Parsing and validation run on a second thread, one batch ahead of the register, so that
/// the two overlap; at most two parsed batches wait at any time (bounded memory).
pub fn import_jsonl(
    register: &dyn Register,
    input: impl BufRead + Send,
    options: &ImportOptions,
    on_progress: impl FnMut(&ImportProgress),
) -> Result<ImportReport, ImportError> {
    import_jsonl_into(&mut Direct(register), input, options, on_progress)
}

/// [`import_jsonl`] into any [`EventSink`]: the register, or a load of an empty register
/// ([`Register::begin_load`]) that spans several files.
pub fn import_jsonl_into(
    sink: &mut dyn EventSink,
    input: impl BufRead + Send,
    options: &ImportOptions,
    mut on_progress: impl FnMut(&ImportProgress),
) -> Result<ImportReport, ImportError> {
    assert!(options.batch_events > 0, "a batch holds at least one event");
    let mut applier = Applier { sink, options, report: ImportReport::default(), progress: ImportProgress::default() };
    std::thread::scope(|scope| {
        let (sender, receiver) = std::sync::mpsc::sync_channel::<Result<ParsedBatch, ImportError>>(2);
        scope.spawn(move || parse_batches(input, options, |batch| sender.send(batch).is_ok()));
        for batch in receiver {
            applier.apply(batch?)?;
            on_progress(&applier.progress);
        }
        Ok::<_, ImportError>(())
    })?;
    // Refusals from the parser and from the register arrive batch by batch; list them in
    // line order.
    applier.report.rejected.sort_by_key(|r| r.line);
    Ok(applier.report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use onshi_store::sqlite::{SqliteOptions, SqliteRegister};
    use proptest::prelude::*;

    const GOOD: &str = r#"{"event_id":"g1","kind":"acquire","insurer_number":"06130488","person_ref":"r1","card":{"number":"1","branch":"00"},"occurred_on":"20240401","notified_at":"20240402090000","member":{"relationship":"1","card_classification":"01","name":"試験","name_kana":"ｼｹﾝ","sex":"1","birth_date":"19800101"},"terms":{"income_class":"general"}}"#;

    fn options() -> ImportOptions {
        ImportOptions { batch_events: 3, only_insurer: None, registered_at: onshi_domain::Timestamp::from_jst_seconds(0) }
    }

    /// A line too long is consumed to its end but held only up to the limit; the next line is
    /// read whole; a last line without a newline too.
    #[test]
    fn a_line_is_held_only_up_to_the_limit_and_the_next_one_is_read_whole() {
        let mut input = vec![b'x'; 1_000_000];
        input.extend_from_slice(b"\nnext line\nlast");
        // A small buffer, so that the long line arrives in many pieces.
        let mut reader = std::io::BufReader::with_capacity(4096, input.as_slice());
        let mut line = Vec::new();
        assert_eq!(read_line_bounded(&mut reader, &mut line, 100).unwrap(), 1_000_001);
        assert_eq!(line.len(), 101, "never more than the limit and one byte");
        assert_eq!(read_line_bounded(&mut reader, &mut line, 100).unwrap(), 10);
        assert_eq!(line, b"next line\n");
        assert_eq!(read_line_bounded(&mut reader, &mut line, 100).unwrap(), 4);
        assert_eq!(line, b"last");
        assert_eq!(read_line_bounded(&mut reader, &mut line, 100).unwrap(), 0);
    }

    /// An endless line (here 5 MB, ending inside a multi-byte character at the limit) is
    /// refused as too long, and the good line after it is applied.
    #[test]
    fn a_line_far_over_the_limit_is_refused_and_the_next_one_applies() {
        let dir = tempfile::tempdir().unwrap();
        let register = SqliteRegister::open(&dir.path().join("r.sqlite"), SqliteOptions::SERVER).unwrap();
        let mut input = "試".repeat(5_000_000 / 3).into_bytes();
        input.push(b'\n');
        input.extend_from_slice(GOOD.as_bytes());
        input.push(b'\n');
        let report = import_jsonl(&register, input.as_slice(), &options(), |_| {}).unwrap();
        assert_eq!((report.applied, report.rejected_total), (1, 1), "{report:?}");
        assert_eq!(report.rejected[0].line, 1);
        assert!(report.rejected[0].reason.contains("longer than 65536 bytes"), "{:?}", report.rejected[0]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever the bytes, the import neither panics nor loses count: every non-blank line
        /// is applied or refused, and the good line among the garbage is applied.
        #[test]
        fn garbage_never_panics_and_good_lines_apply(garbage in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..20), mutated in "[ -~]{0,60}") {
            let dir = tempfile::tempdir().unwrap();
            let register = SqliteRegister::open(&dir.path().join("r.sqlite"), SqliteOptions::SERVER).unwrap();
            let mut input = Vec::new();
            for line in &garbage {
                input.extend(line.iter().filter(|b| **b != b'\n'));
                input.push(b'\n');
            }
            input.extend_from_slice(GOOD.as_bytes());
            input.push(b'\n');
            // A valid event with a value replaced by arbitrary text.
            input.extend_from_slice(GOOD.replace("g1", "g2").replace("\"1\",\"branch\"", &format!("{:?},\"branch\"", mutated)).as_bytes());
            let report = import_jsonl(&register, &input[..], &options(), |_| {}).unwrap();
            prop_assert_eq!(report.applied + report.already_applied + report.rejected_total, report.lines);
            prop_assert!(report.applied >= 1, "{:?}", report);
            prop_assert!(report.rejected.windows(2).all(|w| w[0].line <= w[1].line));
        }
    }

    #[test]
    fn json_errors_name_the_field_without_echoing_values() {
        let error = |text: &str| describe_json_error(&serde_json::from_str::<InsurerEvent>(text).unwrap_err());
        assert_eq!(error(r#"{"event_id":"x"}"#).0, "kind");
        let (field, reason) = error(&GOOD.replace(r#""birth_date":"19800101""#, r#""birth_date":19800101"#));
        assert_eq!(field, "line");
        assert!(reason.contains("expected a string") && !reason.contains("19800101"), "{reason}");
        let (field, _) = error(&GOOD.replace(r#""terms""#, r#""my_number":"123456789012","terms""#));
        assert_eq!(field, "my_number");
    }

    #[test]
    fn batches_are_bounded_and_progress_is_reported_per_batch() {
        let dir = tempfile::tempdir().unwrap();
        let register = SqliteRegister::open(&dir.path().join("r.sqlite"), SqliteOptions::SERVER).unwrap();
        let lines: Vec<String> = (0..10)
            .map(|i| {
                GOOD.replace("g1", &format!("g{i}"))
                    .replace("\"r1\"", &format!("\"r{i}\""))
                    .replace("\"number\":\"1\"", &format!("\"number\":\"{i}\""))
            })
            .collect();
        let mut seen = Vec::new();
        let report = import_jsonl(&register, lines.join("\n").as_bytes(), &options(), |p| seen.push(p.applied)).unwrap();
        assert_eq!(report.applied, 10);
        assert_eq!(seen, [3, 6, 9, 10], "one progress report per committed batch of 3");
    }
}
