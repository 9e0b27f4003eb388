//! Issue 10, item 6: the reader file holds the device key and the facility password. It is
//! written for its owner only, keeps the password as a slow salted hash, and the doctor warns
//! when the file has become readable by others.

use aws_lc_rs::digest::{SHA256, digest};

use crate::common::{onshi, run_ok};

const READER_ID: &str = "reader-secrets";
const PASSWORD: &str = "facility-pass-10";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn reader_init_writes_an_owner_only_file_without_a_fast_password_hash() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reader.json");
    run_ok(onshi().args(["reader", "init", "--id", READER_ID, "--facility-password", PASSWORD, "--out"]).arg(&path));

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "reader.json is {mode:o}");
    }

    // Neither the password nor any SHA-256 an attacker could test guesses against quickly.
    let text = std::fs::read_to_string(&path).unwrap();
    let lower = text.to_lowercase();
    assert!(!text.contains(PASSWORD), "{text}");
    for candidate in [format!("{READER_ID}:{PASSWORD}"), PASSWORD.to_string(), format!("{PASSWORD}:{READER_ID}")] {
        let fast = hex(digest(&SHA256, candidate.as_bytes()).as_ref());
        assert!(!lower.contains(&fast), "SHA-256 of {candidate:?} is in the file");
    }
    let file: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(file.get("facility_password_sha256").is_none(), "{text}");
    assert_eq!(file["facility_password"]["algorithm"], "pbkdf2-hmac-sha256");
    assert_eq!(file["facility_password"]["iterations"], 600_000);
    assert_eq!(file["facility_password"]["salt"].as_str().map(str::len), Some(32), "16 random bytes");

    // Initialised again over an existing file: a new salt, still owner-only.
    run_ok(onshi().args(["reader", "init", "--id", READER_ID, "--facility-password", PASSWORD, "--out"]).arg(&path));
    let again: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_ne!(again["facility_password"]["salt"], file["facility_password"]["salt"]);

    // A file of an older onshi (a single salted SHA-256) is refused with what to do.
    let old = serde_json::json!({
        "reader_id": READER_ID,
        "device_key_pem": file["device_key_pem"],
        "facility_password_sha256": hex(digest(&SHA256, format!("{READER_ID}:{PASSWORD}").as_bytes()).as_ref()),
    });
    let old_path = dir.path().join("old-reader.json");
    std::fs::write(&old_path, old.to_string()).unwrap();
    let output = onshi()
        .args(["reader", "register", "--reader"])
        .arg(&old_path)
        .args(["--center", "https://127.0.0.1:9", "--ca", "/nonexistent", "--cert", "/nonexistent", "--key", "/nonexistent"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("onshi reader init") && stderr.contains("SHA-256"), "{stderr}");
}

#[cfg(unix)]
#[test]
fn doctor_warns_when_the_reader_file_is_readable_by_others() {
    use std::os::unix::fs::PermissionsExt;
    let world = crate::clinic::ClinicWorld::new();
    let config = world.path("gateway.toml");
    let report = |config: &std::path::Path| {
        let output = onshi().args(["doctor", "--config"]).arg(config).output().unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let fine = report(&config);
    assert!(fine.contains("[OK] カードリーダー"), "{fine}");
    std::fs::set_permissions(world.path("reader.json"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let warned = report(&config);
    assert!(warned.contains("[注意] カードリーダー") && warned.contains("他のユーザーも読めます"), "{warned}");
    assert!(warned.contains("chmod 600"), "{warned}");
}
