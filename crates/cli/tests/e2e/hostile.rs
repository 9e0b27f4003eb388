//! The center under hostile clients and on a stop (issue 11, items 1 and 2), through the real
//! `onshi center serve` on loopback: floods of idle and half-open connections, slow headers
//! and bodies, a clinic over its rate, requests without a certificate, and SIGTERM under load.
//! Every flood is bounded in count and in time and stops with the test.

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use onshi_api::client::ClientError;

use crate::common::{CLINIC, Fixture, OTHER_CLINIC, Server};

fn clinic(code: &str) -> String {
    format!("institutions/{code}")
}

/// A TLS connection to the center with the clinic's certificate, over a plain socket: the test
/// decides byte by byte what to send.
fn tls_as_clinic(fixture: &Fixture, addr: &str) -> rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let pki = fixture.pki();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(pki.join("ca.pem")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(pki.join(format!("{}.pem", clinic(CLINIC)))).unwrap().map(Result::unwrap).collect();
    let key = PrivateKeyDer::from_pem_file(pki.join(format!("{}.key", clinic(CLINIC)))).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    let connection = rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("127.0.0.1").unwrap()).unwrap();
    let socket = std::net::TcpStream::connect(addr).unwrap();
    // The test's own deadline: the center must act well before it.
    socket.set_read_timeout(Some(std::time::Duration::from_secs(60))).unwrap();
    rustls::StreamOwned::new(connection, socket)
}

/// Reads until the center closes the connection; what it sent before.
fn read_until_closed(stream: &mut impl Read) -> Result<String, std::io::Error> {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return Ok(String::from_utf8_lossy(&received).into_owned()),
            Ok(n) => received.extend_from_slice(&buffer[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => return Err(e),
            // A close without close_notify or a reset is a close too.
            Err(_) => return Ok(String::from_utf8_lossy(&received).into_owned()),
        }
    }
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines().filter(|l| l.starts_with(name)).filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok()).sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn clinics_are_answered_while_thousands_of_idle_and_half_open_connections_are_held() {
    let fixture = Fixture::new(1_000);
    let server = Server::start_with(&fixture.db(), &fixture.pki(), &["--rate-limit", "200"]);
    let truth = fixture.truth();
    let case = truth.iter().find(|c| c.category == "valid").expect("a valid case");

    // 2,000 sockets that never speak, and 300 that send the start of a TLS record and stall:
    // more than the center's handshake slots, so the oldest are dropped for newer ones.
    let mut held = Vec::new();
    for i in 0..2_300 {
        let mut socket = std::net::TcpStream::connect(&server.addr).expect("connect");
        if i % 8 == 0 {
            socket.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).expect("a first byte of a ClientHello");
        }
        held.push(socket);
    }
    // The clinic: each check on a new connection, so each needs a handshake amid the flood.
    for round in 0..20 {
        let client = server.client(&fixture, Some(&clinic(CLINIC)));
        let answer = client.verify_number(&case.request).await.unwrap_or_else(|e| panic!("round {round}: {e}"));
        onshi_synth::check_answer(&answer, &case.expect).unwrap_or_else(|why| panic!("round {round}: {why}"));
    }
    let anonymous = server.client_with_ca(&fixture.pki().join("ca.pem"), None);
    let (_, metrics) = anonymous.get_raw("/metrics").await.expect("metrics");
    // All 2,300 were accepted before the clinic's connections (the accept queue is FIFO), and
    // at most 1,024 handshakes may be in progress: the rest were dropped for newer ones or
    // timed out.
    let dropped = metric(&metrics, "onshi_unauthenticated_refusals_total{reason=\"HANDSHAKE_DROPPED_FOR_NEWER\"}");
    let timed_out = metric(&metrics, "onshi_unauthenticated_refusals_total{reason=\"HANDSHAKE_TIMEOUT\"}");
    assert!(dropped >= 1, "{metrics}");
    assert!(dropped + timed_out >= 2_300 - 1_024, "dropped {dropped}, timed out {timed_out}\n{metrics}");
    drop(held);

    // Nothing of the flood is in the audit log: only the clinic's checks are.
    let audit = rusqlite::Connection::open(fixture.root().join("center.audit.sqlite")).unwrap();
    let (entries, anonymous_entries): (i64, i64) =
        audit.query_row("SELECT count(*), count(*) FILTER (WHERE actor = '-') FROM audit_log", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    assert_eq!((entries, anonymous_entries), (20, 0));
}

