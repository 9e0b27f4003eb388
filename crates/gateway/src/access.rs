//! Who may open the reception page (受付画面). It shows patients' names, so it answers only
//! this PC and the reception PCs the configuration names (`[page] allow`), and only under a
//! host name the clinic uses: an IP address, `localhost`, or a name in `[page] hosts`. The
//! second rule stops a web page on the internet that points its own name at the gateway's
//! address (DNS rebinding) from reading the page through a staff member's browser.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::serve::IncomingStream;

use onshi_domain::markup::escape as esc;

/// The two ends of a connection to the page. Both ends on one address means this PC.
#[derive(Clone, Copy, Debug)]
pub struct Peer {
    pub remote: IpAddr,
    pub local: IpAddr,
}

impl Connected<IncomingStream<'_, tokio::net::TcpListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, tokio::net::TcpListener>) -> Peer {
        let remote = stream.remote_addr().ip().to_canonical();
        // Without its own address the connection cannot be this PC's: only `allow` admits it.
        let local = stream.io().local_addr().map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip().to_canonical());
        Peer { remote, local }
    }
}

/// An address or a network (`192.168.1.20`, `192.168.1.0/24`, `fd00::/8`) in `[page] allow`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Network {
    address: IpAddr,
    prefix: u8,
}

impl Network {
    /// Reads one entry of `[page] allow`; the error says what to write instead.
    pub fn parse(text: &str) -> Result<Network, String> {
        let (address, prefix) = match text.trim().split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text.trim(), None),
        };
        let address: IpAddr = address
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address; write one like \"192.168.1.20\" or a network like \"192.168.1.0/24\""))?;
        let bits = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= bits).ok_or_else(|| format!("{text:?}: the prefix must be 0–{bits}"))?,
        };
        // An IPv4-mapped address (`::ffff:192.168.1.0/120`) is kept as the IPv4 network it
        // names, so its prefix counts the IPv4 bits: 96 fewer. Kept at 120, it would admit
        // every IPv4 client (found writing the fuzz target; docs/FUZZING.md).
        let canonical = address.to_canonical();
        let prefix = match (address, canonical) {
            (IpAddr::V6(_), IpAddr::V4(_)) => prefix.checked_sub(96).ok_or_else(|| {
                format!("{text:?}: an IPv4-mapped network needs a prefix of 96–128; write the IPv4 network instead (\"192.168.1.0/24\")")
            })?,
            _ => prefix,
        };
        Ok(Network { address: canonical, prefix })
    }

    /// Whether two networks share an address (one holds the other's base address).
    pub fn overlaps(&self, other: &Network) -> bool {
        self.contains(other.address) || other.contains(self.address)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let (ours, theirs, bits) = match (self.address, ip.to_canonical()) {
            (IpAddr::V4(a), IpAddr::V4(b)) => (u128::from(a.to_bits()), u128::from(b.to_bits()), 32),
            (IpAddr::V6(a), IpAddr::V6(b)) => (a.to_bits(), b.to_bits(), 128),
            _ => return false,
        };
        let shift = bits - u32::from(self.prefix);
        shift >= bits || ours >> shift == theirs >> shift
    }
}

/// The rules, from the configuration.
#[derive(Clone, Debug, Default)]
pub struct Access {
    pub allow: Vec<Network>,
    /// Host names staff type to open the page, besides IP addresses and `localhost`.
    pub hosts: Vec<String>,
}

impl Access {
    pub fn admits(&self, peer: Peer) -> bool {
        peer.remote == peer.local || self.allow.iter().any(|n| n.contains(peer.remote))
    }

    /// Whether the Host header names the gateway the way the clinic does. A request without
    /// one does not come from a browser, which always sends it.
    pub fn host_ok(&self, host: Option<&str>) -> bool {
        let Some(host) = host else { return true };
        let name = match host.strip_prefix('[') {
            Some(v6) => return v6.split_once(']').is_some_and(|(ip, _)| ip.parse::<IpAddr>().is_ok()),
            None => host.rsplit_once(':').map_or(host, |(name, _)| name),
        };
        name.parse::<IpAddr>().is_ok() || name.eq_ignore_ascii_case("localhost") || self.hosts.iter().any(|h| h.eq_ignore_ascii_case(name))
    }
}

