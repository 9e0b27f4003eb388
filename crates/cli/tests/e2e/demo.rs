//! `onshi demo --check` from an empty directory: the README's first command, scripted.

use crate::common::onshi;

#[test]
fn demo_check_passes_from_nothing_and_reuses_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("demo");
    for round in 0..2 {
        let output = onshi().args(["demo", "--check", "--persons", "8000", "--dir"]).arg(&root).output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "round {round}: {stdout}\n{stderr}");
        assert!(stdout.contains("all answers match the ground truth"), "{stdout}");
        for category in [
            "every_result_code",
            "malformed_input",
            "no_client_certificate",
            "batch_matches_singles",
            "twins_without_branch",
            "gateway_request_file",
        ] {
            assert!(stdout.contains(category), "{category} missing from\n{stdout}");
        }
        if round == 1 {
            assert!(stderr.contains("reusing"), "the second run reuses the data: {stderr}");
        }
    }
}

#[test]
fn demo_check_fails_when_the_register_disagrees() {
    // Remove one imported coverage behind the center's back: the check must notice.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("demo");
    let first = onshi().args(["demo", "--check", "--persons", "3000", "--dir"]).arg(&root).output().unwrap();
    assert!(first.status.success());
    let truth = onshi_synth::read_truth(&root.join("synth/ground-truth.jsonl")).unwrap();
    let case = truth.iter().find(|c| c.category == "valid").expect("a valid case");
    let connection = rusqlite_connection(&root.join("center.sqlite"));
    let changed = connection
        .execute(
            "UPDATE coverages SET lost_on = acquired_on, loss_reason = '99'
             WHERE insurer_number = ?1 AND card_number = ?2 AND card_branch = ?3",
            (
                case.request.insurer_number.trim(),
                case.request.number.as_str(),
                case.request.branch.as_deref().unwrap().parse::<i64>().unwrap(),
            ),
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(connection);
    let output = onshi().args(["demo", "--check", "--persons", "3000", "--per-category", "100000", "--dir"]).arg(&root).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains(&format!("FAIL valid: {}", case.case)), "{stdout}");
}

fn rusqlite_connection(path: &std::path::Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).unwrap()
}
