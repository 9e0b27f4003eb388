//! The register on PostgreSQL with a streaming replica (issue 14): a primary and a replica made
//! with the machine's server binaries (`initdb`, `pg_basebackup -R`, `pg_ctl`), the population
//! imported on the primary, and a center that reads verifications from the replica and says how
//! current the replica was.

use std::path::PathBuf;

use onshi_store::postgres::cluster::{Cluster, binaries_installing, free_port};

use crate::common::{CLINIC, Fixture, Server};

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
    let mut replica = Cluster::replica_of(&primary, &dir.join("replica"), free_port().unwrap(), "replica1").expect("replica made");
    replica.start().expect("replica starts");
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
