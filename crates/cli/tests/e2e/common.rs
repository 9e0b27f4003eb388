//! Helpers: a population in a temporary directory, the server as a child process, clients.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use onshi_api::client::{CenterClient, ClientConfig};
use onshi_synth::TruthCase;

pub fn onshi() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_onshi"));
    command.env("ONSHI_LOG", "warn");
    command
}

/// Runs to completion; panics with the output when the exit code differs.
/// `onshi card <action> --card CARD --reader READER` with the center arguments and `args`.
pub fn card_command(action: &str, card: &Path, reader: &Path, center: &[String], args: &[&str]) -> Output {
    onshi().args(["card", action, "--card"]).arg(card).arg("--reader").arg(reader).args(center).args(args).output().expect("onshi runs")
}

pub fn run_ok(command: &mut Command) -> Output {
    let output = command.output().expect("onshi runs");
    assert!(
        output.status.success(),
        "{command:?} failed: {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The command-line connection arguments for institution `code` with the certificates in `pki`.
pub fn institution_args(url: &str, pki: &Path, code: &str) -> Vec<String> {
    let file = |ext: &str| pki.join(format!("institutions/{code}.{ext}")).display().to_string();
    vec![
        "--center".into(),
        url.to_string(),
        "--ca".into(),
        pki.join("ca.pem").display().to_string(),
        "--cert".into(),
        file("pem"),
        "--key".into(),
        file("key"),
    ]
}

/// The demo clinic's and another clinic's institution codes.
pub const CLINIC: &str = "1311234569";
pub const OTHER_CLINIC: &str = "2711234563";

/// The register's engine a test runs on: the tests that matter run on both (issue 14), each
/// with the same body and the engine as its parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

impl Engine {
    /// The `--db` value for a new, empty register: a file in `dir`, or a database of its own on
    /// the test process's throwaway PostgreSQL cluster.
    pub fn new_register(self, dir: &Path, name: &str) -> PathBuf {
        match self {
            Engine::Sqlite => dir.join(format!("{name}.sqlite")),
            Engine::Postgres => PathBuf::from(
                onshi_store::postgres::cluster::test_database().unwrap_or_else(|e| panic!("a PostgreSQL cluster for the test: {e}")),
            ),
        }
    }
}

/// The register `db` names (a file or a PostgreSQL database), opened in this process.
pub fn open_register(db: &Path) -> Box<dyn onshi_store::Register> {
    if open_register_is_postgres(db) {
        Box::new(onshi_store::postgres::PgRegister::open(db.to_str().expect("UTF-8")).expect("the register opens"))
    } else {
        Box::new(onshi_store::sqlite::SqliteRegister::open(db, onshi_store::sqlite::SqliteOptions::SERVER).expect("the register opens"))
    }
}

pub fn open_register_is_postgres(db: &Path) -> bool {
    db.to_str().is_some_and(|t| t.contains("dbname=") || t.starts_with("postgres"))
}

/// A population generated, imported and given certificates, in a temporary directory.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub insurer: String,
    db: PathBuf,
}

impl Fixture {
    pub fn new(persons: u64) -> Fixture {
        Fixture::on(Engine::Sqlite, persons)
    }

    /// As [`Fixture::new`], with the register on `engine`.
    pub fn on(engine: Engine, persons: u64) -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = engine.new_register(dir.path(), "center");
        Fixture::build(dir, db, persons)
    }

    /// As [`Fixture::new`], with the register in the (empty) database `db`.
    pub fn at(db: PathBuf, persons: u64) -> Fixture {
        Fixture::build(tempfile::tempdir().expect("temp dir"), db, persons)
    }

    fn build(dir: tempfile::TempDir, db: PathBuf, persons: u64) -> Fixture {
        let root = dir.path();
        run_ok(onshi().args(["synth", "--persons", &persons.to_string(), "--seed", "11", "--out"]).arg(root.join("synth")));
        let mut import = onshi();
        import.args(["center", "import", "--db"]).arg(&db);
        for file in event_files(&root.join("synth")) {
            import.arg(file);
        }
        run_ok(&mut import);
        let pki = root.join("pki");
        run_ok(onshi().args(["center", "pki", "init", "--dir"]).arg(&pki));
        for code in [CLINIC, OTHER_CLINIC] {
            run_ok(onshi().args(["center", "pki", "issue-institution", "--code", code, "--dir"]).arg(&pki));
        }
        let insurers = std::fs::read_to_string(root.join("synth/insurers.tsv")).expect("insurers");
        let insurer = insurers.lines().next().and_then(|l| l.split('\t').next()).expect("an insurer").to_string();
        run_ok(onshi().args(["center", "pki", "issue-insurer", "--number", &insurer, "--dir"]).arg(&pki));
        Fixture { dir, insurer, db }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// The register's `--db` value.
    pub fn db(&self) -> PathBuf {
        self.db.clone()
    }

    pub fn pki(&self) -> PathBuf {
        self.root().join("pki")
    }

    pub fn truth(&self) -> Vec<TruthCase> {
        onshi_synth::read_truth(&self.root().join("synth/ground-truth.jsonl")).expect("truth")
    }

    /// The certificate and key of an institution or insurer, by `institutions/<code>` etc.
    pub fn identity(&self, stem: &str) -> (PathBuf, PathBuf) {
        let base = self.pki().join(stem);
        (base.with_extension("pem"), base.with_extension("key"))
    }
}

pub fn event_files(synth: &Path) -> Vec<PathBuf> {
    ["kyokai", "kumiai", "kyosai", "kokuho", "kouki"].iter().map(|k| synth.join("events").join(format!("{k}.jsonl"))).collect()
}

/// Spawns a serving command and returns it with the address from its first line
/// (`listening ADDR`).
pub fn spawn_listening(command: &mut Command) -> (Child, String) {
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("the server starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("address line");
    let addr = line.trim().strip_prefix("listening ").unwrap_or_else(|| panic!("unexpected first line {line:?}")).to_string();
    (child, addr)
}

/// `onshi center serve` on a free port, killed when dropped.
pub struct Server {
    child: Child,
    pub addr: String,
}

impl Server {
    pub fn start(fixture: &Fixture) -> Server {
        Server::start_at(&fixture.db(), &fixture.pki())
    }

    /// Serves the register `db` with the certificates in `pki`.
    pub fn start_at(db: &Path, pki: &Path) -> Server {
        Server::start_with(db, pki, &[])
    }

    /// As [`Server::start_at`], with more `center serve` arguments.
    pub fn start_with(db: &Path, pki: &Path, extra: &[&str]) -> Server {
        Server::start_listening(db, pki, "127.0.0.1:0", extra)
    }

    /// As [`Server::start_with`], on `listen` (a restart on the port it had before).
    pub fn start_listening(db: &Path, pki: &Path, listen: &str, extra: &[&str]) -> Server {
        let mut command = onshi();
        command.args(["center", "serve", "--listen", listen, "--db"]).arg(db).arg("--pki").arg(pki).args(extra);
        // A register on PostgreSQL has no file to keep the audit log beside: it goes beside the
        // test's certificates (its default, the working directory, is the source tree here).
        if open_register_is_postgres(db) && !extra.contains(&"--audit") {
            command.arg("--audit").arg(pki.with_file_name("center.audit.sqlite"));
        }
        // These tests send hundreds of requests a second from one certificate to compare
        // answers; the per-caller limit is tested on its own (hostile.rs), with it on.
        if !extra.contains(&"--rate-limit") {
            command.args(["--rate-limit", "0"]);
        }
        let (child, addr) = spawn_listening(&mut command);
        Server { child, addr }
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Stops the center as a service manager does (SIGTERM) and waits for it to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let sent = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("kill runs");
        assert!(sent.success(), "SIGTERM delivered");
        self.child.wait().expect("the center exits")
    }

    pub fn client(&self, fixture: &Fixture, identity: Option<&str>) -> CenterClient {
        self.client_with_ca(&fixture.pki().join("ca.pem"), identity.map(|stem| fixture.identity(stem)))
    }

    /// A client for the institution `code` (or anonymous) with the certificates in `pki`.
    pub fn client_at(&self, pki: &Path, code: Option<&str>) -> CenterClient {
        let identity = code.map(|c| (pki.join(format!("institutions/{c}.pem")), pki.join(format!("institutions/{c}.key"))));
        self.client_with_ca(&pki.join("ca.pem"), identity)
    }

    pub fn client_with_ca(&self, ca: &Path, identity: Option<(PathBuf, PathBuf)>) -> CenterClient {
        CenterClient::new(ClientConfig {
            base_url: self.url(),
            ca_pem: std::fs::read(ca).expect("ca"),
            identity_pem: identity.map(|(cert, key)| (std::fs::read(cert).expect("cert"), std::fs::read(key).expect("key"))),
            timeout: Duration::from_secs(30),
        })
        .expect("client")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A verification by number for a coverage a test uploaded itself: born 1985-05-05, cared for
/// on 2026-11-25.
pub fn number_request(insurer: &str, symbol: &str, number: &str) -> onshi_api::verify::VerifyNumberRequest {
    onshi_api::verify::VerifyNumberRequest {
        institution_code: None,
        insurer_number: insurer.to_string(),
        symbol: Some(symbol.into()),
        number: number.into(),
        branch: Some("00".into()),
        birth_date: "19850505".into(),
        date_of_care: Some("20261125".into()),
        limit_consent: false,
        reverification: false,
        document: None,
    }
}

/// Asks again while `attempt` gives nothing, as a gateway retries a 503, until a deadline of
/// 10 s (then fails the test naming `what`).
pub async fn until<T, F: std::future::Future<Output = Option<T>>>(what: &str, mut attempt: impl FnMut() -> F) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(value) = attempt().await {
            return value;
        }
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
