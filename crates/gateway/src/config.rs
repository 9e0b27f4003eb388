//! The gateway's one configuration file (TOML), read and checked at start. Relative paths are
//! taken from the file's own folder, so the whole installation can be moved as one folder.
//!
//! ```toml
//! institution_code = "1311234569"
//! folder = "onshi-files"        # req/ res/ face/ are made under it
//! store = "gateway.sqlite"
//! settle_ms = 2000              # an unreadable request must sit unchanged this long before it is refused (30 times as long once seen growing)
//! keep_days = 90                # then checks, batches and cached answers are forgotten
//! face_encoding = "UTF-8"       # or "Shift_JIS": the card results in face/, as the レセコン reads them
//!
//! [center]
//! url = "https://127.0.0.1:8443"
//! ca = "pki/ca.pem"
//! cert = "pki/institutions/1311234569.pem"
//! key = "pki/institutions/1311234569.key"
//!
//! [reader]
//! file = "reader.json"          # device key and the facility password (slow salted hash)
//! simulator = true              # the demo's simulated reader: card files and a fake camera
//!                               # on the page (default false: never in production)
//! cards = "cards"               # where the simulator finds card files by name
//! # pcsc = ""                   # instead: the PC/SC reader at this PC ("" the first one, or
//! #                             # the start of its name); needs pcscd on Linux, the Smart
//! #                             # Card service on Windows
//!
//! [page]
//! listen = "127.0.0.1:8080"     # "0.0.0.0:8080" to open it from the reception PCs too
//! allow = ["192.168.1.20"]      # those PCs (addresses or networks); this PC always may
//! hosts = ["uketsuke.local"]    # names typed to open it, besides addresses and localhost
//!
//! [patient]                     # the patients' own page (a kiosk PC in the waiting room); off unless set
//! listen = "0.0.0.0:8081"       # an address of its own, never the reception page's
//! allow = ["192.168.1.30"]      # the kiosk PC; not one [page] allows (it would see the reception page)
//! pcsc = "Kiosk Reader"         # a card reader of its own, by (the start of) its name;
//!                               # simulator = true for a trial
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::access::{Access, Network};
use crate::xml::Charset;

/// The configuration of an institution whose certificates sit in `pki` as `onshi center pki`
/// lays them out (`ca.pem`, `institutions/<code>.pem` and `.key`), with `reader.json` and the
/// card folder `cards` beside the file, and the simulated reader switched on; `extra` adds
/// top-level settings. What the demo writes, and the bench and the tests that drive the
/// simulator.
pub fn standard_text(code: &str, center_url: &str, pki: &Path, folder: &str, extra: &str) -> String {
    standard_text_with_reader(code, center_url, pki, folder, extra, None)
}

/// As [`standard_text`], with the PC/SC reader `pcsc` (`""`: the first one) instead of the
/// simulator when given (`onshi demo --pcsc`).
pub fn standard_text_with_reader(code: &str, center_url: &str, pki: &Path, folder: &str, extra: &str, pcsc: Option<&str>) -> String {
    let file = |name: String| toml_string(&pki.join(name).display().to_string());
    let reader = match pcsc {
        None => "simulator = true\ncards = \"cards\"\n".to_string(),
        Some(name) => format!("pcsc = {}\n", toml_string(name)),
    };
    format!(
        "institution_code = \"{code}\"\nfolder = {}\nstore = \"gateway.sqlite\"\n{extra}\n\n[center]\nurl = {}\nca = {}\ncert = {}\nkey = {}\n\n[reader]\nfile = \"reader.json\"\n{reader}",
        toml_string(folder),
        toml_string(center_url),
        file("ca.pem".into()),
        file(format!("institutions/{code}.pem")),
        file(format!("institutions/{code}.key")),
    )
}

