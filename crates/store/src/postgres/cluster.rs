//! A local PostgreSQL cluster made and run with the server binaries found on this machine:
//! what `onshi center pg init` makes for a trial, and what the tests start in a temporary
//! directory on a free port (issue 14: real clusters, no mocks). Nothing here speaks the wire
//! protocol; it runs `initdb`, `pg_ctl` and `createdb`.
//!
//! PostgreSQL refuses to run as root. Run as root (as CI does), the cluster's directory is
//! handed to the `postgres` system user that Debian's server package creates, and the binaries
//! run as that user through `runuser`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Why a cluster could not be made, started or stopped; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "the PostgreSQL server binaries (initdb, pg_ctl) are not on this machine: install the server package (Debian: `apt-get install postgresql`, or run scripts/install-postgres.sh), or name their directory in ONSHI_PG_BIN"
    )]
    NoBinaries,
    #[error(
        "PostgreSQL does not run as root, and there is no `postgres` user to run it as: install Debian's postgresql package (it creates the user) or run onshi as an ordinary user"
    )]
    NoServerUser,
    #[error("{what} failed ({status}): {output}")]
    Command { what: String, status: String, output: String },
    #[error("cannot prepare {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("no free TCP port on 127.0.0.1: {0}")]
    NoPort(std::io::Error),
    #[error(
        "the postgres user cannot reach {0} (a parent folder is private to root): choose a folder such as /var/lib/onshi-pg or one under /tmp"
    )]
    Unreachable(String),
}

/// Where `initdb` and `pg_ctl` live.
#[derive(Clone, Debug)]
pub struct Binaries {
    dir: PathBuf,
}

impl Binaries {
    /// `ONSHI_PG_BIN`, then the directory of `pg_ctl` on the PATH (a distribution that puts it
    /// there), then the newest `/usr/lib/postgresql/<version>/bin` (Debian keeps them there).
    pub fn find() -> Result<Binaries, ClusterError> {
        let usable = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
        if let Some(dir) = std::env::var_os("ONSHI_PG_BIN").map(PathBuf::from) {
            return if usable(&dir) { Ok(Binaries { dir }) } else { Err(ClusterError::NoBinaries) };
        }
        // A pg_ctl on the PATH may be a link into the server's own directory, which also holds
        // the client programs used here (psql, createdb, pg_basebackup): follow it there.
        if let Some(path) = std::env::var_os("PATH") {
            let found = std::env::split_paths(&path)
                .filter(|dir| usable(dir))
                .filter_map(|dir| std::fs::canonicalize(dir.join("pg_ctl")).ok()?.parent().map(Path::to_path_buf))
                .find(|dir| usable(dir) && dir.join("psql").is_file() && dir.join("createdb").is_file());
            if let Some(dir) = found {
                return Ok(Binaries { dir });
            }
        }
        let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
                let dir = entry.path().join("bin");
                usable(&dir).then_some((version, dir))
            })
            .collect();
        versions.sort();
        versions.pop().map(|(_, dir)| Binaries { dir }).ok_or(ClusterError::NoBinaries)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server's version, from `pg_ctl --version` ("pg_ctl (PostgreSQL) 15.18 (Debian …)" → "15.18").
    pub fn version(&self) -> Result<String, ClusterError> {
        let output = run(Command::new(self.dir.join("pg_ctl")).arg("--version"), "pg_ctl --version")?;
        let text = String::from_utf8_lossy(&output.stdout).to_string();
        Ok(text.split("(PostgreSQL)").nth(1).and_then(|rest| rest.split_whitespace().next()).unwrap_or(text.trim()).to_string())
    }
}

/// The name of the cluster's superuser and of the database onshi uses.
pub const USER: &str = "onshi";
pub const DATABASE: &str = "onshi";

