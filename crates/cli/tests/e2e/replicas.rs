//! The register on PostgreSQL with a streaming replica (issue 14): a primary and a replica made
//! with the machine's server binaries (`initdb`, `pg_basebackup -R`, `pg_ctl`), the population
//! imported on the primary, and a center that reads verifications from the replica and says how
//! current the replica was.

use std::path::PathBuf;

use onshi_store::postgres::cluster::{Cluster, binaries_installing, free_port};

use crate::common::{CLINIC, Fixture, Server, until};

/// Now as the register writes times: Japan-time `YYYYMMDDHHmmss`.
fn now_jst() -> String {
    onshi_domain::Timestamp::from_jst_seconds(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64 + 9 * 3600,
    )
    .to_string()
}

/// A primary whose commits return only once the replica has applied them
/// (`synchronous_commit = remote_apply`), so that what the primary acknowledged the replica
/// answers: the synchronisation is the database's own.
fn primary_and_replica(dir: &std::path::Path) -> (Cluster, Cluster) {
    let binaries = binaries_installing().expect("PostgreSQL server binaries");
    let mut primary = Cluster::init(&dir.join("primary"), &binaries, free_port().unwrap()).expect("primary made");
    primary.start().expect("primary starts");
    primary.stop_with_this_process().unwrap();
    let mut replica = Cluster::replica_of(&primary, &dir.join("replica"), free_port().unwrap(), "replica1").expect("replica made");
    replica.start().expect("replica starts");
    replica.stop_with_this_process().unwrap();
    // Synchronous only now: set before the replica exists, the primary's own first commits
    // would wait for it.
    primary.configure("synchronous_standby_names = 'replica1'\nsynchronous_commit = remote_apply").unwrap();
    primary.reload().unwrap();
    (primary, replica)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_answers_what_the_primary_registered_and_says_how_current_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let (primary, replica) = primary_and_replica(dir.path());
    let before_import = now_jst();
    let fixture = Fixture::at(PathBuf::from(primary.url()), 3_000);
    assert_eq!(replica.sql("SELECT pg_is_in_recovery()").unwrap(), "t", "the replica is a standby");
    // Read at once after the import returned: every commit the primary acknowledged is applied.
    let on_replica: u64 = replica.sql("SELECT count(*) FROM insurer_events").unwrap().parse().unwrap();
    let on_primary: u64 = primary.sql("SELECT count(*) FROM insurer_events").unwrap().parse().unwrap();
    assert!(on_primary > 3_000, "{on_primary} events imported");
    assert_eq!(on_replica, on_primary, "the replica holds what the primary acknowledged");

    let server = Server::start_with(&fixture.db(), &fixture.pki(), &["--read-db", &replica.url()]);
    let client = server.client(&fixture, Some(&format!("institutions/{CLINIC}")));
    for case in fixture.truth() {
        let answer = client.verify_number(&case.request).await.unwrap_or_else(|e| panic!("{}: {e}", case.case));
        onshi_synth::check_answer(&answer, &case.expect).unwrap_or_else(|why| panic!("{} ({}): {why}", case.case, case.category));
        let as_of = answer.replica_as_of.as_deref().unwrap_or_else(|| panic!("{}: read from the replica, and says so", case.case));
        assert!(as_of >= before_import.as_str() && as_of <= answer.answered_at.as_str(), "{as_of} between {before_import} and the answer");
    }

    // Without --read-db the same center reads the primary and claims no replica position.
    drop(server);
    let server = Server::start(&fixture);
    let client = server.client(&fixture, Some(&format!("institutions/{CLINIC}")));
    let case = &fixture.truth()[0];
    assert_eq!(client.verify_number(&case.request).await.unwrap().replica_as_of, None);
}