/// A TOML basic string.
fn toml_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    institution_code: String,
    #[serde(default = "default_folder")]
    folder: PathBuf,
    #[serde(default = "default_store")]
    store: PathBuf,
    /// How long a request file that does not parse yet may stay unchanged before it is
    /// refused (a writer may still be at work).
    #[serde(default = "default_settle_ms")]
    settle_ms: u64,
    /// Days the gateway keeps checks, batches, cached answers and its journal (names included)
    /// before forgetting them; checks still waiting for the line are always kept.
    #[serde(default = "default_keep_days")]
    keep_days: u32,
    /// The encoding of the card results written unasked to `face/` (no request says which):
    /// both are found in the field, so the receipt computer's is set here.
    #[serde(default)]
    face_encoding: Option<String>,
    center: RawCenter,
    reader: RawReader,
    #[serde(default)]
    page: RawPage,
    #[serde(default)]
    patient: Option<RawPatient>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCenter {
    url: String,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReader {
    file: PathBuf,
    /// The simulated reader (card files, a camera that sees the holder or a stranger) and its
    /// controls on the page. Off unless set: in production those controls would let anyone at
    /// the page choose a card and fake a face match.
    #[serde(default)]
    simulator: bool,
    #[serde(default)]
    cards: Option<PathBuf>,
    /// A PC/SC reader: its name as the smart-card service lists it, or the start of it; empty
    /// for the first reader.
    #[serde(default)]
    pcsc: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPage {
    #[serde(default = "default_listen")]
    listen: SocketAddr,
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    hosts: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPatient {
    listen: SocketAddr,
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    hosts: Vec<String>,
    #[serde(default)]
    pcsc: Option<String>,
    #[serde(default)]
    simulator: bool,
}

/// The patients' own page (`[patient]`).
#[derive(Clone, Debug)]
pub struct PatientPage {
    pub listen: SocketAddr,
    /// Who may open it besides this PC.
    pub access: Access,
    /// Its own PC/SC reader (never reception's: the patient's PIN goes into the kiosk's).
    pub pcsc: Option<String>,
    /// Its own simulated reader, for a trial (the demo).
    pub simulator: bool,
}

impl Default for RawPage {
    fn default() -> Self {
        RawPage { listen: default_listen(), allow: Vec::new(), hosts: Vec::new() }
    }
}

fn default_folder() -> PathBuf {
    PathBuf::from("onshi-files")
}
fn default_store() -> PathBuf {
    PathBuf::from("gateway.sqlite")
}
fn default_keep_days() -> u32 {
    90
}
fn default_settle_ms() -> u64 {
    2000
}
fn default_timeout_ms() -> u64 {
    5000
}
fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

/// A checked configuration with absolute paths.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    pub source: PathBuf,
    pub institution_code: String,
    pub folder: PathBuf,
    pub store: PathBuf,
    pub settle: Duration,
    pub keep_days: u32,
    pub center_url: String,
    pub center_ca: PathBuf,
    pub center_cert: PathBuf,
    pub center_key: PathBuf,
    pub center_timeout: Duration,
    pub reader_file: PathBuf,
    /// Whether the reader is the simulator (`[reader] simulator = true`): only then does the
    /// page offer card files and the camera, and answer their routes.
    pub reader_simulator: bool,
    /// The PC/SC reader (`[reader] pcsc = "name"`; empty: the first one).
    pub reader_pcsc: Option<String>,
    pub card_folder: Option<PathBuf>,
    pub page_listen: SocketAddr,
    pub face_charset: Charset,
    /// Who may open the page besides this PC, and under which names.
    pub page_access: Access,
    /// The patients' own page (`[patient]`); `None`: off.
    pub patient: Option<PatientPage>,
}

/// A configuration problem: which setting, what is wrong, what to do.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration {path}: {detail}")]
    Unreadable { path: PathBuf, detail: String },
    #[error("configuration {path}: {detail}")]
    Syntax { path: PathBuf, detail: String },
    #[error("configuration {path}: `{setting}` {detail}")]
    Setting { path: PathBuf, setting: &'static str, detail: String },
}

impl GatewayConfig {
    /// Reads the file and checks every setting that can be checked without the network.
    pub fn load(path: &Path) -> Result<GatewayConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Unreadable { path: path.into(), detail: e.to_string() })?;
        GatewayConfig::from_text(path, &text)
    }

    /// Checks the text of a configuration file that lives at `path` (relative paths are taken
    /// from its folder, and the files it names must exist). What [`GatewayConfig::load`] does
    /// after reading the file, and the fuzz target's entry point.
    pub fn from_text(path: &Path, text: &str) -> Result<GatewayConfig, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax { path: path.into(), detail: e.to_string() })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let abs = |p: &Path| if p.is_absolute() { p.to_path_buf() } else { base.join(p) };
        let setting = |setting: &'static str, detail: String| ConfigError::Setting { path: path.into(), setting, detail };

        onshi_domain::ids::InstitutionCode::parse(&raw.institution_code)
            .map_err(|e| setting("institution_code", format!("{e}; write the 10-digit 医療機関コード")))?;
        let url = raw.center.url.trim_end_matches('/').to_string();
        if !url.starts_with("https://") {
            return Err(setting("center.url", format!("is {url:?}; the center is reached over https:// only")));
        }
        let files = [
            ("center.ca", &raw.center.ca),
            ("center.cert", &raw.center.cert),
            ("center.key", &raw.center.key),
            ("reader.file", &raw.reader.file),
        ];
        for (name, file) in files {
            let file = abs(file);
            if !file.is_file() {
                return Err(setting(name, format!("names {}, which does not exist; check the path", file.display())));
            }
        }
        if raw.keep_days == 0 {
            return Err(setting("keep_days", "is 0; keep at least a day (today's checks are on the page)".into()));
        }
        if raw.center.timeout_ms == 0 || raw.center.timeout_ms > 60_000 {
            return Err(setting("center.timeout_ms", format!("is {}; use 1–60000 milliseconds", raw.center.timeout_ms)));
        }
        let face_charset = match raw.face_encoding.as_deref() {
            None => Charset::Utf8,
            Some(name) => Charset::from_name(name).ok_or_else(|| {
                setting("face_encoding", format!("is {name:?}; write \"UTF-8\" or \"Shift_JIS\" (as the receipt computer reads face/)"))
            })?,
        };
        if raw.reader.pcsc.is_some() && raw.reader.simulator {
            return Err(setting(
                "reader.pcsc",
                "names a real reader, and `simulator = true` asks for the simulated one; keep one of the two".into(),
            ));
        }
        if raw.reader.cards.is_some() && !raw.reader.simulator {
            return Err(setting(
                "reader.cards",
                "is a folder of card files for the simulated reader; set `simulator = true` under [reader] for the demo, or remove it"
                    .into(),
            ));
        }
        let allow =
            raw.page.allow.iter().map(|a| Network::parse(a)).collect::<Result<Vec<_>, _>>().map_err(|e| setting("page.allow", e))?;
        let patient = match raw.patient {
            None => None,
            Some(p) => {
                let allow =
                    p.allow.iter().map(|a| Network::parse(a)).collect::<Result<Vec<_>, _>>().map_err(|e| setting("patient.allow", e))?;
                if p.listen == raw.page.listen {
                    return Err(setting(
                        "patient.listen",
                        "is the reception page's address; the patients' page needs one of its own (a kiosk must not reach the reception page), e.g. 0.0.0.0:8081".into(),
                    ));
                }
                // A kiosk the reception page admits could open it (today's patients, by name).
                let page_allow: Vec<Network> = raw.page.allow.iter().filter_map(|a| Network::parse(a).ok()).collect();
                if let Some(shared) =
                    p.allow.iter().zip(&allow).find(|(_, n)| page_allow.iter().any(|m| m.overlaps(n))).map(|(text, _)| text)
                {
                    return Err(setting(
                        "patient.allow",
                        format!(
                            "admits {shared}, which [page] allow admits too: the kiosk would reach the reception page; allow the kiosk here only"
                        ),
                    ));
                }
                match (&p.pcsc, p.simulator) {
                    (None, false) => {
                        return Err(setting(
                            "patient",
                            "has no card reader: give the kiosk one of its own (pcsc = \"its name\"), or simulator = true for a trial; reception's reader stays reception's".into(),
                        ));
                    }
                    (Some(_), true) => return Err(setting("patient", "names both pcsc and simulator; choose one".into())),
                    (Some(name), false) if name.trim().is_empty() => {
                        return Err(setting(
                            "patient.pcsc",
                            "is empty; name the kiosk's own reader (the first reader may be reception's)".into(),
                        ));
                    }
                    (Some(name), false) if raw.reader.pcsc.as_deref() == Some(name.as_str()) => {
                        return Err(setting("patient.pcsc", format!("is {name:?}, reception's reader; the kiosk needs one of its own")));
                    }
                    _ => {}
                }
                Some(PatientPage { listen: p.listen, access: Access { allow, hosts: p.hosts }, pcsc: p.pcsc, simulator: p.simulator })
            }
        };
        Ok(GatewayConfig {
            patient,
            source: path.to_path_buf(),
            institution_code: raw.institution_code,
            folder: abs(&raw.folder),
            store: abs(&raw.store),
            settle: Duration::from_millis(raw.settle_ms),
            keep_days: raw.keep_days,
            center_url: url,
            center_ca: abs(&raw.center.ca),
            center_cert: abs(&raw.center.cert),
            center_key: abs(&raw.center.key),
            center_timeout: Duration::from_millis(raw.center.timeout_ms),
            reader_file: abs(&raw.reader.file),
            reader_simulator: raw.reader.simulator,
            reader_pcsc: raw.reader.pcsc,
            card_folder: raw.reader.cards.as_deref().map(abs),
            page_listen: raw.page.listen,
            face_charset,
            page_access: Access { allow, hosts: raw.page.hosts },
        })
    }

    /// The center's host and port from its URL.
    pub fn center_host_port(&self) -> (String, u16) {
        let rest = self.center_url.trim_start_matches("https://");
        let authority = rest.split('/').next().unwrap_or(rest);
        match authority.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => {
                (host.trim_matches(['[', ']']).to_string(), port.parse().unwrap_or(443))
            }
            _ => (authority.trim_matches(['[', ']']).to_string(), 443),
        }
    }

    pub fn req_dir(&self) -> PathBuf {
        self.folder.join("req")
    }
    pub fn res_dir(&self) -> PathBuf {
        self.folder.join("res")
    }
    pub fn face_dir(&self) -> PathBuf {
        self.folder.join("face")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_setup(dir: &Path, config: &str) -> PathBuf {
        for f in ["ca.pem", "c.pem", "c.key", "reader.json"] {
            std::fs::write(dir.join(f), "x").unwrap();
        }
        let path = dir.join("gateway.toml");
        std::fs::write(&path, config).unwrap();
        path
    }

    const GOOD: &str = r#"
institution_code = "1311234569"
[center]
url = "https://localhost:8443/"
ca = "ca.pem"
cert = "c.pem"
key = "c.key"
[reader]
file = "reader.json"
"#;

    #[test]
    fn reads_relative_paths_from_the_file_folder() {
        let dir = tempfile::tempdir().unwrap();
        let config = GatewayConfig::load(&write_setup(dir.path(), GOOD)).unwrap();
        assert_eq!(config.folder, dir.path().join("onshi-files"));
        assert_eq!(config.center_host_port(), ("localhost".to_string(), 8443));
        assert_eq!(config.page_listen.port(), 8080);
        assert_eq!(config.face_charset, Charset::Utf8, "face/ in UTF-8 unless set");
        let sjis = GOOD.replace("[center]", "face_encoding = \"Shift_JIS\"\n[center]");
        assert_eq!(GatewayConfig::load(&write_setup(dir.path(), &sjis)).unwrap().face_charset, Charset::ShiftJis);
    }

    #[test]
    fn the_standard_text_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("pki/institutions")).unwrap();
        for f in ["pki/ca.pem", "pki/institutions/1311234569.pem", "pki/institutions/1311234569.key", "reader.json"] {
            std::fs::write(dir.path().join(f), "x").unwrap();
        }
        let path = dir.path().join("gateway.toml");
        std::fs::write(&path, standard_text("1311234569", "https://127.0.0.1:8443", Path::new("pki"), "files", "settle_ms = 5")).unwrap();
        let config = GatewayConfig::load(&path).unwrap();
        assert_eq!(config.center_key, dir.path().join("pki/institutions/1311234569.key"));
        assert_eq!(config.settle, Duration::from_millis(5));
        assert_eq!(config.card_folder, Some(dir.path().join("cards")));
        assert!(config.reader_simulator, "the demo's and the tests' layout drives the simulator");
        // `onshi demo --pcsc`: the named reader instead, its name quoted as TOML wants.
        let pcsc =
            standard_text_with_reader("1311234569", "https://127.0.0.1:8443", Path::new("pki"), "files", "", Some("ACS \"ACR39U\" 00"));
        std::fs::write(&path, pcsc).unwrap();
        let config = GatewayConfig::load(&path).unwrap();
        assert_eq!(config.reader_pcsc.as_deref(), Some("ACS \"ACR39U\" 00"));
        assert!(!config.reader_simulator && config.card_folder.is_none(), "no simulator controls with a real reader");
    }

    #[test]
    fn the_simulator_is_off_unless_set_and_its_card_folder_needs_it() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!GatewayConfig::load(&write_setup(dir.path(), GOOD)).unwrap().reader_simulator);
        let cards = format!("{GOOD}cards = \"cards\"\n");
        let e = GatewayConfig::load(&write_setup(dir.path(), &cards)).unwrap_err().to_string();
        assert!(e.contains("`reader.cards`") && e.contains("simulator = true"), "{e}");
        let on = format!("{GOOD}simulator = true\ncards = \"cards\"\n");
        assert!(GatewayConfig::load(&write_setup(dir.path(), &on)).unwrap().reader_simulator);
    }

    #[test]
    fn names_the_setting_at_fault() {
        let dir = tempfile::tempdir().unwrap();
        let bad_code = GOOD.replace("1311234569", "1311234560");
        let e = GatewayConfig::load(&write_setup(dir.path(), &bad_code)).unwrap_err().to_string();
        assert!(e.contains("`institution_code`"), "{e}");
        let http = GOOD.replace("https://", "http://");
        assert!(GatewayConfig::load(&write_setup(dir.path(), &http)).unwrap_err().to_string().contains("https:// only"));
        let missing = GOOD.replace("c.key", "nope.key");
        assert!(GatewayConfig::load(&write_setup(dir.path(), &missing)).unwrap_err().to_string().contains("`center.key`"));
        let bad_allow = format!("{GOOD}\n[page]\nlisten = \"0.0.0.0:8080\"\nallow = [\"reception\"]\n");
        let e = GatewayConfig::load(&write_setup(dir.path(), &bad_allow)).unwrap_err().to_string();
        assert!(e.contains("`page.allow`") && e.contains("192.168.1.0/24"), "{e}");
        let euc = GOOD.replace("[center]", "face_encoding = \"EUC-JP\"\n[center]");
        let e = GatewayConfig::load(&write_setup(dir.path(), &euc)).unwrap_err().to_string();
        assert!(e.contains("`face_encoding`") && e.contains("Shift_JIS"), "{e}");
        let unknown = format!("{GOOD}\n[extra]\nx = 1\n");
        assert!(GatewayConfig::load(&write_setup(dir.path(), &unknown)).unwrap_err().to_string().contains("extra"));
    }

    /// The kiosk gets a reader and an address of its own, and no PC the reception page admits.
    #[test]
    fn the_patients_page_needs_its_own_reader_and_address_and_no_pc_of_reception() {
        let dir = tempfile::tempdir().unwrap();
        let load = |extra: &str| GatewayConfig::load(&write_setup(dir.path(), &format!("{GOOD}\n{extra}")));
        let kiosk = load("[patient]\nlisten = \"0.0.0.0:8081\"\nallow = [\"192.168.1.30\"]\npcsc = \"Kiosk\"\n").unwrap();
        let page = kiosk.patient.expect("the kiosk is on");
        assert_eq!((page.listen.port(), page.pcsc.as_deref(), page.simulator), (8081, Some("Kiosk"), false));
        let e = load("[patient]\nlisten = \"0.0.0.0:8081\"\n").unwrap_err().to_string();
        assert!(e.contains("`patient`") && e.contains("reader"), "{e}");
        let e = load("[patient]\nlisten = \"0.0.0.0:8081\"\npcsc = \"\"\n").unwrap_err().to_string();
        assert!(e.contains("`patient.pcsc`"), "{e}");
        let e = load("[patient]\nlisten = \"127.0.0.1:8080\"\nsimulator = true\n").unwrap_err().to_string();
        assert!(e.contains("`patient.listen`"), "{e}");
        let e = load("[page]\nlisten = \"0.0.0.0:8080\"\nallow = [\"192.168.1.0/24\"]\n[patient]\nlisten = \"0.0.0.0:8081\"\nallow = [\"192.168.1.30\"]\nsimulator = true\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`patient.allow`") && e.contains("192.168.1.30"), "{e}");
        let shared = GOOD.replace("[reader]", "[reader]\npcsc = \"Desk\"");
        let e =
            GatewayConfig::load(&write_setup(dir.path(), &format!("{shared}\n[patient]\nlisten = \"0.0.0.0:8081\"\npcsc = \"Desk\"\n")))
                .unwrap_err()
                .to_string();
        assert!(e.contains("reception's reader"), "{e}");
    }
}
