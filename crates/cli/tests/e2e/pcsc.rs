//! The PC/SC stack for the card-reader tests: pcscd with vpcd's virtual reader, started once
//! for the test binary (pcscd's socket is one per machine) and stopped when the binary exits,
//! and virtual cards put into that reader with `onshi card insert`. Tests that use the reader
//! hold [`VirtualReader`], so that one card at a time is in it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use onshi_reader::pcsc::{Context, Slot};

use crate::common::onshi;

/// vpcd's port in the pcscd started here: below Linux's ephemeral range (32768–60999), so
/// that no outgoing connection of the tests running beside can hold it when vpcd binds it.
/// (The packaged default, 35963, is inside that range: a CI run lost the reader that way.)
const OWN_VPCD_PORT: u16 = 29_563;
/// vpcd's port in a pcscd already running with the packaged configuration, which serves as
/// well as the one started here.
const PACKAGED_VPCD_PORT: u16 = 35963;
const DRIVER: &str = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so";

/// The reader for one test at a time.
pub struct VirtualReader {
    pub name: String,
    /// Where vpcd takes the virtual card's connection.
    port: u16,
    _turn: MutexGuard<'static, ()>,
}

/// A virtual card in the reader until dropped (or until it leaves by itself).
pub struct Inserted {
    child: Child,
    reader: String,
}

fn install() {
    let ready =
        || Command::new("sh").args(["-c", "command -v pcscd"]).output().is_ok_and(|o| o.status.success()) && Path::new(DRIVER).exists();
    if ready() {
        return;
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/install-pcsc.sh");
    let status = Command::new("bash").arg(&script).status().expect("bash runs the install script");
    assert!(
        status.success() && ready(),
        "the card-reader tests need pcscd and vsmartcard-vpcd; {} could not install them",
        script.display()
    );
}

/// The name of vpcd's first slot among the readers, if pcscd has it.
fn vpcd_reader() -> Option<String> {
    let context = Context::establish().ok()?;
    context
        .readers()
        .ok()?
        .into_iter()
        .find(|name| name.ends_with(" 00 00") && (name.contains("onshi vpcd") || name.contains("Virtual PCD")))
}

/// Starts pcscd unless one with the virtual reader runs; returns the reader's name and vpcd's
/// port.
fn daemon() -> (&'static str, u16) {
    /// The reader's name and vpcd's port, and the pcscd started here with its configuration.
    type Daemon = ((String, u16), Option<Child>, Option<tempfile::TempDir>);
    static DAEMON: OnceLock<Daemon> = OnceLock::new();
    let (name, port) = &DAEMON
        .get_or_init(|| {
            install();
            if let Some(name) = vpcd_reader() {
                let port = if name.contains("onshi vpcd") { OWN_VPCD_PORT } else { PACKAGED_VPCD_PORT };
                return ((name, port), None, None);
            }
            let config = tempfile::tempdir().expect("temp dir");
            std::fs::write(
                config.path().join("vpcd"),
                format!("FRIENDLYNAME \"onshi vpcd\"\nDEVICENAME /dev/null:{OWN_VPCD_PORT}\nLIBPATH {DRIVER}\nCHANNELID {OWN_VPCD_PORT}\n"),
            )
            .expect("vpcd configuration");
            // pcscd in the foreground under a shell that kills it when this test binary exits
            // (its stdin, held by the binary, closes), so that no daemon outlives the tests.
            let script = format!(
                "pcscd --foreground --config {} >/dev/null 2>&1 & daemon=$!; read _; kill $daemon; wait $daemon",
                config.path().display()
            );
            let child = Command::new("sh").args(["-c", &script]).stdin(Stdio::piped()).spawn().expect("pcscd starts");
            // Wait until the service lists the reader: connecting is the synchronisation.
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            let name = loop {
                if let Some(name) = vpcd_reader() {
                    break name;
                }
                assert!(std::time::Instant::now() < deadline, "pcscd did not list the vpcd reader within 20 s");
                std::thread::sleep(Duration::from_millis(50));
            };
            ((name, OWN_VPCD_PORT), Some(child), Some(config))
        })
        .0;
    (name.as_str(), *port)
}

impl VirtualReader {
    pub fn take() -> VirtualReader {
        static TURN: Mutex<()> = Mutex::new(());
        let (name, port) = daemon();
        let turn = TURN.lock().unwrap_or_else(|p| p.into_inner());
        VirtualReader { name: name.to_string(), port, _turn: turn }
    }

    /// Puts the card (or phone) file into the reader; `extra` adds `onshi card insert` flags.
    pub fn insert(&self, card: &Path, extra: &[&str]) -> Inserted {
        let mut child = onshi()
            .args(["card", "insert", "--vpcd", &format!("127.0.0.1:{}", self.port), "--card"])
            .arg(card)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("onshi card insert");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("the insert line");
        assert!(line.contains("placed"), "{line}");
        self.wait_for(true);
        Inserted { child, reader: self.name.clone() }
    }

    /// Waits until pcscd sees a card in the reader (or sees it gone).
    pub fn wait_for(&self, present: bool) {
        let context = Context::establish().expect("pcscd");
        let mut known = context.slot(&self.name, None, Duration::ZERO).expect("the reader's state");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while matches!(known, Slot::Card { .. }) != present {
            assert!(std::time::Instant::now() < deadline, "the reader did not see the card {}", if present { "placed" } else { "removed" });
            known = context.slot(&self.name, Some(&known), Duration::from_secs(1)).expect("the reader's state");
        }
    }
}

impl Inserted {
    /// Takes the card out and waits until the reader sees it gone.
    pub fn remove(mut self) {
        self.stop();
        let context = Context::establish().expect("pcscd");
        let mut known = context.slot(&self.reader, None, Duration::ZERO).expect("state");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while matches!(known, Slot::Card { .. }) {
            assert!(std::time::Instant::now() < deadline, "the reader still sees the card");
            known = context.slot(&self.reader, Some(&known), Duration::from_secs(1)).expect("state");
        }
    }

    fn stop(&mut self) {
        // SIGTERM: the card leaves cleanly (the command closes its connection to vpcd).
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

impl Drop for Inserted {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.stop();
        }
    }
}
