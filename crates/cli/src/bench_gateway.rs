//! The gateway measurement of `onshi bench`: request file dropped into `req/` → result file in
//! `res/`, one at a time, with the center on loopback. The gateway runs in this process with
//! its own configuration, exactly as `onshi gateway serve` runs it.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use onshi_api::verify::VerifyNumberRequest;
use onshi_gateway::config::GatewayConfig;
use onshi_gateway::gateway::{Gateway, system_clock};

/// Request files in the measurement.
pub const FILES: usize = 300;

/// Microseconds from each request file's rename into `req/` to its answer's appearance in
/// `res/` (looked for every 0.2 ms, so the figure is at most that much late).
pub async fn file_latencies(dir: &Path, center: &str, pki: &Path, code: &str, requests: &[Vec<u8>]) -> anyhow::Result<Vec<u64>> {
    let root = dir.join("gateway");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root)?;
    onshi_reader::ReaderFile::create(&root.join("reader.json"), "bench-reader", "bench")?;
    // The configuration's paths are read relative to its own folder: name the PKI absolutely.
    let pki = std::path::absolute(pki)?;
    let config = onshi_gateway::config::standard_text(code, &format!("https://{center}"), &pki, "files", "");
    std::fs::write(root.join("gateway.toml"), config)?;
    let gateway = Arc::new(Gateway::open(GatewayConfig::load(&root.join("gateway.toml"))?, system_clock())?);
    let (req, res) = (gateway.config.req_dir(), gateway.config.res_dir());
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let server =
        tokio::spawn(onshi_gateway::serve::serve(gateway, Some(([127, 0, 0, 1], 0).into()), onshi_gateway::serve::RETRY, |_| {}, stop));
    let mut latencies = Vec::with_capacity(FILES);
    for (i, body) in requests.iter().cycle().take(FILES).enumerate() {
        let request: VerifyNumberRequest = serde_json::from_slice(body)?;
        let name = format!("OQSsiquc01req_{i:05}.xml");
        let tmp = req.join(format!("{name}.part"));
        std::fs::write(&tmp, onshi_gateway::request::single_request_xml(&request, code, &format!("bench-{i}")))?;
        let answer = res.join(format!("OQSsiquc01res_{i:05}.xml"));
        let started = Instant::now();
        std::fs::rename(&tmp, req.join(&name))?;
        while !answer.exists() {
            anyhow::ensure!(started.elapsed() < Duration::from_secs(10), "no answer to {name} within 10 s");
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        latencies.push(started.elapsed().as_micros() as u64);
    }
    let _ = stop_tx.send(true);
    server.await??;
    latencies.sort_unstable();
    Ok(latencies)
}
