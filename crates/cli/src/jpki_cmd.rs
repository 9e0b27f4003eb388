//! `onshi jpki`: the demo card CA (a stand-in for J-LIS's JPKI) and its virtual cards.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use onshi_domain::Date;
use onshi_pki::card::{CardAttributes, VirtualCard};
use onshi_pki::jpki::{CardCa, CardValidity, RevokeReason};

#[derive(clap::Subcommand, Debug)]
pub enum JpkiCommand {
    /// Create the card CA.
    Init {
        #[arg(long, default_value = "onshi-jpki")]
        dir: PathBuf,
    },
    /// Issue a virtual card (key, user certificate, PIN, face template, 券面事項) to a file.
    Issue(Box<IssueArgs>),
    /// Set up the smartphone マイナ保険証 from a card: the phone's own certificate, ending with
    /// the card's and revoked with it, bound to the same person.
    IssuePhone {
        #[arg(long, default_value = "onshi-jpki")]
        dir: PathBuf,
        /// The card file the phone is set up from.
        #[arg(long)]
        card: PathBuf,
        #[arg(long, value_enum)]
        token: PhoneToken,
        /// The Android phone's own 4-digit PIN (an iPhone uses Face ID / Touch ID instead).
        #[arg(long)]
        pin: Option<String>,
        /// Where to write the phone file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Revoke a card's certificate (lost or stolen); takes effect with the next `crl`.
    Revoke {
        #[arg(long, default_value = "onshi-jpki")]
        dir: PathBuf,
        /// The card file.
        #[arg(long)]
        card: PathBuf,
        #[arg(long, value_enum)]
        reason: Reason,
    },
    /// Renew a card's certificate: new key and serial, same holder; the old one is revoked.
    Renew {
        #[arg(long, default_value = "onshi-jpki")]
        dir: PathBuf,
        #[arg(long)]
        card: PathBuf,
    },
    /// Roll the CA over to a new generation (new key, same name): cards issued before keep
    /// verifying; new cards, lists and feed lines are signed by the new key. Publish a CRL
    /// after it and restart the center (or let it reload) to take the new generation.
    Rollover {
        #[arg(long, default_value = "onshi-jpki")]
        dir: PathBuf,
    },
    /// Publish the signed revocation list (crl.pem) that the center loads.
    Crl {
        #[arg(long, default_value = "onshi-jpki")]
        dir: PathBuf,
        /// Days until the next update.
        #[arg(long, default_value_t = 1)]
        days: u32,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum PhoneToken {
    Android,
    Iphone,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Reason {
    Lost,
    Stolen,
}

#[derive(clap::Args, Debug)]
pub struct IssueArgs {
    #[arg(long, default_value = "onshi-jpki")]
    pub dir: PathBuf,
    /// Where to write the card file.
    #[arg(long)]
    pub out: PathBuf,
    /// The register's pseudonymous reference of the person the card is issued to (as the
    /// municipality knows them; never a My Number). The binding goes to the center in the
    /// signed feed `bindings.jsonl`.
    #[arg(long)]
    pub person_ref: String,
    /// 氏名 (kanji).
    #[arg(long)]
    pub name: String,
    /// 氏名カナ.
    #[arg(long)]
    pub kana: String,
    /// 生年月日 YYYYMMDD.
    #[arg(long)]
    pub birth: String,
    /// 1 男, 2 女, 3 未設定.
    #[arg(long)]
    pub sex: String,
    #[arg(long)]
    pub address: String,
    /// The 4-digit PIN.
    #[arg(long, required_unless_present = "face_only")]
    pub pin: Option<String>,
    /// A 顔認証マイナンバーカード: no PIN, face or visual check only.
    #[arg(long, conflicts_with = "pin")]
    pub face_only: bool,
    /// Day of issue (YYYYMMDD), for testing expiry; today when absent.
    #[arg(long)]
    pub valid_from: Option<String>,
    /// Days of validity from --valid-from, for testing expiry. Without it the certificate runs
    /// to the holder's 5th birthday after issue, as J-LIS issues it.
    #[arg(long)]
    pub days: Option<u32>,
}

pub fn run(command: JpkiCommand) -> anyhow::Result<ExitCode> {
    match command {
        JpkiCommand::Init { dir } => {
            CardCa::create(&dir)?;
            println!("card CA created in {}", dir.display());
        }
        JpkiCommand::Issue(args) => {
            let ca = CardCa::load(&args.dir)?;
            if let Some(pin) = &args.pin {
                anyhow::ensure!(pin.len() == 4 && pin.bytes().all(|b| b.is_ascii_digit()), "--pin must be 4 digits");
            }
            Date::parse_yyyymmdd(&args.birth).map_err(|e| anyhow::anyhow!("--birth {e}"))?;
            let valid_from = match &args.valid_from {
                Some(text) => Date::parse_yyyymmdd(text).map_err(|e| anyhow::anyhow!("--valid-from {e}"))?,
                None => onshi_pki::today(),
            };
            let attributes =
                CardAttributes { name: args.name, name_kana: args.kana, birth_date: args.birth, sex: args.sex, address: args.address };
            let validity = match args.days {
                Some(days) => CardValidity::Days { from: valid_from, days },
                None => CardValidity::Statutory { issued_on: valid_from },
            };
            let card = ca.issue_card(attributes, &args.person_ref, args.pin.as_deref(), validity, &args.out)?;
            println!("card {} written to {} (serial {})", card.holder_ref()?, args.out.display(), card.serial());
        }
        JpkiCommand::IssuePhone { dir, card, token, pin, out } => {
            let ca = CardCa::load(&dir)?;
            let token = match token {
                PhoneToken::Android => onshi_pki::card::TokenType::Android,
                PhoneToken::Iphone => onshi_pki::card::TokenType::Iphone,
            };
            let phone = ca.issue_phone(&card, token, pin.as_deref(), &out)?;
            println!("phone {} written to {} (serial {})", phone.token().token_name(), out.display(), phone.serial());
        }
        JpkiCommand::Revoke { dir, card, reason } => {
            let ca = CardCa::load(&dir)?;
            let card = VirtualCard::load(&card)?;
            let reason = match reason {
                Reason::Lost => RevokeReason::Lost,
                Reason::Stolen => RevokeReason::Stolen,
            };
            ca.revoke(card.serial(), reason)?;
            println!("serial {} revoked; run `onshi jpki crl` to publish", card.serial());
        }
        JpkiCommand::Renew { dir, card } => {
            let ca = CardCa::load(&dir)?;
            let renewed = ca.renew(&card).with_context(|| format!("cannot renew {}", card.display()))?;
            println!("{} renewed: serial {} (the old certificate is revoked)", card.display(), renewed.serial());
        }
        JpkiCommand::Rollover { dir } => {
            let mut ca = CardCa::load(&dir)?;
            ca.rollover()?;
            println!(
                "card CA rolled over: generation {} signs from now on ({} in {}); publish a CRL with `onshi jpki crl`",
                ca.generations(),
                ca.generations(),
                dir.join("ca.pem").display()
            );
        }
        JpkiCommand::Crl { dir, days } => {
            let ca = CardCa::load(&dir)?;
            let path = ca.publish_crl(days)?;
            println!("{} written ({} revoked)", path.display(), ca.revocations()?.len());
        }
    }
    Ok(ExitCode::SUCCESS)
}
