//! `onshi doctor`: which link of the chain is broken — card reader, configuration,
//! certificates, DNS, TCP, TLS, the center's health, the clock — checked in that order. The
//! first failing link is named with the action to take; the links after it are not checked,
//! since they cannot be judged through a broken one.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::config::GatewayConfig;
use crate::gateway::Clock;

/// One link of the chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    Reader,
    Config,
    Certificates,
    Dns,
    Tcp,
    Tls,
    Center,
    Clock,
}

impl Link {
    pub const ALL: [Link; 8] = [Link::Reader, Link::Config, Link::Certificates, Link::Dns, Link::Tcp, Link::Tls, Link::Center, Link::Clock];

    pub fn name_ja(self) -> &'static str {
        match self {
            Link::Reader => "カードリーダー",
            Link::Config => "設定ファイル",
            Link::Certificates => "証明書",
            Link::Dns => "名前解決 (DNS)",
            Link::Tcp => "接続 (TCP)",
            Link::Tls => "暗号化通信 (TLS)",
            Link::Center => "センターの状態",
            Link::Clock => "時計のずれ",
        }
    }
}

/// What was found at one link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finding {
    Ok(String),
    /// Works, but needs attention soon (a certificate about to expire).
    Warn {
        detail: String,
        action: String,
    },
    Broken {
        detail: String,
        action: String,
    },
    /// Not checked because another link is broken (the reader is found through the
    /// configuration; the others through the links before them).
    Skipped,
}

#[derive(Debug)]
pub struct Diagnosis {
    pub findings: Vec<(Link, Finding)>,
    /// Whether `onshi gateway serve` runs on this configuration (`None`: cannot be told). Not a
    /// link of the chain to the center, but the first thing to know when files go unanswered.
    pub serving: Option<bool>,
}

impl Diagnosis {
    /// The first broken link, if any.
    pub fn broken(&self) -> Option<(Link, &Finding)> {
        self.findings.iter().find(|(_, f)| matches!(f, Finding::Broken { .. })).map(|(l, f)| (*l, f))
    }

    /// The report for the terminal, Japanese first.
    pub fn report(&self) -> String {
        let mut out = String::new();
        for (link, finding) in &self.findings {
            let line = match finding {
                Finding::Ok(detail) => format!("[OK] {}: {detail}\n", link.name_ja()),
                Finding::Warn { detail, action } => format!("[注意] {}: {detail}\n       対処: {action}\n", link.name_ja()),
                Finding::Broken { detail, action } => format!("[NG] {}: {detail}\n       対処: {action}\n", link.name_ja()),
                Finding::Skipped => format!("[--] {}: 未確認（不良の項目があるため確認できません）\n", link.name_ja()),
            };
            out.push_str(&line);
        }
        match self.serving {
            Some(true) => out.push_str("\nゲートウェイ（onshi gateway serve）: 動いています。\n"),
            Some(false) => out.push_str(
                "\nゲートウェイ（onshi gateway serve）: 動いていません。この設定ファイルで `onshi gateway serve --config …` を起動すると、レセコンの照会ファイルと受付画面に答えます。\n",
            ),
            None => {}
        }
        match self.broken() {
            Some((link, _)) => {
                out.push_str(&format!("\n故障箇所: {}。上の対処を行ってから、もう一度 onshi doctor を実行してください。\n", link.name_ja()))
            }
            None => out.push_str("\nすべて正常です。\n"),
        }
        out
    }
}

/// How often the chain is diagnosed again while the line stays down.
pub const REDIAGNOSE: Duration = Duration::from_secs(30);