/// A cluster in a directory: `data/` (the cluster), `socket/` (its Unix socket), `server.log`.
#[derive(Debug)]
pub struct Cluster {
    dir: PathBuf,
    binaries: Binaries,
    port: u16,
    /// Some when run as root: the user the server runs as.
    run_as: Option<String>,
    running: bool,
    /// A throwaway cluster's directory, removed by the watchdog once the server stopped.
    remove_after_stop: Option<PathBuf>,
    /// The watchdog of [`Cluster::stop_with_this_process`], while there is one.
    watchdog: Option<std::process::Child>,
    /// The superuser's password (in `DIR/password`, readable by its owner only): every
    /// connection, local or by TCP, proves it (SCRAM), so that other users of the machine cannot
    /// read the register.
    password: String,
}

/// A random password: 32 hex digits from the system's random source.
fn new_password() -> Result<String, ClusterError> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| ClusterError::Io { path: "the system random source".into(), source: std::io::Error::other("no random bytes") })?;
    Ok(onshi_domain::hex::encode(&bytes))
}

/// Writes `text` to `path` readable by its owner only (`user`'s when given, as root).
fn write_private(path: &Path, text: &str, user: Option<&str>) -> Result<(), ClusterError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(io(path))?;
    std::io::Write::write_all(&mut file, text.as_bytes()).map_err(io(path))?;
    if let Some(user) = user {
        run(Command::new("chown").arg(format!("{user}:")).arg(path), "chown")?;
    }
    Ok(())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn run(command: &mut Command, what: &str) -> Result<Output, ClusterError> {
    let output =
        command.output().map_err(|e| ClusterError::Command { what: what.into(), status: "not started".into(), output: e.to_string() })?;
    if output.status.success() {
        Ok(output)
    } else {
        let mut text = String::from_utf8_lossy(&output.stderr).trim().to_string();
        if text.is_empty() {
            text = String::from_utf8_lossy(&output.stdout).trim().to_string();
        }
        Err(ClusterError::Command { what: what.into(), status: output.status.to_string(), output: text })
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ClusterError + '_ {
    move |source| ClusterError::Io { path: path.display().to_string(), source }
}

/// A port nobody listens on now (the kernel's choice; the server binds it moments later).
pub fn free_port() -> Result<u16, ClusterError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(ClusterError::NoPort)?;
    Ok(listener.local_addr().map_err(ClusterError::NoPort)?.port())
}

