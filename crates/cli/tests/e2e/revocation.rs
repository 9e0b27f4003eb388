//! Issue 10, item 5: a stolen clinic or insurer key stops working. `onshi center pki revoke`
//! publishes a signed CRL that the running center takes into force at its next handshake;
//! the revoked clinic is refused at the handshake and told why, `onshi doctor` names it, other
//! clinics go on, and a new certificate for the same code works — without restarting the center.

use std::path::Path;
use std::process::Output;

use crate::clinic::{ClinicWorld, GatewayProcess, KYOKAI, blocking, lose, members, wait_for};
use crate::common::{CLINIC, OTHER_CLINIC, institution_args, onshi, run_ok};

/// `onshi verify number` for the card holder P1 as institution `code`.
fn verify_as(world: &ClinicWorld, code: &str) -> Output {
    verify_with(world, &world.path("pki"), code)
}

/// The same with the certificates in `pki`.
fn verify_with(world: &ClinicWorld, pki: &Path, code: &str) -> Output {
    let p1 = &members()[0];
    onshi()
        .args(["verify", "number", "--insurer", &p1.insurer, "--symbol", p1.symbol, "--number", p1.number, "--branch", p1.branch])
        .args(["--birth", p1.birth])
        .args(institution_args(&world.url(), pki, code))
        .output()
        .expect("onshi runs")
}