/// While the line is down, runs the diagnosis (when it goes down, then every [`REDIAGNOSE`])
/// and leaves the first broken link on the gateway for the page, so that staff see whether the
/// line, the certificates or the center failed without running anything; forgets it once the
/// line is back. Woken by the line's changes, not by polling.
pub async fn watch_line(gateway: Arc<crate::gateway::Gateway>, mut stop: tokio::sync::watch::Receiver<bool>) {
    while !*stop.borrow() {
        let down = gateway.line().up == Some(false);
        if down {
            let diagnosis = diagnose(&gateway.config.source, gateway.clock()).await;
            let broken = diagnosis.findings.iter().find_map(|(link, finding)| match finding {
                Finding::Broken { detail, action } => Some((link.name_ja(), detail.clone(), action.clone())),
                _ => None,
            });
            // The line may have come back while the diagnosis ran.
            if gateway.line().up == Some(false) {
                gateway.set_diagnosis(Some(crate::gateway::LineDiagnosis { at: gateway.now().to_string(), broken }));
            }
        } else {
            gateway.set_diagnosis(None);
        }
        tokio::select! {
            _ = gateway.line_changed.notified() => {}
            _ = tokio::time::sleep(REDIAGNOSE), if down => {}
            _ = stop.changed() => {}
        }
    }
}

/// Certificates expiring within this many days are reported for attention.
pub const EXPIRY_WARNING_DAYS: i64 = 30;
/// A clock further off than this from the center's is broken.
pub const MAX_SKEW_SECONDS: i64 = 60;
const STEP_TIMEOUT: Duration = Duration::from_secs(5);

fn broken(detail: impl Into<String>, action: impl Into<String>) -> Finding {
    Finding::Broken { detail: detail.into(), action: action.into() }
}

/// Runs every check in order against the configuration at `path`.
pub async fn diagnose(path: &Path, clock: Clock) -> Diagnosis {
    let mut findings = Vec::new();
    let config = GatewayConfig::load(path);
    let mut chain = Chain { findings: &mut findings, failed: false };
    match &config {
        Ok(config) => chain.record(Link::Reader, check_reader(config)),
        // The reader is found through the configuration; its own line says what is wrong.
        Err(_) => chain.record(Link::Reader, Finding::Skipped),
    }
    match &config {
        Ok(config) => chain.record(Link::Config, check_config(config)),
        Err(e) => chain.record(Link::Config, broken(e.to_string(), "設定ファイルを直してください（該当の設定名が上に出ています）。")),
    }
    let Ok(config) = config else {
        chain.skip_rest(&[Link::Certificates, Link::Dns, Link::Tcp, Link::Tls, Link::Center, Link::Clock]);
        return Diagnosis { findings, serving: None };
    };
    let serving = crate::serve::is_serving(&config);
    let now = clock();
    chain.run(Link::Certificates, || check_certificates(&config, now.unix_seconds()));
    let (host, port) = config.center_host_port();
    let addrs = if chain.failed { Vec::new() } else { resolve(&host, port, &mut chain).await };
    if !chain.failed {
        let finding = check_tcp(&addrs).await;
        chain.record(Link::Tcp, finding);
    } else {
        chain.record(Link::Tcp, Finding::Skipped);
    }
    if !chain.failed {
        let finding = check_tls(&config, &host, &addrs).await;
        chain.record(Link::Tls, finding);
    } else {
        chain.record(Link::Tls, Finding::Skipped);
    }
    let mut center_time = None;
    if !chain.failed {
        let (finding, time) = check_center(&config).await;
        center_time = time;
        chain.record(Link::Center, finding);
    } else {
        chain.record(Link::Center, Finding::Skipped);
    }
    match center_time {
        Some(time) if !chain.failed => chain.record(Link::Clock, check_clock(now.jst_seconds(), &time)),
        _ => chain.record(Link::Clock, Finding::Skipped),
    }
    Diagnosis { findings, serving }
}

struct Chain<'a> {
    findings: &'a mut Vec<(Link, Finding)>,
    failed: bool,
}

impl Chain<'_> {
    fn record(&mut self, link: Link, finding: Finding) {
        let finding = if self.failed { Finding::Skipped } else { finding };
        self.failed |= matches!(finding, Finding::Broken { .. });
        self.findings.push((link, finding));
    }

    fn run(&mut self, link: Link, check: impl FnOnce() -> Finding) {
        let finding = if self.failed { Finding::Skipped } else { check() };
        self.record(link, finding);
    }

    fn skip_rest(&mut self, links: &[Link]) {
        for link in links {
            self.findings.push((*link, Finding::Skipped));
        }
    }
}

