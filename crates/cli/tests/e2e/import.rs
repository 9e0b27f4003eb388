//! Insurer import: idempotent, survives SIGKILL, reports bad lines precisely.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use crate::common::{Engine, event_files, onshi, open_register, run_ok};

fn dump(db: &std::path::Path) -> String {
    open_register(db).canonical_dump().unwrap()
}

fn import(db: &std::path::Path, files: &[std::path::PathBuf], batch: &str) -> std::process::Output {
    run_ok(onshi().args(["center", "import", "--batch", batch, "--db"]).arg(db).args(files))
}

/// Runs `onshi center import` and kills it (SIGKILL) at the first progress report, after a
/// committed batch, whose bytes done satisfy `stop`; the import must not have finished.
fn kill_import_at(db: &std::path::Path, files: &[std::path::PathBuf], batch: &str, stop: impl Fn(u64) -> bool) {
    let mut child = onshi()
        .env("ONSHI_PROGRESS", "every")
        .args(["center", "import", "--batch", batch, "--db"])
        .arg(db)
        .args(files)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    for line in stderr.lines() {
        let line = line.unwrap();
        let Some(progress) = line.strip_prefix("progress: import ") else { continue };
        let done: u64 = progress.split('/').next().unwrap().parse().unwrap();
        if stop(done) {
            child.kill().unwrap(); // SIGKILL on Unix
            break;
        }
    }
    let status = child.wait().unwrap();
    assert!(!status.success(), "the import was killed, not finished");
}

#[test]
fn twice_and_after_sigkill_the_register_equals_one_clean_import() {
    twice_and_after_sigkill_on(Engine::Sqlite);
}

#[test]
fn twice_and_after_sigkill_the_register_equals_one_clean_import_on_postgres() {
    twice_and_after_sigkill_on(Engine::Postgres);
}

fn twice_and_after_sigkill_on(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let synth = dir.path().join("synth");
    run_ok(onshi().args(["synth", "--persons", "40000", "--seed", "5", "--out"]).arg(&synth));
    let files = event_files(&synth);
    let total_bytes: u64 = files.iter().map(|f| std::fs::metadata(f).unwrap().len()).sum();

    let clean = engine.new_register(dir.path(), "clean");
    import(&clean, &files, "20000");
    let clean_dump = dump(&clean);
    assert!(clean_dump.lines().count() > 40_000);

    // Importing the same files again applies nothing and changes nothing.
    let output = import(&clean, &files, "20000");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(" 0 applied"), "{stderr}");
    assert!(!stderr.contains("loading"), "a register that holds events is imported batch by batch: {stderr}");
    assert_eq!(dump(&clean), clean_dump);

    // Kill an import with SIGKILL once it has committed half of the bytes, then run it again.
    let killed = engine.new_register(dir.path(), "killed");
    kill_import_at(&killed, &files, "200", |done| done * 2 >= total_bytes);
    let partial = open_register(&killed).counts().unwrap();
    let full = open_register(&clean).counts().unwrap();
    assert!(partial.events > 0 && partial.events < full.events, "killed halfway: {partial:?} of {full:?}");

    let output = import(&killed, &files, "200");
    if engine == Engine::Sqlite {
        // SQLite loads an empty register with its indexes built at the end; the killed load
        // is continued by the re-run, not imported batch by batch into a register without them.
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("loading") && stderr.contains("indexes built"), "{stderr}");
    }
    assert_eq!(dump(&killed), clean_dump, "after the re-run the register equals one clean import");
}