/// The middleware: a refused request gets a page in Japanese that says why and which setting
/// admits it.
pub async fn guard(State(access): State<Arc<Access>>, request: Request, next: Next) -> Response {
    let peer = request.extensions().get::<ConnectInfo<Peer>>().map(|c| c.0);
    let host = request.headers().get(header::HOST).and_then(|h| h.to_str().ok());
    match peer {
        Some(peer) if !access.admits(peer) => {
            tracing::info!(client = %peer.remote, "reception page refused a client not in page.allow");
            refused(
                "この端末からは受付画面を開けません",
                &format!(
                    "受付画面には患者さんの氏名が表示されるため、ゲートウェイのPCと、設定ファイル（gateway.toml）の [page] allow に書かれた端末からだけ開けます。この端末のアドレスは {} です。",
                    peer.remote
                ),
                &format!("client {} is not in page.allow", peer.remote),
            )
        }
        None => refused("受付画面を開けません", "接続元が分かりません。", "no connection info (serve the router with Peer)"),
        Some(_) if !access.host_ok(host) => refused(
            "このアドレスでは受付画面を開けません",
            "IP アドレス、localhost、または設定ファイルの [page] hosts に書かれた名前で開いてください（ほかのサイトから受付画面を読み取られないための制限です）。",
            &format!("Host {:?} is neither an IP address, localhost, nor in page.hosts", host.unwrap_or_default()),
        ),
        Some(_) => next.run(request).await,
    }
}

fn refused(title: &str, reason: &str, developer: &str) -> Response {
    let body = format!(
        "<!DOCTYPE html><html lang=\"ja\"><head><meta charset=\"utf-8\"><title>{}</title></head><body><h1>{}</h1><p>{}</p><p><small>{}</small></p></body></html>",
        esc(title),
        esc(title),
        esc(reason),
        esc(developer)
    );
    (StatusCode::FORBIDDEN, Html(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn networks_contain_their_addresses_only() {
        let lan = Network::parse("192.168.1.0/24").unwrap();
        assert!(lan.contains(ip("192.168.1.77")) && !lan.contains(ip("192.168.2.1")));
        assert!(lan.contains(ip("::ffff:192.168.1.5")), "an IPv4 client of a dual-stack socket");
        let one = Network::parse("10.0.0.5").unwrap();
        assert!(one.contains(ip("10.0.0.5")) && !one.contains(ip("10.0.0.6")));
        assert!(Network::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(
            Network::parse("fd00::/8").unwrap().contains(ip("fd12::1")) && !Network::parse("fd00::/8").unwrap().contains(ip("10.0.0.1"))
        );
        assert!(Network::parse("192.168.1.0/33").unwrap_err().contains("0–32"));
        assert!(Network::parse("reception-pc").unwrap_err().contains("192.168.1.20"));
    }

    /// Found writing the gateway_toml fuzz target: an IPv4-mapped network kept its IPv6 prefix, so `contains` shifted by
    /// 32 − 120 (a panic in debug builds, every IPv4 client admitted in release builds).
    #[test]
    fn an_ipv4_mapped_network_counts_its_prefix_in_ipv4_bits() {
        let mapped = Network::parse("::ffff:192.168.1.0/120").unwrap();
        assert_eq!(mapped, Network::parse("192.168.1.0/24").unwrap());
        assert!(mapped.contains(ip("192.168.1.9")) && !mapped.contains(ip("10.0.0.1")));
        let one = Network::parse("::ffff:10.0.0.5").unwrap();
        assert!(one.contains(ip("10.0.0.5")) && !one.contains(ip("10.0.0.6")));
        assert!(Network::parse("::ffff:0.0.0.0/100").unwrap().contains(ip("1.2.3.4")), "/100 is 0.0.0.0/4");
        assert!(!Network::parse("::ffff:0.0.0.0/100").unwrap().contains(ip("200.2.3.4")));
        assert!(Network::parse("::ffff:10.0.0.0/64").unwrap_err().contains("96–128"));
    }

    #[test]
    fn this_pc_and_the_listed_clients_are_admitted() {
        let access = Access { allow: vec![Network::parse("192.168.1.20").unwrap()], hosts: vec![] };
        let peer = |remote: &str, local: &str| Peer { remote: ip(remote), local: ip(local) };
        assert!(access.admits(peer("127.0.0.1", "127.0.0.1")));
        assert!(access.admits(peer("192.168.1.5", "192.168.1.5")), "this PC by its LAN address");
        assert!(access.admits(peer("192.168.1.20", "192.168.1.5")));
        assert!(!access.admits(peer("192.168.1.21", "192.168.1.5")));
        assert!(!access.admits(peer("127.0.0.3", "127.0.0.1")), "another loopback address is another end");
    }

    #[test]
    fn host_names_other_than_addresses_localhost_and_the_listed_ones_are_refused() {
        let access = Access { allow: vec![], hosts: vec!["uketsuke.local".into()] };
        for good in ["127.0.0.1:8080", "192.168.1.5", "[::1]:8080", "localhost:8080", "LOCALHOST", "uketsuke.local:8080"] {
            assert!(access.host_ok(Some(good)), "{good}");
        }
        for bad in ["attacker.example:8080", "attacker.example", "[not-an-ip]:80", "127.0.0.1.attacker.example"] {
            assert!(!access.host_ok(Some(bad)), "{bad}");
        }
        assert!(access.host_ok(None));
    }
}