fn said(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

fn doctor(config: &Path) -> (Option<i32>, String) {
    let output = onshi().args(["doctor", "--config"]).arg(config).output().expect("doctor runs");
    (output.status.code(), String::from_utf8_lossy(&output.stdout).into_owned())
}

#[test]
fn a_revoked_clinic_is_refused_at_the_handshake_without_restarting_the_center() {
    let world = ClinicWorld::new();
    let pki = world.path("pki");
    run_ok(onshi().args(["center", "pki", "issue-institution", "--code", OTHER_CLINIC, "--dir"]).arg(&pki));
    let center_addr = world.server.as_ref().unwrap().addr.clone();

    let before = verify_as(&world, CLINIC);
    assert!(before.status.success(), "{}", said(&before));
    let (code, report) = doctor(&world.path("gateway.toml"));
    assert_eq!(code, Some(0), "{report}");

    // A connection the clinic opened before the revocation and keeps alive.
    let p1 = &members()[0];
    let request = onshi_api::verify::VerifyNumberRequest {
        institution_code: None,
        insurer_number: p1.insurer.clone(),
        symbol: Some(p1.symbol.into()),
        number: p1.number.into(),
        branch: Some(p1.branch.into()),
        birth_date: p1.birth.into(),
        date_of_care: None,
        limit_consent: false,
        reverification: false,
        document: None,
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let kept_alive = world.server.as_ref().unwrap().client_at(&pki, Some(CLINIC));
    runtime.block_on(kept_alive.verify_number(&request)).expect("verifies before the revocation");

    // The clinic's key was stolen: the operator revokes every certificate of its code.
    let revoked = run_ok(onshi().args(["center", "pki", "revoke", "--code", CLINIC, "--dir"]).arg(&pki));
    let revoked = String::from_utf8_lossy(&revoked.stdout).into_owned();
    assert!(revoked.contains("revoked ") && revoked.contains("CRL number 1"), "{revoked}");
    assert!(pki.join("crl.pem").exists());
    // What the thief holds: the revoked certificate and its key.
    let stolen = world.path("stolen");
    std::fs::create_dir_all(stolen.join("institutions")).unwrap();
    std::fs::copy(pki.join("ca.pem"), stolen.join("ca.pem")).unwrap();
    for ext in ["pem", "key"] {
        std::fs::copy(pki.join(format!("institutions/{CLINIC}.{ext}")), stolen.join(format!("institutions/{CLINIC}.{ext}"))).unwrap();
    }

    let refused = verify_as(&world, CLINIC);
    let text = said(&refused);
    assert!(!refused.status.success(), "{text}");
    assert!(text.contains("失効") && text.contains("新しい証明書の発行を依頼"), "{text}");
    assert!(text.contains("CERTIFICATE_REVOKED"), "{text}");

    // The connection opened before is refused too, with the stable code and the action.
    match runtime.block_on(kept_alive.verify_number(&request)) {
        Err(onshi_api::client::ClientError::Refused { status, body }) => {
            assert_eq!((status, body.error.code.as_str()), (403, "CERTIFICATE_REVOKED"));
            assert!(body.error.reception_ja.contains("新しい証明書の発行を依頼"), "{}", body.error.reception_ja);
        }
        other => panic!("the kept-alive connection still verifies: {other:?}"),
    }

    // The doctor names the broken link and what to do.
    let (code, report) = doctor(&world.path("gateway.toml"));
    assert_eq!(code, Some(1), "{report}");
    assert!(report.contains("[NG] 暗号化通信 (TLS)") && report.contains("失効"), "{report}");
    assert!(report.contains("運用者に新しい証明書の発行を依頼"), "{report}");
    assert!(report.contains("[OK] 証明書"), "the file itself is fine; the center revoked it:\n{report}");

    // The clinic's gateway goes on offline, and its page names the revoked certificate by
    // itself (the doctor's checks run when the line goes down).
    let gateway = GatewayProcess::start(&world);
    let p2 = &members()[1];
    let queued = gateway.post(
        "/check",
        &[("insurer_number", &p2.insurer), ("symbol", p2.symbol), ("number", p2.number), ("branch", p2.branch), ("birth_date", p2.birth)],
    );
    assert!(queued.contains("目視で確認して受け付けてください") || queued.contains("控え"), "{queued}");
    wait_for("the page to name the revoked certificate", || {
        let live = gateway.get("/live");
        (live.contains("故障箇所: 暗号化通信 (TLS)") && live.contains("失効")).then_some(())
    });
    drop(gateway);

    // Another clinic is not affected.
    let other = verify_as(&world, OTHER_CLINIC);
    assert!(other.status.success(), "{}", said(&other));

    // A new certificate for the same code works at once (a new serial, not on the list).
    run_ok(onshi().args(["center", "pki", "issue-institution", "--code", CLINIC, "--dir"]).arg(&pki));
    let reissued = verify_as(&world, CLINIC);
    assert!(reissued.status.success(), "{}", said(&reissued));
    let thief = verify_with(&world, &stolen, CLINIC);
    assert!(!thief.status.success() && said(&thief).contains("CERTIFICATE_REVOKED"), "{}", said(&thief));
    let (code, report) = doctor(&world.path("gateway.toml"));
    assert_eq!(code, Some(0), "{report}");

    // An insurer's key: its uploads are refused at the handshake too.
    world.upload(&[lose(&members()[3], "20300101")]);
    let insurer = run_ok(onshi().args(["center", "pki", "revoke", "--insurer", KYOKAI, "--reason", "key-compromise", "--dir"]).arg(&pki));
    assert!(String::from_utf8_lossy(&insurer.stdout).contains("CRL number 2"));
    let server = world.server.as_ref().unwrap();
    let identity = (pki.join(format!("insurers/{KYOKAI}.pem")), pki.join(format!("insurers/{KYOKAI}.key")));
    let client = server.client_with_ca(&pki.join("ca.pem"), Some(identity));
    match blocking(client.upload_events(lose(&members()[3], "20300201") + "\n")) {
        Err(onshi_api::client::ClientError::Transport { source, .. }) => {
            assert!(onshi_pki::revocation::revoked_by_peer(&source), "{source:?}")
        }
        other => panic!("the revoked insurer's upload went through: {other:?}"),
    }
    assert_eq!(world.server.as_ref().unwrap().addr, center_addr, "the same center all along");

    // A list that is not the CA's: the running center keeps the one in force (the revoked
    // clinic's old certificate stays refused), and a restart refuses to start on it.
    let forged_dir = world.path("forged-pki");
    run_ok(onshi().args(["center", "pki", "init", "--dir"]).arg(&forged_dir));
    run_ok(onshi().args(["center", "pki", "issue-institution", "--code", OTHER_CLINIC, "--dir"]).arg(&forged_dir));
    run_ok(onshi().args(["center", "pki", "revoke", "--code", OTHER_CLINIC, "--dir"]).arg(&forged_dir));
    std::fs::copy(forged_dir.join("crl.pem"), pki.join("crl.pem")).unwrap();
    let still = verify_with(&world, &stolen, CLINIC);
    assert!(!still.status.success() && said(&still).contains("CERTIFICATE_REVOKED"), "{}", said(&still));
    let other = verify_as(&world, OTHER_CLINIC);
    assert!(other.status.success(), "the forged list revoking it is not in force: {}", said(&other));
    let restart = onshi()
        .args(["center", "serve", "--listen", "127.0.0.1:0", "--db"])
        .arg(world.path("center.sqlite"))
        .arg("--pki")
        .arg(&pki)
        .output()
        .unwrap();
    let text = said(&restart);
    assert!(!restart.status.success() && text.contains("crl.pem") && text.contains("not signed by this center's CA"), "{text}");
}