fn check_reader(config: &GatewayConfig) -> Finding {
    let file = match onshi_reader::ReaderFile::load(&config.reader_file).and_then(|file| file.public_key_hex().map(|_| file)) {
        Ok(file) => file,
        Err(e @ onshi_reader::ReaderError::OldPasswordHash { .. }) => {
            return broken(
                format!("{e}"),
                "古い形式のカードリーダー設定ファイルです（施設パスワードの保存方式が弱い）。`onshi reader init` で作り直し、`onshi reader register` でセンターに登録し直してください。",
            );
        }
        Err(e) => {
            return broken(
                format!("{e}"),
                "カードリーダーの設定ファイルが壊れているか別のファイルです。`onshi reader init` で作り直し、`onshi reader register` でセンターに登録してください。",
            );
        }
    };
    // The file holds the device key that signs face and visual checks: others must not read it.
    match onshi_reader::readable_by_others(&config.reader_file) {
        Ok(Some(true)) => Finding::Warn {
            detail: format!("{} は他のユーザーも読めます（装置鍵が入っています）", config.reader_file.display()),
            action: format!("このファイルを所有者だけが読めるようにしてください（`chmod 600 {}`）。", config.reader_file.display()),
        },
        _ => Finding::Ok(format!("{}（装置鍵 P-256）", file.reader_id)),
    }
}

fn check_config(config: &GatewayConfig) -> Finding {
    for dir in [config.req_dir(), config.res_dir(), config.face_dir()] {
        let probe = dir.join(".onshi-doctor");
        if let Err(e) = std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&probe, b"ok")).and_then(|_| std::fs::remove_file(&probe))
        {
            return broken(
                format!("フォルダ {} に書き込めません: {e}", dir.display()),
                "フォルダの場所と書き込み権限を確認してください（設定 folder）。",
            );
        }
    }
    if let Err(e) = crate::store::Store::open(&config.store) {
        return broken(e.to_string(), "ゲートウェイのデータファイル（設定 store）の場所と権限を確認してください。");
    }
    Finding::Ok(format!("{}（医療機関コード {}）", config.source.display(), config.institution_code))
}

/// Days from `now` to the certificate's end, and its subject, from PEM.
fn days_left(pem: &[u8], now_unix: i64) -> Result<(i64, String), String> {
    let der = CertificateDer::from_pem_slice(pem).map_err(|e| format!("PEM として読めません ({e})"))?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|e| format!("X.509 証明書として読めません ({e})"))?;
    let end = cert.validity().not_after.timestamp();
    Ok(((end - now_unix).div_euclid(86_400), cert.subject().to_string()))
}

fn check_certificates(config: &GatewayConfig, now_unix: i64) -> Finding {
    let mut notes = Vec::new();
    let mut warn = None;
    for (what, path) in [("クライアント証明書", &config.center_cert), ("センターCA証明書", &config.center_ca)] {
        let pem = match std::fs::read(path) {
            Ok(pem) => pem,
            Err(e) => {
                return broken(
                    format!("{what} {} を読めません: {e}", path.display()),
                    "設定 center.cert / center.ca のパスを確認してください。",
                );
            }
        };
        match days_left(&pem, now_unix) {
            Err(e) => {
                return broken(format!("{what} {}: {e}", path.display()), "センターから受け取った証明書ファイルを置き直してください。");
            }
            Ok((days, _)) if days < 0 => {
                return broken(
                    format!("{what}の有効期限が {} 日前に切れています", -days),
                    "証明書を更新してください（運用者に新しい証明書の発行を依頼し、設定の center.cert / center.key を差し替えます）。",
                );
            }
            Ok((days, _)) => {
                if days < EXPIRY_WARNING_DAYS && warn.is_none() {
                    warn = Some(format!("{what}の有効期限まであと {days} 日です"));
                }
                notes.push(format!("{what} 残り {days} 日"));
            }
        }
    }
    let key = std::fs::read(&config.center_key)
        .map_err(|e| e.to_string())
        .and_then(|k| PrivateKeyDer::from_pem_slice(&k).map_err(|e| e.to_string()));
    if let Err(e) = key {
        return broken(
            format!("秘密鍵 {} を読めません: {e}", config.center_key.display()),
            "設定 center.key に、証明書と対の秘密鍵ファイルを指定してください。",
        );
    }
    match warn {
        Some(detail) => Finding::Warn {
            detail: format!("{detail}（{}）", notes.join("、")),
            action: "期限が切れる前に証明書の更新を運用者に依頼してください。".into(),
        },
        None => Finding::Ok(notes.join("、")),
    }
}

