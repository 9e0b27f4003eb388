//! The card-verify measurement of `onshi bench`: virtual cards for real members of the bench
//! register, linked once, then verified by PIN over mutual TLS as fast as answers come.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use onshi_api::card::{CardAnswer, CardProof, Challenge, ConsentChoice, LINK_DETAILS, LinkCard, Purpose, VerifyCard, consent_details};
use onshi_api::client::{CenterClient, ClientConfig};
use onshi_api::events::{EventKind, InsurerEvent};
use onshi_domain::ids::InstitutionCode;
use onshi_pki::card::VirtualCard;
use onshi_pki::jpki::{CardCa, CardValidity};
use onshi_reader::flow;

/// Cards in the measurement.
const CARDS: usize = 256;
const PIN: &str = "1234";

/// What the card step needs between runs: the card CA and the card files.
pub struct BenchCards {
    pub jpki: PathBuf,
    cards: Vec<(PathBuf, InsurerEvent)>,
}

/// Issues cards for the first members of `event_file` (once; reused by later runs).
pub fn prepare(dir: &Path, event_file: &Path) -> anyhow::Result<BenchCards> {
    let jpki = dir.join("jpki");
    let fresh = !jpki.join("ca.pem").exists();
    let ca = if fresh { CardCa::create(&jpki)? } else { CardCa::load(&jpki)? };
    ca.publish_crl(30)?;
    let reader = std::io::BufReader::new(std::fs::File::open(event_file).with_context(|| format!("cannot open {}", event_file.display()))?);
    let mut cards = Vec::with_capacity(CARDS);
    for line in reader.lines() {
        let event: InsurerEvent = serde_json::from_str(&line?)?;
        if event.kind != EventKind::Acquire {
            continue;
        }
        let path = dir.join("cards").join(format!("bench-{}.json", cards.len()));
        if fresh || !path.exists() {
            std::fs::create_dir_all(path.parent().expect("has a parent"))?;
            let member = event.member.clone().context("an acquisition without member details")?;
            let attributes = crate::demo_cards::card_attributes(member);
            ca.issue_card(attributes, &event.person_ref, Some(PIN), CardValidity::Statutory { issued_on: onshi_pki::today() }, &path)?;
        }
        cards.push((path, event));
        if cards.len() == CARDS {
            break;
        }
    }
    Ok(BenchCards { jpki, cards })
}

async fn proof(client: &CenterClient, card: &mut VirtualCard, purpose: Purpose, details: &str) -> anyhow::Result<CardProof> {
    Ok(flow::card_pin_proof(client, flow::INSTITUTION_CHALLENGE, card, PIN, purpose, details).await?)
}

/// 初回登録 of every bench card (a card already linked answers with its link). The cards carry
/// the 券面事項 of the member's first acquisition; a member who moved since has another address
/// on the insurer's record, and the center rightly refuses that link: such cards are left out
/// of the measurement.
pub async fn link(client: &CenterClient, cards: &mut BenchCards) -> anyhow::Result<()> {
    let total = cards.cards.len();
    let mut kept = Vec::with_capacity(total);
    for (path, event) in std::mem::take(&mut cards.cards) {
        let mut card = VirtualCard::load(&path)?;
        let request = LinkCard { proof: proof(client, &mut card, Purpose::Link, LINK_DETAILS).await? };
        match client.post_json::<_, onshi_api::card::Linked>("/card/link", &request).await {
            Ok(_) => kept.push((path, event)),
            Err(onshi_api::client::ClientError::Refused { body, .. }) if body.error.code == "CARD_ATTRIBUTES_MISMATCH" => {}
            Err(e) => return Err(crate::tls_args::explain(e)),
        }
    }
    anyhow::ensure!(kept.len() >= total / 2, "only {} of {total} bench cards could be registered", kept.len());
    eprintln!("bench: {} of {total} cards registered (the others' holders moved after their first acquisition)", kept.len());
    cards.cards = kept;
    Ok(())
}