#[test]
fn bad_lines_are_reported_and_good_lines_apply() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    let good = |id: &str, number: &str| {
        format!(
            r#"{{"event_id":"{id}","kind":"acquire","insurer_number":"06130488","person_ref":"r-{id}","card":{{"symbol":"１２","number":"{number}","branch":"1"}},"occurred_on":"20240401","notified_at":"20240403100000","member":{{"relationship":"1","card_classification":"01","name":"試験 花子","name_kana":"ｼｹﾝ ﾊﾅｺ","sex":"2","birth_date":"19800101"}},"terms":{{"income_class":"general","limit":{{"category":"A03","classification":"01","valid_from":"20240401"}}}}}}"#
        )
    };
    let lines = [
        good("e1", "100"),
        good("e2", "101").replace("06130488", "06130487"),
        String::new(),
        good("e3", "102").replace(r#""kind":"acquire""#, r#""kind":"acquired""#),
        good("e4", "103").replace(r#""category":"A03""#, r#""category":"B04""#),
        r#"{"event_id":"e5","kind":"lose","insurer_number":"06130488","person_ref":"r-e1","card":{"symbol":"12","number":"100","branch":"01"},"occurred_on":"20250101","notified_at":"20250105100000","loss_reason":"03"}"#.to_string(),
        r#"{"event_id":"e6","kind":"change","insurer_number":"06130488","person_ref":"r-zz","card":{"number":"555","branch":"00"},"occurred_on":"20250101","notified_at":"20250105100000","terms":{"income_class":"general"}}"#.to_string(),
        good("e7", "104"),
    ];
    std::fs::write(&file, lines.join("\n")).unwrap();
    let db = dir.path().join("register.sqlite");
    let output = onshi().args(["center", "import", "--db"]).arg(&db).arg(&file).output().unwrap();
    assert_eq!(output.status.code(), Some(3), "refused lines give exit code 3");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let path = file.display().to_string();
    for expected in [
        format!("{path}:2: insurer_number: the value fails the insurer number check digit (the last digit should be 8)"),
        format!("{path}:4: line: is not a valid event"),
        format!("{path}:5: terms.limit.category: is a 70-and-over (B) category"),
        format!("{path}:7: card: no coverage of this person"),
        "7 lines, 3 applied, 0 already applied, 4 refused".to_string(),
    ] {
        assert!(stderr.contains(&expected), "missing {expected:?} in\n{stderr}");
    }
    let counts = open_register(&db).counts().unwrap();
    assert_eq!((counts.coverages, counts.events), (2, 3));
}

/// A register whose first load was killed early: the center serving it refuses an insurer's
/// upload (503, the load named) rather than apply it beside a load whose state would miss it;
/// once the import is run again and the load ends, the same upload applies.
#[tokio::test(flavor = "multi_thread")]
async fn an_unfinished_load_refuses_uploads_through_the_server_until_it_is_run_again() {
    use crate::common::{Fixture, Server};
    let fixture = Fixture::new(1_500);
    let files = event_files(&fixture.root().join("synth"));
    let db = fixture.root().join("loading.sqlite");
    // One event per transaction: the load is far from its end at its first committed batch.
    kill_import_at(&db, &files, "1", |_| true);

    let own = &fixture.insurer;
    let upload = format!(
        r#"{{"event_id":"late-1","kind":"acquire","insurer_number":"{own}","person_ref":"late-p1","card":{{"symbol":"77","number":"990101","branch":"00"}},"occurred_on":"20261101","notified_at":"20261102090000","member":{{"relationship":"1","card_classification":"01","name":"試験 一郎","name_kana":"ｼｹﾝ ｲﾁﾛｳ","sex":"1","birth_date":"19850505"}},"terms":{{"income_class":"general"}}}}"#
    );
    let mut server = Server::start_at(&db, &fixture.pki());
    let insurer = server.client(&fixture, Some(&format!("insurers/{own}")));
    match insurer.upload_events(upload.clone()).await {
        Err(onshi_api::client::ClientError::Refused { status: 503, body }) => {
            assert_eq!(body.error.code, "REGISTER_UNAVAILABLE");
            // Said to the insurer: nothing applied, send again; not the operator's command.
            assert!(
                body.error.detail.contains("being loaded") && body.error.detail.contains("send the same file again"),
                "{:?}",
                body.error
            );
            assert!(body.error.reception_ja.contains("再送"), "{:?}", body.error);
        }
        other => panic!("an upload during an unfinished load: {other:?}"),
    }
    server.terminate();
    let refused = open_register(&db).counts().unwrap();

    let output = import(&db, &files, "20000");
    assert!(String::from_utf8_lossy(&output.stderr).contains("indexes built"));
    let loaded = open_register(&db).counts().unwrap();
    assert!(loaded.events > refused.events, "the re-run finished the load: {refused:?} then {loaded:?}");
    let server = Server::start_at(&db, &fixture.pki());
    let insurer = server.client(&fixture, Some(&format!("insurers/{own}")));
    let report = insurer.upload_events(upload).await.expect("an upload once the load has ended");
    assert_eq!(report.applied, 1, "{report:?}");
}