async fn resolve(host: &str, port: u16, chain: &mut Chain<'_>) -> Vec<std::net::SocketAddr> {
    match tokio::time::timeout(STEP_TIMEOUT, tokio::net::lookup_host((host, port))).await {
        Ok(Ok(addrs)) => {
            let addrs: Vec<_> = addrs.collect();
            if addrs.is_empty() {
                chain.record(Link::Dns, broken(format!("{host} のアドレスがありません"), "設定 center.url のホスト名を確認してください。"));
            } else {
                let list: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
                chain.record(Link::Dns, Finding::Ok(format!("{host} → {}", list.join(", "))));
            }
            addrs
        }
        Ok(Err(e)) => {
            chain.record(
                Link::Dns,
                broken(
                    format!("{host} を名前解決できません: {e}"),
                    "設定 center.url のホスト名の綴りと、この PC の DNS 設定（ネットワーク）を確認してください。",
                ),
            );
            Vec::new()
        }
        Err(_) => {
            chain.record(
                Link::Dns,
                broken(
                    format!("{host} の名前解決が {} 秒で終わりません", STEP_TIMEOUT.as_secs()),
                    "ネットワークと DNS サーバーを確認してください。",
                ),
            );
            Vec::new()
        }
    }
}

async fn check_tcp(addrs: &[std::net::SocketAddr]) -> Finding {
    let mut last = String::new();
    for addr in addrs {
        match tokio::time::timeout(STEP_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(_)) => return Finding::Ok(format!("{addr} に接続できました")),
            Ok(Err(e)) => last = format!("{addr} に接続できません: {e}"),
            Err(_) => last = format!("{addr} への接続が {} 秒で終わりません", STEP_TIMEOUT.as_secs()),
        }
    }
    broken(last, "回線（ルーター・VPN）とファイアウォールを確認してください。センター側の停止であれば、受付は控えと目視で続けられます。")
}