/// Closed loop of complete card verifications from every connection: the card signs the
/// challenge the previous answer carried (the first one is asked for), then one request
/// verifies. Returns (verifications per second, failures).
pub async fn throughput(clients: &[CenterClient], cards: &BenchCards, seconds: u64) -> anyhow::Result<(f64, u64)> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for (worker, client) in clients.iter().enumerate() {
        let client = client.clone();
        let mut mine: Vec<VirtualCard> = cards
            .cards
            .iter()
            .enumerate()
            .filter(|(i, _)| i % clients.len() == worker)
            .map(|(_, (path, _))| VirtualCard::load(path))
            .collect::<Result<_, _>>()?;
        set.spawn(async move {
            let (mut done, mut failed) = (0u64, 0u64);
            let mut index = 0;
            while Instant::now() < deadline && !mine.is_empty() {
                index = (index + 1) % mine.len();
                let consent = ConsentChoice::default();
                let details = consent_details(&consent, "-");
                let outcome = match proof(&client, &mut mine[index], Purpose::Verify, &details).await {
                    Ok(proof) => {
                        let request = VerifyCard { proof, date_of_care: None, consent, chosen_at: None };
                        flow::send_verify(&client, &request).await.is_ok()
                    }
                    Err(_) => false,
                };
                if outcome { done += 1 } else { failed += 1 }
            }
            (done, failed)
        });
    }
    let (mut done, mut failed) = (0, 0);
    while let Some(Ok((d, f))) = set.join_next().await {
        done += d;
        failed += f;
    }
    Ok((done as f64 / started.elapsed().as_secs_f64(), failed))
}

/// The part of a card verification no design can remove on this machine: one check of a card's
/// RSA-2048 signature, made as the center makes it (`PublicKey::verify` with the key of a bench
/// card's certificate, checked against the bench card CA), in µs per check, the fastest of
/// three rounds of 2,000 in this process.
pub fn signature_check_us(cards: &BenchCards) -> anyhow::Result<f64> {
    let (path, _) = cards.cards.first().context("no bench card")?;
    let mut card = VirtualCard::load(path)?;
    let message = onshi_api::card::card_message(Purpose::Verify, "bench-floor-challenge", "-");
    let signature = card.sign_with_pin(PIN, &message).map_err(|e| anyhow::anyhow!("the bench card does not sign: {e}"))?;
    let read =
        |name: &str| std::fs::read_to_string(cards.jpki.join(name)).with_context(|| format!("cannot read the bench card CA's {name}"));
    let trust = onshi_pki::verify::CardTrust::load(&read("ca.pem")?, &read("crl.pem")?)?;
    let key = trust
        .check(&card.certificate_der()?, onshi_pki::today())
        .map_err(|e| anyhow::anyhow!("the bench card does not check: {e}"))?
        .public_key;
    const CHECKS: u32 = 2_000;
    let mut fastest = f64::INFINITY;
    for _ in 0..3 {
        let started = Instant::now();
        for _ in 0..CHECKS {
            anyhow::ensure!(key.verify(&message, &signature), "the bench card's signature does not verify");
        }
        fastest = fastest.min(started.elapsed().as_secs_f64() * 1e6 / f64::from(CHECKS));
    }
    Ok(fastest)
}

/// Proofs each institution has signed ahead in the full-load phase: fewer than the 64 open
/// challenges below which the center puts the institution's next one on every answer, so each
/// answer in the phase issues one, as at a counter.
const AHEAD: usize = 24;

/// What [`full_load`] measured.
pub struct FullLoad {
    /// Verifications per second over the whole phase, signing rounds included (the span the
    /// server's CPU time is taken over).
    pub rate: f64,
    /// Verifications per second while the signed proofs were being sent.
    pub burst_rate: f64,
    /// The share of the centers' cores busy while the proofs were being sent (their CPU time
    /// over the sending spans, from `/proc` ticks), which says whether the phase was at full
    /// load: about 1.0 per core the centers run on.
    pub busy_while_sending: f64,
    pub failed: u64,
}

/// Clients of the full-load phase: one per connection, each as its own institution with its
/// own client certificate (issued once into the bench's PKI), so that no institution holds
/// more open challenges than a busy clinic would.
pub fn institution_clients(pki: &Path, base: &ClientConfig, count: usize) -> anyhow::Result<Vec<CenterClient>> {
    let ca = onshi_pki::CenterCa::load(pki)?;
    (0..count)
        .map(|i| {
            let code = InstitutionCode::with_check_digit(&format!("13190{i:04}")).map_err(|e| anyhow::anyhow!("{e}"))?;
            let file = |ext: &str| pki.join("institutions").join(format!("{code}.{ext}"));
            if !file("pem").exists() {
                ca.issue_institution(&code, &format!("bench clinic {i}"), 30)?;
            }
            let identity = (std::fs::read(file("pem"))?, std::fs::read(file("key"))?);
            Ok(CenterClient::new(ClientConfig { identity_pem: Some(identity), ..base.clone() })?)
        })
        .collect()
}