/// One acquisition for the fixture's insurer, numbered `i`.
fn acquisition(insurer: &str, i: u32) -> String {
    format!(
        r#"{{"event_id":"failover-{i}","kind":"acquire","insurer_number":"{insurer}","person_ref":"failover-person-{i}","card":{{"symbol":"88","number":"{}","branch":"00"}},"occurred_on":"20261101","notified_at":"20261102090000","member":{{"relationship":"1","card_classification":"01","name":"試験 一郎","name_kana":"ｼｹﾝ ｲﾁﾛｳ","sex":"1","birth_date":"19850505"}},"terms":{{"income_class":"general"}}}}"#,
        880_000 + i
    )
}

fn request(insurer: &str, i: u32) -> onshi_api::verify::VerifyNumberRequest {
    crate::common::number_request(insurer, "88", &(880_000 + i).to_string())
}

/// Either the right answer (valid coverage) or the refusal that says to try again: never a
/// wrong answer. Returns whether it was answered.
fn answered_or_unavailable(result: Result<onshi_api::verify::VerifyAnswer, onshi_api::client::ClientError>, what: &str) -> bool {
    match result {
        Ok(answer) => {
            assert_eq!(answer.validity.code, "1", "{what}: a coverage the insurer was told is registered answers valid");
            true
        }
        // The register, or the audit log in the same database, cannot be written: refused, to
        // be asked again (an access is never answered without its audit record).
        Err(onshi_api::client::ClientError::Refused { status, body }) => {
            assert!(
                status == 503 && ["REGISTER_UNAVAILABLE", "AUDIT_UNAVAILABLE"].contains(&body.error.code.as_str()),
                "{what}: {status} {}",
                body.error.code
            );
            false
        }
        Err(other) => panic!("{what}: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn after_the_primary_dies_the_promoted_replica_holds_every_acknowledged_upload() {
    let dir = tempfile::tempdir().unwrap();
    let (mut primary, replica) = primary_and_replica(dir.path());
    // The center follows whichever of the two accepts writes.
    let both = format!(
        "host=127.0.0.1,127.0.0.1 port={},{} user=onshi password={} dbname=onshi target_session_attrs=read-write",
        primary.port(),
        replica.port(),
        primary.password()
    );
    let fixture = Fixture::at(PathBuf::from(&both), 500);
    let server = Server::start(&fixture);
    let insurer = server.client(&fixture, Some(&format!("insurers/{}", fixture.insurer)));
    let clinic = server.client(&fixture, Some(&format!("institutions/{CLINIC}")));

    const UPLOADS: u32 = 40;
    for i in 0..UPLOADS {
        let report = insurer.upload_events(acquisition(&fixture.insurer, i)).await.unwrap();
        assert_eq!(report.applied, 1, "upload {i} acknowledged: {report:?}");
    }

    primary.kill().unwrap();
    // While no server accepts writes: the right answer or "try again", never a wrong one.
    let mut answered = u64::from(answered_or_unavailable(clinic.verify_number(&request(&fixture.insurer, 0)).await, "during the switch"));
    let refused = insurer.upload_events(acquisition(&fixture.insurer, UPLOADS)).await;
    assert!(
        matches!(&refused, Err(onshi_api::client::ClientError::Refused { status: 503, .. })),
        "an upload with no primary is refused, not half-applied: {refused:?}"
    );

    replica.promote().unwrap();
    // Each request is its own attempt, as a gateway retries a 503 (every 100 ms here, for at
    // most 10 s per request): the center reconnects to the promoted server on the next use of
    // a connection the kill broke, and accepts accesses again once its audit writer has
    // written the records it kept.
    for i in 0..UPLOADS {
        until(&format!("acknowledged upload {i} answers from the promoted replica"), || async {
            answered_or_unavailable(clinic.verify_number(&request(&fixture.insurer, i)).await, "after the promotion").then_some(())
        })
        .await;
        answered += 1;
    }
    let report = until("uploads work again", || async { insurer.upload_events(acquisition(&fixture.insurer, UPLOADS)).await.ok() }).await;
    assert_eq!(report.applied, 1, "the refused upload applies on the new primary");
    assert_eq!(replica.sql("SELECT pg_is_in_recovery()").unwrap(), "f", "the replica is the primary now");
    // Every verification that was answered is in the audit chain, on the new primary.
    let mut server = server;
    assert!(server.terminate().success(), "the center stops and commits its audit queue");
    let audited: u64 = replica
        .sql(&format!("SELECT count(*) FROM audit_log WHERE action = 'verify_number' AND actor = '{CLINIC}' AND code = '1'"))
        .unwrap()
        .parse()
        .unwrap();
    assert!(audited >= answered, "{answered} answered verifications, {audited} in the audit log");
}

/// A center on PostgreSQL that keeps its own copy of the card view (`--card-index-on-postgres`)
/// answers the ground truth from it and says up to when the copy holds every commit; an
/// insurer's upload through another center process on the same register reaches its answers
/// once the copy has caught up (seen as the answer's `replica_as_of` passing the upload), and
/// meanwhile the answer is the one from before or from after the upload, never another.
#[tokio::test(flavor = "multi_thread")]
async fn a_center_with_its_own_copy_on_postgres_answers_and_says_how_current_it_is() {
    let fixture = crate::common::Fixture::on(crate::common::Engine::Postgres, 3_000);
    let started = now_jst();
    let copying = Server::start_with(&fixture.db(), &fixture.pki(), &["--card-index-on-postgres"]);
    let clinic = copying.client(&fixture, Some(&format!("institutions/{CLINIC}")));
    let truth = fixture.truth();
    // The copy is loaded beside serving; until then the register answers, without a position.
    until("the copy answers", || async { clinic.verify_number(&truth[0].request).await.unwrap().replica_as_of }).await;
    let mut from_copy = 0;
    for case in &truth {
        let answer = clinic.verify_number(&case.request).await.unwrap_or_else(|e| panic!("{}: {e}", case.case));
        onshi_synth::check_answer(&answer, &case.expect).unwrap_or_else(|why| panic!("{} ({}): {why}", case.case, case.category));
        // Without a position the register answered (a copy more than 2 s behind answers
        // nothing, which a loaded machine may make happen); with one, the copy did.
        if let Some(as_of) = answer.replica_as_of.as_deref() {
            // The copy was read after the server started, and its time is a second already past.
            assert!(as_of >= a_second_before(&started).as_str(), "{as_of}: read before the test began at {started}");
            assert!(as_of < answer.answered_at.as_str(), "{as_of}: a second already past when answered at {}", answer.answered_at);
            from_copy += 1;
        }
    }
    assert!(from_copy > 0, "the copy answered");

    // Another center process takes an upload; this one answers it once its copy is past it.
    let other = Server::start(&fixture);
    let insurer = other.client(&fixture, Some(&format!("insurers/{}", fixture.insurer)));
    let before = clinic.verify_number(&request(&fixture.insurer, 1)).await.unwrap();
    assert_eq!(before.validity.code, "4", "該当資格なし: not registered yet");
    assert_eq!(insurer.upload_events(acquisition(&fixture.insurer, 1)).await.unwrap().applied, 1);
    // The upload committed before this second: a copy whose time has reached it holds it.
    let acknowledged_at = now_jst();
    let after = until("the copy holds the upload", || async {
        let answer = clinic.verify_number(&request(&fixture.insurer, 1)).await.unwrap();
        // Either side of the upload, never anything else.
        assert!(["1", "4"].contains(&answer.validity.code.as_str()), "{}", answer.validity.code);
        let as_of = answer.replica_as_of.clone()?;
        (as_of.as_str() >= acknowledged_at.as_str()).then_some(answer)
    })
    .await;
    assert_eq!(after.validity.code, "1", "the upload, once the copy's time has passed its acknowledgement");
}

/// `YYYYMMDDHHmmss` one second before `at`.
fn a_second_before(at: &str) -> String {
    let seconds = onshi_domain::Timestamp::parse(at).expect("a time").jst_seconds();
    onshi_domain::Timestamp::from_jst_seconds(seconds - 1).to_string()
}