impl Cluster {
    /// Makes a new cluster in `dir` (created; it must not hold one already), owned by this user
    /// or, as root, by `postgres`; trust authentication for connections from this machine only
    /// (the server listens on 127.0.0.1 and its own socket), for a trial or a test.
    pub fn init(dir: &Path, binaries: &Binaries, port: u16) -> Result<Cluster, ClusterError> {
        std::fs::create_dir_all(dir.join("socket")).map_err(io(dir))?;
        let run_as = if is_root() {
            let user = "postgres";
            run(Command::new("id").arg("-u").arg(user), "id postgres").map_err(|_| ClusterError::NoServerUser)?;
            run(Command::new("chown").arg("-R").arg(format!("{user}:")).arg(dir), "chown")?;
            // Its parent folders must let that user through (root's home, for one, does not).
            run(Command::new("runuser").args(["-u", user, "--", "test", "-w"]).arg(dir), "the postgres user's access")
                .map_err(|_| ClusterError::Unreachable(dir.display().to_string()))?;
            Some(user.to_string())
        } else {
            None
        };
        let password = new_password()?;
        let password_file = dir.join("password");
        write_private(&password_file, &password, run_as.as_deref())?;
        let cluster = Cluster {
            dir: dir.to_path_buf(),
            binaries: binaries.clone(),
            port,
            run_as,
            running: false,
            remove_after_stop: None,
            watchdog: None,
            password,
        };
        let data = cluster.data();
        cluster.command(
            "initdb",
            &[
                "-D",
                &data.display().to_string(),
                "-U",
                USER,
                "-A",
                "scram-sha-256",
                "--pwfile",
                &password_file.display().to_string(),
                "-E",
                "UTF8",
                "--locale=C",
                "--no-instructions",
            ],
        )?;
        // The settings the register relies on, written once into the cluster's own file.
        let settings = format!(
            "\n# onshi\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nmax_connections = 200\nwal_level = replica\nmax_wal_senders = 10\n",
            dir.join("socket").display()
        );
        let conf = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).map_err(io(&conf))?;
        text.push_str(&settings);
        std::fs::write(&conf, text).map_err(io(&conf))?;
        Ok(cluster)
    }

    /// Makes a streaming replica of `primary` (running) in `dir`: `pg_basebackup -R` copies
    /// the primary and writes the standby settings; the replica listens on `port`. Not started.
    /// `name` is how the primary sees it (for `synchronous_standby_names`).
    pub fn replica_of(primary: &Cluster, dir: &Path, port: u16, name: &str) -> Result<Cluster, ClusterError> {
        std::fs::create_dir_all(dir.join("socket")).map_err(io(dir))?;
        if let Some(user) = &primary.run_as {
            run(Command::new("chown").arg("-R").arg(format!("{user}:")).arg(dir), "chown")?;
        }
        let replica = Cluster {
            dir: dir.to_path_buf(),
            binaries: primary.binaries.clone(),
            port,
            run_as: primary.run_as.clone(),
            running: false,
            remove_after_stop: None,
            watchdog: None,
            password: primary.password.clone(),
        };
        write_private(&dir.join("password"), &primary.password, primary.run_as.as_deref())?;
        let data = replica.data();
        replica.command(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &primary.port.to_string(),
                "-U",
                USER,
                "-D",
                &data.display().to_string(),
                "-R",
                "-X",
                "stream",
                // An immediate checkpoint on the primary: the default spreads it over minutes.
                "-c",
                "fast",
                "-d",
                // With the password, so that -R writes it into the replica's primary_conninfo.
                &format!("host=127.0.0.1 port={} user={USER} password={} application_name={name}", primary.port, primary.password),
            ],
        )?;
        // The copy carries the primary's settings; later lines win.
        let conf = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).map_err(io(&conf))?;
        text.push_str(&format!(
            "\n# onshi replica\nport = {port}\nunix_socket_directories = '{}'\nhot_standby = on\n",
            dir.join("socket").display()
        ));
        std::fs::write(&conf, text).map_err(io(&conf))?;
        Ok(replica)
    }

    /// Adds settings to the cluster's configuration (they take effect at the next start, or at
    /// once for those a reload applies: see [`Cluster::reload`]).
    pub fn configure(&self, settings: &str) -> Result<(), ClusterError> {
        let conf = self.data().join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).map_err(io(&conf))?;
        text.push('\n');
        text.push_str(settings);
        text.push('\n');
        std::fs::write(&conf, text).map_err(io(&conf))
    }

    /// Runs one SQL statement with `psql` on the onshi database and returns its output (rows
    /// one per line, columns separated by `|`): for operators' checks and tests.
    pub fn sql(&self, statement: &str) -> Result<String, ClusterError> {
        let port = self.port.to_string();
        let output = self.command("psql", &["-h", "127.0.0.1", "-p", &port, "-U", USER, "-d", DATABASE, "-tAc", statement])?;
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    }

    /// Makes the running server read its configuration again.
    pub fn reload(&self) -> Result<(), ClusterError> {
        self.command("pg_ctl", &["-D", &self.data().display().to_string(), "reload"]).map(|_| ())
    }

    /// Promotes a replica to a primary and waits until it accepts writes.
    pub fn promote(&self) -> Result<(), ClusterError> {
        self.command("pg_ctl", &["-D", &self.data().display().to_string(), "-w", "-t", "120", "promote"]).map(|_| ())
    }

    /// Kills the server's postmaster with SIGKILL (a crash, for failover tests); its children
    /// end by themselves once they find it gone.
    pub fn kill(&mut self) -> Result<(), ClusterError> {
        if let Some(pid) = self.pid() {
            // SAFETY: a plain signal to a process id read from the cluster's own pid file.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
        self.running = false;
        Ok(())
    }

    /// A cluster made before in `dir` (by [`Cluster::init`]), not started.
    pub fn existing(dir: &Path, binaries: &Binaries) -> Result<Cluster, ClusterError> {
        let conf = dir.join("data").join("postgresql.conf");
        let text = std::fs::read_to_string(&conf).map_err(io(&conf))?;
        let port = text
            .lines()
            .rev()
            .find_map(|line| line.strip_prefix("port = ")?.trim().parse().ok())
            .ok_or_else(|| ClusterError::Io { path: conf.display().to_string(), source: std::io::Error::other("no port setting") })?;
        let password_file = dir.join("password");
        let password = std::fs::read_to_string(&password_file).map_err(io(&password_file))?.trim().to_string();
        Ok(Cluster {
            dir: dir.to_path_buf(),
            binaries: binaries.clone(),
            port,
            run_as: is_root().then(|| "postgres".to_string()),
            running: false,
            remove_after_stop: None,
            watchdog: None,
            password,
        })
    }

    pub fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A runs one of the cluster's binaries, as the cluster's user.
    fn command(&self, binary: &str, args: &[&str]) -> Result<Output, ClusterError> {
        let program = self.binaries.dir.join(binary);
        let mut command = match &self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(&program);
                command
            }
            None => Command::new(&program),
        };
        command.args(args).current_dir(&self.dir).env("PGPASSWORD", &self.password);
        run(&mut command, binary)
    }

    /// Starts the server and waits until it accepts connections; creates the onshi database
    /// the first time.
    pub fn start(&mut self) -> Result<(), ClusterError> {
        let log = self.dir.join("server.log").display().to_string();
        self.command("pg_ctl", &["-D", &self.data().display().to_string(), "-l", &log, "-w", "-t", "120", "start"])?;
        self.running = true;
        if self.data().join("standby.signal").exists() {
            // A replica is read-only: its databases are the primary's.
            return Ok(());
        }
        let created = self.command(
            "psql",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                USER,
                "-d",
                "postgres",
                "-tAc",
                &format!("SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"),
            ],
        )?;
        if String::from_utf8_lossy(&created.stdout).trim() != "1" {
            self.command("createdb", &["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", USER, DATABASE])?;
        }
        Ok(())
    }

    /// Stops the server: `fast` lets it finish cleanly (a checkpoint), `immediate` is a crash.
    pub fn stop(&mut self, immediate: bool) -> Result<(), ClusterError> {
        if !self.running {
            return Ok(());
        }
        let mode = if immediate { "immediate" } else { "fast" };
        self.command("pg_ctl", &["-D", &self.data().display().to_string(), "-m", mode, "-w", "-t", "120", "stop"])?;
        self.running = false;
        Ok(())
    }

    /// Takes a cluster found by [`Cluster::existing`] as running (to stop it).
    pub fn mark_running(&mut self) {
        self.running = true;
    }

    /// Lets the server run on after this value is gone (a trial cluster started from the
    /// command line, stopped later with `onshi center pg stop`).
    pub fn leave_running(mut self) {
        self.running = false;
    }

    /// The postmaster's process id (the first line of `postmaster.pid`), while it runs.
    pub fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.data().join("postmaster.pid")).ok()?.lines().next()?.trim().parse().ok()
    }

    /// A connection string for the onshi database.
    pub fn url(&self) -> String {
        self.url_of(DATABASE)
    }

    /// A connection string for another database of this cluster.
    pub fn url_of(&self, database: &str) -> String {
        format!("host=127.0.0.1 port={} user={USER} password={} dbname={database}", self.port, self.password)
    }

    /// The superuser's password (for a connection string naming several servers).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// Creates an empty database (a test's own, beside the others on one cluster); returns its
    /// connection string. `name` is a plain identifier.
    pub fn create_database(&self, name: &str) -> Result<String, ClusterError> {
        self.command("createdb", &["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", USER, name])?;
        Ok(self.url_of(name))
    }

    /// Stops the server when this process ends, however it ends (killed too), as well as when
    /// this value is dropped: for a cluster a test owns.
    pub fn stop_with_this_process(&mut self) -> Result<(), ClusterError> {
        let running = self.running;
        self.watchdog = Some(self.stop_when_this_process_exits()?);
        self.running = running;
        Ok(())
    }

    /// Makes sure the server stops when this process ends, however it ends (a test binary's
    /// shared cluster lives in a static, which is never dropped): a small shell waits on a pipe
    /// this process holds and stops the server (immediate) when the pipe closes. The returned
    /// child must be kept for as long as the cluster is used.
    pub fn stop_when_this_process_exits(&mut self) -> Result<std::process::Child, ClusterError> {
        let pg_ctl = self.binaries.dir.join("pg_ctl");
        let stop = format!("{} -D {} -m immediate -w stop", pg_ctl.display(), self.data().display());
        let stop = match &self.run_as {
            Some(user) => format!("runuser -u {user} -- {stop}"),
            None => stop,
        };
        // In a session of its own, so that whatever ends this process's group (a test harness,
        // a terminal) does not end the watchdog before it has stopped the server.
        let child = Command::new("setsid")
            .args([
                "sh",
                "-c",
                &format!(
                    "read _; {stop} >/dev/null 2>&1; {}",
                    self.remove_after_stop.as_ref().map(|d| format!("rm -rf '{}'", d.display())).unwrap_or_default()
                ),
            ])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| ClusterError::Command {
                what: "the cluster's watchdog".into(),
                status: "not started".into(),
                output: e.to_string(),
            })?;
        // Its owner no longer stops it on drop: the watchdog does, when this process ends.
        self.running = false;
        Ok(child)
    }
}