async fn check_tls(config: &GatewayConfig, host: &str, addrs: &[std::net::SocketAddr]) -> Finding {
    let client_config = match tls_config(config) {
        Ok(c) => c,
        Err(e) => return broken(e, "証明書と秘密鍵が対になっているか確認してください。"),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config));
    let Ok(name) = ServerName::try_from(host.to_string()) else {
        return broken(format!("{host} は TLS のサーバー名として使えません"), "設定 center.url を確認してください。");
    };
    let Some(addr) = addrs.first() else { return Finding::Skipped };
    let attempt = async {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let mut tls = connector.connect(name, tcp).await?;
        // In TLS 1.3 the client's side of the handshake ends before the center has judged the
        // client certificate; its verdict (a certificate_revoked alert) arrives with the first
        // read. So one small request is sent and the first bytes of the answer awaited.
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        tls.write_all(format!("GET /v1/health HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes()).await?;
        let mut first = [0u8; 1];
        tls.read(&mut first).await
    };
    match tokio::time::timeout(STEP_TIMEOUT, attempt).await {
        Ok(Ok(_)) => Finding::Ok("センターの証明書を確認し、クライアント証明書で接続できました".into()),
        Ok(Err(e)) if onshi_pki::revocation::revoked_by_peer(&e) => broken(
            format!("センターがこの医療機関のクライアント証明書（{}）を失効させています。接続は拒否されます", config.center_cert.display()),
            "証明書の鍵が盗まれた・漏れたなどの理由で、運用者が失効させています。運用者に新しい証明書の発行を依頼し、設定の center.cert / center.key を届いたファイルに差し替えてください。",
        ),
        Ok(Err(e)) if onshi_pki::revocation::alert_in_chain(&e).is_some() => broken(
            format!("センターがクライアント証明書を受け付けません: {e}"),
            "設定 center.cert / center.key がこの医療機関の、このセンターが発行した証明書か確認してください。分からなければ運用者に連絡してください。",
        ),
        Ok(Err(e)) => broken(
            format!("TLS で接続できません: {e}"),
            "接続先がオン資センターか（設定 center.url のポート）、センターCA証明書（center.ca）が正しいかを確認してください。",
        ),
        Err(_) => broken("TLS の接続が終わりません".to_string(), "接続先がオン資センターか確認してください。"),
    }
}

fn tls_config(config: &GatewayConfig) -> Result<rustls::ClientConfig, String> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&read(&config.center_ca)?) {
        roots.add(cert.map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    }
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(&read(&config.center_cert)?).collect::<Result<_, _>>().map_err(|e| e.to_string())?;
    let key = PrivateKeyDer::from_pem_slice(&read(&config.center_key)?).map_err(|e| e.to_string())?;
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| format!("クライアント証明書と秘密鍵: {e}"))
}

async fn check_center(config: &GatewayConfig) -> (Finding, Option<String>) {
    let client = match crate::gateway::client_for(config) {
        Ok(client) => client,
        Err(e) => return (broken(e.to_string(), "証明書ファイルを確認してください。"), None),
    };
    match client.health().await {
        Ok(health) if health["status"] == "ok" => {
            let version = health["version"].as_str().unwrap_or("?");
            (Finding::Ok(format!("応答あり（onshi-center {version}）")), health["time"].as_str().map(str::to_string))
        }
        Ok(health) => (broken(format!("センターが正常と答えません: {health}"), "センターの運用者に連絡してください。"), None),
        Err(e) => (
            broken(
                format!("センターの状態を取得できません: {e}"),
                "設定 center.url の URL（パス）が正しいか確認してください。正しければセンター側の障害です。受付は控えと目視で続けられます。",
            ),
            None,
        ),
    }
}

fn check_clock(local_jst: i64, center_time: &str) -> Finding {
    let Ok(center) = onshi_domain::date::Timestamp::parse(center_time) else {
        return broken(format!("センターの時刻 {center_time:?} を読めません"), "センターの運用者に連絡してください。");
    };
    let skew = local_jst - center.jst_seconds();
    if skew.abs() > MAX_SKEW_SECONDS {
        let direction = if skew > 0 { "進んでいます" } else { "遅れています" };
        return broken(
            format!("この PC の時計がセンターより {} 秒{direction}", skew.abs()),
            "Windows の「日付と時刻」で時刻を自動設定（インターネット時刻と同期）にしてください。",
        );
    }
    Finding::Ok(format!("センターとの差 {skew} 秒"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skewed_clock_is_named_with_its_direction() {
        let center = onshi_domain::date::Timestamp::parse("20261125100000").unwrap();
        assert!(matches!(check_clock(center.jst_seconds() + 30, "20261125100000"), Finding::Ok(_)));
        let Finding::Broken { detail, .. } = check_clock(center.jst_seconds() + 600, "20261125100000") else { panic!("not broken") };
        assert!(detail.contains("600 秒進んでいます"), "{detail}");
        let Finding::Broken { detail, .. } = check_clock(center.jst_seconds() - 120, "20261125100000") else { panic!("not broken") };
        assert!(detail.contains("120 秒遅れています"), "{detail}");
    }
}