/// Each client's first [`AHEAD`] challenges, asked for before the phase (and outside its
/// measurement): later ones come on the answers.
pub async fn first_challenges(clients: &[CenterClient]) -> anyhow::Result<Vec<Vec<String>>> {
    let mut all = Vec::with_capacity(clients.len());
    for client in clients {
        let mut mine = Vec::with_capacity(AHEAD);
        for _ in 0..AHEAD {
            let issued: Challenge =
                client.post_json(flow::INSTITUTION_CHALLENGE, &serde_json::json!({})).await.map_err(crate::tls_args::explain)?;
            mine.push(issued.challenge);
        }
        all.push(mine);
    }
    Ok(all)
}

/// Card verifications at full load, which the closed loop of [`throughput`] cannot reach: there
/// the load generator's core signs each proof (RSA-2048 on the card's side, about 260 µs) and
/// holds the center to about a third of one core. Here the cards sign every open challenge
/// first (the center idles meanwhile), then every connection sends its signed proofs as fast
/// as answers come, each answer bringing that institution's next challenge; and again, until
/// `seconds` have passed. The server does nothing else in the phase, so its CPU time over the
/// whole phase is the verifications' own; they are real ones (a fresh single-use challenge, a
/// real signature the center checks, the audit record), only signed ahead: pre-signed
/// challenges, which issue 12 allows.
pub async fn full_load(
    clients: &[CenterClient],
    cards: &BenchCards,
    mut challenges: Vec<Vec<String>>,
    seconds: u64,
    server_cpu: impl Fn() -> anyhow::Result<f64>,
) -> anyhow::Result<FullLoad> {
    // The rate is taken over the same span as the caller's CPU window: loading included.
    let started = Instant::now();
    let mut signers: Vec<VirtualCard> = cards.cards.iter().map(|(path, _)| VirtualCard::load(path)).collect::<Result<_, _>>()?;
    anyhow::ensure!(!signers.is_empty(), "no bench card");
    let consent = ConsentChoice::default();
    let details = consent_details(&consent, "-");
    let deadline = started + Duration::from_secs(seconds);
    let (mut done, mut failed, mut sending, mut busy) = (0u64, 0u64, Duration::ZERO, 0.0);
    let mut next_card = 0;
    while Instant::now() < deadline {
        let mut signed: Vec<Vec<VerifyCard>> = Vec::with_capacity(clients.len());
        for open in &challenges {
            let mut requests = Vec::with_capacity(open.len());
            for challenge in open {
                let card = &mut signers[next_card];
                next_card = (next_card + 1) % cards.cards.len();
                let proof = flow::signed_pin_proof(card, PIN, Purpose::Verify, challenge.clone(), &details)
                    .map_err(|e| anyhow::anyhow!("a bench card does not sign: {e}"))?;
                requests.push(VerifyCard { proof, date_of_care: None, consent, chosen_at: None });
            }
            signed.push(requests);
        }
        let (burst, cpu_before) = (Instant::now(), server_cpu()?);
        let mut set = tokio::task::JoinSet::new();
        for (slot, (client, requests)) in clients.iter().zip(signed).enumerate() {
            let client = client.clone();
            set.spawn(async move {
                let (mut next, mut done, mut failed, mut uncarried) = (Vec::with_capacity(requests.len()), 0u64, 0u64, 0u64);
                for request in requests {
                    match client.post_json::<_, CardAnswer>("/verify/card", &request).await {
                        Ok(answer) => {
                            done += 1;
                            match answer.next_challenge {
                                Some(challenge) => next.push(challenge.challenge),
                                None => uncarried += 1,
                            }
                        }
                        Err(_) => failed += 1,
                    }
                }
                (slot, next, done, failed, uncarried)
            });
        }
        let mut uncarried_total = 0;
        while let Some(joined) = set.join_next().await {
            let (slot, next, d, f, uncarried) = joined?;
            challenges[slot] = next;
            done += d;
            failed += f;
            uncarried_total += uncarried;
        }
        sending += burst.elapsed();
        busy += server_cpu()? - cpu_before;
        // Each institution holds fewer than 64 open challenges, so every answer must carry
        // its next one: if not, the phase would measure answers cheaper than a counter's.
        anyhow::ensure!(uncarried_total == 0, "{uncarried_total} card answers carried no next challenge");
        anyhow::ensure!(challenges.iter().any(|open| !open.is_empty()), "every full-load verification failed");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let sent = sending.as_secs_f64().max(1e-9);
    Ok(FullLoad { rate: done as f64 / elapsed, burst_rate: done as f64 / sent, busy_while_sending: busy / sent, failed })
}