impl Drop for Cluster {
    /// A cluster is never left running by its owner's end (a test's, a failed command's).
    fn drop(&mut self) {
        if self.running {
            let _ = self.stop(true);
        }
    }
}

/// The binaries, installed first if this machine has none (the tests' way: a fresh machine's
/// `cargo test` installs what it needs, as for the browser and the card reader).
pub fn binaries_installing() -> Result<Binaries, ClusterError> {
    if let Ok(found) = Binaries::find() {
        return Ok(found);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/install-postgres.sh");
    if script.exists() {
        run(Command::new("bash").arg(&script), "scripts/install-postgres.sh")?;
    }
    Binaries::find()
}

/// A database of its own on this process's throwaway cluster, for a test: the cluster is made
/// (in a temporary directory, on a free port) and started the first time, stopped and removed
/// when the process ends. Returns the database's connection string.
pub fn test_database() -> Result<String, String> {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU32, Ordering};
    static SHARED: OnceLock<Result<(Cluster, std::process::Child), String>> = OnceLock::new();
    static NEXT: AtomicU32 = AtomicU32::new(1);
    let shared = SHARED.get_or_init(|| {
        let start = || -> Result<(Cluster, std::process::Child), ClusterError> {
            let binaries = binaries_installing()?;
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
            let dir = std::env::temp_dir().join(format!("onshi-pg-{}-{nanos}", std::process::id()));
            let mut cluster = Cluster::init(&dir, &binaries, free_port()?)?;
            cluster.remove_after_stop = Some(dir);
            cluster.start()?;
            let watchdog = cluster.stop_when_this_process_exits()?;
            Ok((cluster, watchdog))
        };
        start().map_err(|e| e.to_string())
    });
    let (cluster, _) = shared.as_ref().map_err(Clone::clone)?;
    let name = format!("test{}", NEXT.fetch_add(1, Ordering::SeqCst));
    cluster.create_database(&name).map_err(|e| e.to_string())
}