#[test]
fn a_slow_header_or_a_slow_body_is_cut_off() {
    let fixture = Fixture::new(500);
    let server = Server::start(&fixture);
    let addr = server.addr.clone();
    // A header that never ends: the connection is closed (HEADER_TIMEOUT, 10 s).
    let header = {
        let mut stream = tls_as_clinic(&fixture, &addr);
        stream.write_all(b"POST /v1/verify/number HTTP/1.1\r\nHost: 127.0.0.1\r\n").unwrap();
        stream.flush().unwrap();
        std::thread::spawn(move || read_until_closed(&mut stream))
    };
    // A body that stops half way: 408 BODY_TIMEOUT with the action in Japanese.
    let body = {
        let mut stream = tls_as_clinic(&fixture, &addr);
        stream
            .write_all(b"POST /v1/verify/number HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{\"insurer_")
            .unwrap();
        stream.flush().unwrap();
        std::thread::spawn(move || read_until_closed(&mut stream))
    };
    let header = header.join().unwrap().expect("the center closes a connection whose header never ends");
    assert!(!header.contains("HTTP/1.1 200"), "{header}");
    let body = body.join().unwrap().expect("the center answers a body that stops");
    assert!(body.starts_with("HTTP/1.1 408"), "{body}");
    assert!(body.contains("BODY_TIMEOUT") && body.contains("もう一度"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clinic_over_its_rate_gets_429_with_retry_after_and_the_others_go_on() {
    let fixture = Fixture::new(500);
    let server = Server::start_with(&fixture.db(), &fixture.pki(), &["--rate-limit", "5"]);
    let case = fixture.truth().into_iter().find(|c| c.category == "valid").expect("a valid case");
    let greedy = server.client(&fixture, Some(&clinic(CLINIC)));
    let mut limited = None;
    // 5 per second, bursts of 10: the 11th request of an instant is refused.
    for _ in 0..30 {
        match greedy.verify_number(&case.request).await {
            Ok(_) => {}
            Err(ClientError::Refused { status, body }) => {
                limited = Some((status, body));
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    let (status, body) = limited.expect("refused once over its rate");
    assert_eq!((status, body.error.code.as_str()), (429, "RATE_LIMITED"));
    assert!(body.error.reception_ja.contains("待って"), "{}", body.error.reception_ja);
    let other = server.client(&fixture, Some(&clinic(OTHER_CLINIC)));
    assert!(other.verify_number(&case.request).await.is_ok(), "another clinic is not limited by this one");

    // The Retry-After header, read raw.
    let (raw_status, headers) = {
        use std::io::BufRead;
        let mut stream = tls_as_clinic(&fixture, &server.addr);
        let body = serde_json::to_vec(&case.request).unwrap();
        let request = format!(
            "POST /v1/verify/number HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(request.as_bytes()).unwrap();
        stream.write_all(&body).unwrap();
        let mut reader = std::io::BufReader::new(stream);
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                break;
            }
            lines.push(line.trim().to_string());
        }
        (lines.first().cloned().unwrap_or_default(), lines)
    };
    assert!(raw_status.contains("429"), "{raw_status}");
    assert!(headers.iter().any(|h| h.to_ascii_lowercase().starts_with("retry-after: ")), "{headers:?}");

    // Requests without a certificate are counted, never sealed into the audit log.
    let anonymous = server.client_with_ca(&fixture.pki().join("ca.pem"), None);
    for _ in 0..5 {
        assert!(matches!(anonymous.verify_number(&case.request).await, Err(ClientError::Refused { status: 401, .. })));
    }
    let (_, metrics) = anonymous.get_raw("/metrics").await.unwrap();
    assert_eq!(metric(&metrics, "onshi_unauthenticated_refusals_total{reason=\"CLIENT_CERTIFICATE_REQUIRED\"}"), 5, "{metrics}");
    assert!(metric(&metrics, "onshi_rate_limited_total") >= 2, "{metrics}");
    let audit = rusqlite::Connection::open(fixture.root().join("center.audit.sqlite")).unwrap();
    let anonymous_entries: i64 = audit.query_row("SELECT count(*) FROM audit_log WHERE actor = '-'", [], |r| r.get(0)).unwrap();
    assert_eq!(anonymous_entries, 0);

    // The patients' endpoints need no certificate: one address gets 5 a second (bursts of
    // 10), so a flood of challenges from one host cannot use up the patients' pool.
    let mut statuses = Vec::new();
    for _ in 0..15 {
        let (status, _) = anonymous.post_raw("/v1/patient/challenge", "application/json", b"{}".to_vec()).await.unwrap();
        statuses.push(status);
    }
    assert!(statuses[..10].iter().all(|s| *s == 200), "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stop_under_load_loses_no_answered_verification() {
    let fixture = Fixture::new(1_000);
    let mut server = Server::start(&fixture);
    let truth = fixture.truth();
    let requests: Vec<_> = truth.iter().filter(|c| c.request.date_of_care.is_some()).take(50).map(|c| c.request.clone()).collect();
    let answered = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(tokio::sync::Notify::new());
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..4 {
        let client = server.client(&fixture, Some(&clinic(CLINIC)));
        let (answered, stop, requests, progress) = (answered.clone(), stop.clone(), requests.clone(), progress.clone());
        workers.spawn(async move {
            let mut i = worker;
            // Until the center is gone: every answer it gave is counted.
            while !stop.load(Ordering::SeqCst) {
                match client.verify_number(&requests[i % requests.len()]).await {
                    Ok(_) => {
                        answered.fetch_add(1, Ordering::SeqCst);
                        progress.notify_one();
                    }
                    Err(_) => break,
                }
                i += 4;
            }
        });
    }
    // Under load: wait for a few hundred answers (a count, not a time), then SIGTERM.
    while answered.load(Ordering::SeqCst) < 300 {
        progress.notified().await;
    }
    let status = tokio::task::spawn_blocking(move || {
        let status = server.terminate();
        (status, server)
    })
    .await
    .unwrap();
    stop.store(true, Ordering::SeqCst);
    while workers.join_next().await.is_some() {}
    let (status, _server) = status;
    assert!(status.success(), "a stop exits 0: {status:?}");

    let total = answered.load(Ordering::SeqCst) as i64;
    let audit = rusqlite::Connection::open(fixture.root().join("center.audit.sqlite")).unwrap();
    let logged: i64 =
        audit.query_row("SELECT count(*) FROM audit_log WHERE action = 'verify_number' AND actor = ?1", [CLINIC], |r| r.get(0)).unwrap();
    assert!(logged >= total, "{total} verifications were answered, {logged} are in the audit log");
    let verified =
        crate::common::onshi().args(["audit", "verify", "--db"]).arg(fixture.db()).arg("--pki").arg(fixture.pki()).output().unwrap();
    assert!(verified.status.success(), "{}", String::from_utf8_lossy(&verified.stdout));

    // The stop exported the chain's head: deleting the newest entries is found against it.
    assert!(fixture.root().join("center.audit.checkpoint").exists(), "a checkpoint beside the log");
    audit.execute("DELETE FROM audit_log WHERE seq > (SELECT max(seq) - 3 FROM audit_log)", []).unwrap();
    drop(audit);
    let truncated =
        crate::common::onshi().args(["audit", "verify", "--db"]).arg(fixture.db()).arg("--pki").arg(fixture.pki()).output().unwrap();
    let stdout = String::from_utf8_lossy(&truncated.stdout);
    assert_eq!(truncated.status.code(), Some(2), "{stdout}");
    assert!(stdout.contains("TAMPERED") && stdout.contains("newest entries were deleted"), "{stdout}");
}

#[test]
fn an_audit_log_without_its_key_refuses_to_start_and_verify_writes_no_key() {
    let fixture = Fixture::new(200);
    drop(Server::start(&fixture));
    let key = fixture.pki().join("audit.key");
    std::fs::rename(&key, fixture.root().join("audit.key.saved")).unwrap();
    // `audit verify` needs the key and does not make one.
    let verify =
        crate::common::onshi().args(["audit", "verify", "--db"]).arg(fixture.db()).arg("--pki").arg(fixture.pki()).output().unwrap();
    assert!(!verify.status.success());
    assert!(!key.exists(), "audit verify never writes a key");
    // The center refuses to start with a new key over an existing log.
    let serve = crate::common::onshi()
        .args(["center", "serve", "--listen", "127.0.0.1:0", "--db"])
        .arg(fixture.db())
        .arg("--pki")
        .arg(fixture.pki())
        .output()
        .unwrap();
    assert!(!serve.status.success());
    let stderr = String::from_utf8_lossy(&serve.stderr);
    assert!(stderr.contains("restore audit.key from the backup"), "{stderr}");
    assert!(!key.exists(), "no silent re-key");
}
