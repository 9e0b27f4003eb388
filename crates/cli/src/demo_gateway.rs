//! The demo's clinic gateway: `onshi gateway serve` run in the demo process beside the center,
//! with the demo reader and cards, a folder to drop request files into, and the reception page.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use onshi_gateway::config::GatewayConfig;
use onshi_gateway::gateway::{Gateway, system_clock};
use onshi_synth::TruthCase;

pub struct DemoGateway {
    pub page: SocketAddr,
    /// The patients' page (a kiosk with a simulated reader of its own); none with `--pcsc`.
    pub patient: Option<SocketAddr>,
    pub folder: PathBuf,
    pub config: PathBuf,
    /// The gateway drives a PC/SC reader (`onshi demo --pcsc`), not the simulator.
    pub pcsc: bool,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), onshi_gateway::serve::ServeError>>,
}

/// Writes the gateway's configuration for the center at `center` and starts it; the page on
/// `page_port` (a busy port falls back to a free one).
pub async fn start(root: &Path, center: SocketAddr, code: &str, page_port: u16, pcsc: Option<&str>) -> anyhow::Result<DemoGateway> {
    let config = root.join("gateway.toml");
    // With `--pcsc`, a real reader instead of the simulator: no card files or camera on the page.
    let standard =
        onshi_gateway::config::standard_text_with_reader(code, &format!("https://{center}"), Path::new("pki"), "clinic-files", "", pcsc);
    // The patients' page on a port of its own: the one after the page's when free (any free
    // one when the page's is picked by the system).
    let next = if page_port == 0 { 0 } else { page_port.saturating_add(1) };
    let patient_port = [next, 0]
        .into_iter()
        .find_map(|port| std::net::TcpListener::bind(("127.0.0.1", port)).ok().and_then(|l| l.local_addr().ok()))
        .ok_or_else(|| anyhow::anyhow!("no free port on 127.0.0.1 for the patients' page"))?;
    // The kiosk has a reader of its own: a second simulated one (with --pcsc, none: one real
    // reader is reception's, so the demo serves no kiosk then).
    let kiosk = if pcsc.is_none() { format!("\n[patient]\nlisten = \"{patient_port}\"\nsimulator = true\n") } else { String::new() };
    let text = format!(
        "# Written by `onshi demo` for the center it started; `onshi doctor --config {}` checks it.\n{standard}{kiosk}",
        config.display()
    );
    std::fs::write(&config, text)?;
    let gateway = Arc::new(Gateway::open(GatewayConfig::load(&config)?, system_clock())?);
    let folder = gateway.config.folder.clone();
    let wanted: SocketAddr = ([127, 0, 0, 1], page_port).into();
    let listen = if std::net::TcpListener::bind(wanted).is_ok() { wanted } else { ([127, 0, 0, 1], 0).into() };
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(onshi_gateway::serve::serve(
        gateway,
        Some(listen),
        onshi_gateway::serve::RETRY,
        move |addr| {
            let _ = bound_tx.send(addr);
        },
        stop_rx,
    ));
    let Ok(page) = bound_rx.await else {
        return Err(match task.await {
            Ok(Err(e)) => anyhow::Error::new(e).context("the demo's gateway did not start"),
            _ => anyhow::anyhow!("the demo's gateway did not start"),
        });
    };
    Ok(DemoGateway { page, patient: pcsc.is_none().then_some(patient_port), folder, config, pcsc: pcsc.is_some(), stop, task })
}

impl DemoGateway {
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }

    /// Drops a request for `case` into req/ and waits for its answer; checks it field by field.
    pub async fn check_file(&self, case: &TruthCase, code: &str, id: usize) -> Result<(), String> {
        let xml = onshi_gateway::request::single_request_xml(&case.request, code, &format!("demo-check-{id}"));
        let name = format!("OQSsiquc01req_democheck{id:04}.xml");
        let tmp = self.folder.join("req").join(format!("{name}.part"));
        std::fs::write(&tmp, xml).map_err(|e| e.to_string())?;
        std::fs::rename(&tmp, self.folder.join("req").join(&name)).map_err(|e| e.to_string())?;
        let answer = self.folder.join("res").join(name.replacen("req_", "res_", 1));
        let started = Instant::now();
        let bytes = loop {
            if let Ok(bytes) = std::fs::read(&answer) {
                break bytes;
            }
            if started.elapsed() > Duration::from_secs(10) {
                return Err(format!("no answer file {} within 10 s", answer.display()));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        let (text, _) = onshi_gateway::xml::decode(&bytes).map_err(|e| e.to_string())?;
        let root = onshi_gateway::xml::parse(&text).map_err(|e| e.to_string())?;
        // Every field the file carries that the truth knows, both ways: present when expected,
        // absent when not.
        let results: Vec<&onshi_gateway::xml::Element> = root
            .find("ResultList")
            .map(|list| list.children.iter().filter(|c| c.name == "ResultOfQualificationConfirmation").collect())
            .unwrap_or_default();
        // The coverage asked about comes first; a newer one (振替) after it.
        let text = |element: Option<&onshi_gateway::xml::Element>, name: &str| {
            element.and_then(|e| e.find(name)).map(|e| e.text.trim().to_string())
        };
        let field = |name: &str| text(results.first().copied(), name);
        let expect = &case.expect;
        let mut problems = Vec::new();
        let validity = text(Some(&root), "QualificationValidity").unwrap_or_default();
        if validity != expect.validity {
            problems.push(format!("validity {validity:?} (truth {})", expect.validity));
        }
        let copay = field("InsuredPartialContributionRatio");
        let wanted = expect.copay_ratio_percent.map(|r| format!("{r:03}"));
        if copay != wanted {
            problems.push(format!("copay {copay:?} (truth {wanted:?})"));
        }
        let limit = field("LimitApplicationCertificateClassificationFlag");
        if limit != expect.limit_category {
            problems.push(format!("limit {limit:?} (truth {:?})", expect.limit_category));
        }
        let number = field("InsuredIdentificationNumber");
        let asked = onshi_domain::ids::to_half_width(&case.request.number);
        if number.as_deref().is_some_and(|n| n != asked) {
            problems.push(format!("number {number:?} (asked {asked})"));
        }
        let newer = text(results.get(1).copied(), "InsurerNumber");
        if newer.as_deref() != expect.newer_insurer_number.as_deref() {
            problems.push(format!("newer coverage {newer:?} (truth {:?})", expect.newer_insurer_number));
        }
        if problems.is_empty() { Ok(()) } else { Err(format!("{}: answer file {}", case.case, problems.join("; "))) }
    }
}

/// A sample request file for the first valid case, for the "try next" text.
pub fn write_example(root: &Path, case: &TruthCase, code: &str) -> anyhow::Result<PathBuf> {
    let dir = root.join("examples");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("OQSsiquc01req_example.xml");
    std::fs::write(&path, onshi_gateway::request::single_request_xml(&case.request, code, "example-1"))?;
    Ok(path)
}
