//! 公費 payers' recipients for the synthetic world, with their ground truth.
//!
//! Who gets what (written out here, not derived from the center):
//! - a child under 15 gets the city's 子ども医療費助成 (地方単独, 法別 88) two times in five; only
//!   the pilot prefectures (codes 1–23) register their recipients with the center, the others
//!   hand out paper only;
//! - one person of 15 or over in fifty gets a 指定難病 certificate (法別 54) from the prefecture;
//! - of those, one in twenty is withheld (DV), one in twenty ended thirty days before today, one
//!   in twenty had its monthly cap lowered sixty days before today.
//!
//! The truth asks the by-numbers question on today (the world's date of care) and expects, from
//! this timeline alone: `valid` with the cap in force, `not_valid_on_date` for an ended one,
//! `not_registered` for a withheld one and for a wrong birth date, and `payer_not_connected` for
//! a programme that registers nothing.

use onshi_api::subsidy::{SubsidyCertificate, SubsidyEvent, SubsidyEventKind, VerifySubsidyRequest, state};
use onshi_domain::ids::{PublicPayerNumber, RecipientNumber};
use onshi_domain::{Date, Timestamp};
use serde::{Deserialize, Serialize};

use crate::rng::Rng;

/// Where the payers' events go, under the output directory.
pub const SUBSIDY_FILE: &str = "subsidies/subsidies.jsonl";
/// Where the by-numbers ground truth goes.
pub const SUBSIDY_TRUTH_FILE: &str = "subsidy-truth.jsonl";

/// Prefectures (by code) whose programmes register recipients with the center.
const PILOT_PREFECTURES: u8 = 23;

/// One by-numbers question and what its answer must say.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SubsidyCase {
    pub case: String,
    pub category: String,
    pub request: VerifySubsidyRequest,
    /// `valid`, `not_valid_on_date`, `not_registered` or `payer_not_connected`.
    pub state: String,
    /// The monthly cap in force on the date of care, for a `valid` answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_pay_cap_yen: Option<u32>,
}

/// Checks an answer against a case: the state, and for a valid certificate its numbers and cap.
pub fn check_subsidy(answer: &onshi_api::subsidy::SubsidyAnswer, case: &SubsidyCase) -> Result<(), String> {
    let mut problems = Vec::new();
    if answer.state != case.state {
        problems.push(format!("state {} (expected {})", answer.state, case.state));
    }
    let shown = answer.subsidy.as_ref();
    match case.state.as_str() {
        state::VALID => match shown {
            Some(s) => {
                if s.recipient_number != case.request.recipient_number || s.payer_number != case.request.payer_number {
                    problems.push(format!("numbers {}/{} (expected the ones asked)", s.payer_number, s.recipient_number));
                }
                if s.self_pay_cap_yen != case.self_pay_cap_yen {
                    problems.push(format!("cap {:?} (expected {:?})", s.self_pay_cap_yen, case.self_pay_cap_yen));
                }
            }
            None => problems.push("no certificate shown".into()),
        },
        // Nothing may be shown of a withheld certificate, a wrong birth date or an unknown payer.
        state::NOT_REGISTERED | state::PAYER_NOT_CONNECTED if shown.is_some() => problems.push("a certificate was shown".into()),
        _ => {}
    }
    if problems.is_empty() { Ok(()) } else { Err(format!("{}: {}", case.case, problems.join("; "))) }
}

/// A person the world knows: reference, birth date, and the prefecture they live in.
pub(crate) struct Resident<'a> {
    pub reference: &'a str,
    pub birth: Date,
    pub prefecture: u8,
}

/// What one person's certificates came to.
#[derive(Default)]
pub(crate) struct Outcome {
    pub events: Vec<SubsidyEvent>,
    pub cases: Vec<SubsidyCase>,
    pub welfare: Vec<WelfareCase>,
}

/// The institutions 医療扶助 recipients are designated to: the demo's clinic and the tests'
/// other clinic.
pub const WELFARE_CLINICS: [&str; 2] = ["1311234569", "2711234563"];

/// Where the 医療扶助 ground truth goes.
pub const WELFARE_TRUTH_FILE: &str = "welfare-truth.jsonl";

/// One 医療扶助 recipient as an institution's month (`OQSmutic`) must show them, or not.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct WelfareCase {
    pub case: String,
    pub category: String,
    pub institution: String,
    /// `YYYYMM`.
    pub month: String,
    pub payer_number: String,
    pub recipient_number: String,
    /// Whether the month's answer lists the recipient at all.
    pub listed: bool,
    /// `1` or `6` when listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validity: Option<String>,
    /// The ticket's 交付番号, when one is registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issue_number: Option<String>,
    pub birth_date: String,
}

/// Checks a month's answer against the cases of that institution and month.
pub fn check_welfare(answer: &onshi_api::subsidy::WelfareMonthAnswer, case: &WelfareCase) -> Result<(), String> {
    let found = answer.recipients.iter().find(|r| r.payer_number == case.payer_number && r.recipient_number == case.recipient_number);
    let problem = match (found, case.listed) {
        (None, false) => None,
        (Some(_), false) => Some("listed, but must not be".to_string()),
        (None, true) => Some("not listed".to_string()),
        (Some(r), true) => {
            let mut problems = Vec::new();
            if Some(&r.validity.code) != case.validity.as_ref() {
                problems.push(format!("validity {} (expected {:?})", r.validity.code, case.validity));
            }
            let issued: Vec<&str> = r.tickets.iter().map(|t| t.issue_number.as_str()).collect();
            if issued != case.issue_number.iter().map(String::as_str).collect::<Vec<_>>() {
                problems.push(format!("tickets {issued:?} (expected {:?})", case.issue_number));
            }
            if r.birth_date.as_deref() != Some(case.birth_date.as_str()) {
                problems.push(format!("birth date {:?}", r.birth_date));
            }
            (!problems.is_empty()).then(|| problems.join("; "))
        }
    };
    match problem {
        None => Ok(()),
        Some(p) => Err(format!("{}: {p}", case.case)),
    }
}

pub(crate) struct Payers {
    next_recipient: std::collections::HashMap<String, u32>,
    next_event: u64,
    next_case: u64,
    next_welfare: u64,
}

fn d(y: u16, m: u8, day: u8) -> Date {
    Date::new(y, m, day).expect("generator dates are valid")
}

impl Payers {
    pub(crate) fn new() -> Payers {
        Payers { next_recipient: Default::default(), next_event: 1, next_case: 1, next_welfare: 0 }
    }

    fn recipient(&mut self, payer: &PublicPayerNumber) -> RecipientNumber {
        let next = self.next_recipient.entry(payer.as_str().to_string()).or_insert(1);
        let number = RecipientNumber::with_check_digit(&format!("{:06}", *next)).expect("valid body");
        *next += 1;
        number
    }

    fn event(
        &mut self,
        kind: SubsidyEventKind,
        payer: &PublicPayerNumber,
        recipient: &RecipientNumber,
        who: &Resident,
        on: Date,
    ) -> SubsidyEvent {
        let id = self.next_event;
        self.next_event += 1;
        SubsidyEvent {
            event_id: format!("sub{id:09}"),
            kind,
            payer_number: payer.as_str().to_string(),
            recipient_number: recipient.as_str().to_string(),
            person_ref: who.reference.to_string(),
            occurred_on: on.to_string(),
            // Registered on its first day, at ten in the morning.
            notified_at: Timestamp::from_jst_seconds(Timestamp::at_start_of(on).jst_seconds() + 10 * 3600).to_string(),
            certificate: None,
            ticket: None,
        }
    }

    fn case(&mut self, category: &str, request: VerifySubsidyRequest, state: &str, cap: Option<u32>) -> SubsidyCase {
        let id = self.next_case;
        self.next_case += 1;
        SubsidyCase { case: format!("s{id:07}"), category: category.into(), request, state: state.into(), self_pay_cap_yen: cap }
    }

    /// A 生活保護 recipient (one adult in twenty-five): the office's grant designating one of
    /// [`WELFARE_CLINICS`] in turn, and this month's 医療券 for it — or, in turn per clinic, two
    /// in ten none yet (`6`), one in ten withheld (never listed), one in ten stopped at the start
    /// of this month (not listed).
    fn welfare(&mut self, rng: &mut Rng, who: &Resident, today: Date, out: &mut Outcome) {
        let office = PublicPayerNumber::with_check_digit(&format!("12{:02}001", who.prefecture)).expect("valid body");
        let recipient = self.recipient(&office);
        let turn = self.next_welfare;
        self.next_welfare += 1;
        let clinic = WELFARE_CLINICS[(turn % WELFARE_CLINICS.len() as u64) as usize];
        let month_start = today.first_of_month();
        let month = format!("{:04}{:02}", today.year(), today.month());
        let started = month_start.add_days(-rng.between(60, 900));
        let variant = (turn / WELFARE_CLINICS.len() as u64) % 10;
        let mut grant = self.event(SubsidyEventKind::Grant, &office, &recipient, who, started);
        grant.certificate = Some(SubsidyCertificate {
            name: format!("{}第一福祉事務所", crate::names::PREFECTURES[who.prefecture as usize - 1]),
            designated_institutions: vec![clinic.to_string()],
            withheld: variant == 0,
            ..SubsidyCertificate::default()
        });
        out.events.push(grant);
        let mut case = WelfareCase {
            case: String::new(),
            category: String::new(),
            institution: clinic.to_string(),
            month: month.clone(),
            payer_number: office.as_str().to_string(),
            recipient_number: recipient.as_str().to_string(),
            listed: true,
            validity: Some("1".into()),
            issue_number: None,
            birth_date: who.birth.to_string(),
        };
        let (category, ticket) = match variant {
            0 => {
                case.listed = false;
                case.validity = None;
                ("welfare_withheld", true)
            }
            1 => {
                out.events.push(self.event(SubsidyEventKind::End, &office, &recipient, who, month_start));
                case.listed = false;
                case.validity = None;
                ("welfare_stopped", false)
            }
            2 | 3 => {
                case.validity = Some("6".into());
                ("welfare_unregistered", false)
            }
            _ => ("welfare_ticket", true),
        };
        if ticket {
            let (issued, issue_number) = self.month_ticket(rng, (&office, &recipient), who, today, clinic, true);
            out.events.push(issued);
            if case.listed {
                case.issue_number = Some(issue_number);
            }
        }
        let id = self.next_case;
        self.next_case += 1;
        case.case = format!("w{id:07}");
        case.category = category.to_string();
        out.welfare.push(case);
    }

    /// This month's 医療券 of a recipient for `clinic`, and its 交付番号: 併用 for someone an
    /// insurer also covers (`combined`), else 単独.
    fn month_ticket(
        &mut self,
        rng: &mut Rng,
        (office, recipient): (&PublicPayerNumber, &RecipientNumber),
        who: &Resident,
        today: Date,
        clinic: &str,
        combined: bool,
    ) -> (SubsidyEvent, String) {
        let month_start = today.first_of_month();
        let month = format!("{:04}{:02}", today.year(), today.month());
        let issue_number = format!("{}-{}", month, recipient.as_str());
        let mut issued = self.event(SubsidyEventKind::Ticket, office, recipient, who, month_start);
        issued.ticket = Some(onshi_api::subsidy::MedicalTicket {
            ticket_type: "01".into(),
            valid_from: month_start.to_string(),
            valid_to: month_start.add_days(40).first_of_month().add_days(-1).to_string(),
            issue_number: issue_number.clone(),
            month,
            institution_code: clinic.to_string(),
            institution_name: "オンシ医院".into(),
            injuries: vec![rng.pick(&["高血圧症", "2型糖尿病", "腰痛症", "気管支喘息"]).to_string()],
            treatment_type: "02".into(),
            self_pay_yen: *rng.pick(&[0, 0, 0, 1_200]),
            combined,
        });
        (issued, issue_number)
    }

    /// A 生活保護 recipient no insurer registers (they left 国保 when the assistance began):
    /// the welfare office's grant carries its own record of them — what 初回登録 of their card
    /// is compared with — designating one of [`WELFARE_CLINICS`] in turn, with this month's
    /// 医療券 for two in three and none yet (`6`) for the third. `index` numbers them apart
    /// from the residents insurers register.
    pub(crate) fn welfare_only(&mut self, rng: &mut Rng, seed: u64, index: u64, today: Date, out: &mut Outcome) {
        let reference = crate::rng::person_ref(seed, u64::MAX - index);
        let male = rng.below(2) == 0;
        let family = *rng.pick(crate::names::FAMILY);
        let given = *rng.pick(if male { crate::names::GIVEN_MALE } else { crate::names::GIVEN_FEMALE });
        let birth = today.add_days(-rng.between(25 * 365, 85 * 365));
        let prefecture = 1 + rng.below(47) as u8;
        let who = Resident { reference: &reference, birth, prefecture };
        let office = PublicPayerNumber::with_check_digit(&format!("12{prefecture:02}001")).expect("valid body");
        let recipient = self.recipient(&office);
        let clinic = WELFARE_CLINICS[(index % WELFARE_CLINICS.len() as u64) as usize];
        let ticketed = (index / WELFARE_CLINICS.len() as u64) % 3 != 2;
        let started = today.first_of_month().add_days(-rng.between(60, 900));
        let prefecture_name = crate::names::PREFECTURES[prefecture as usize - 1];
        let mut grant = self.event(SubsidyEventKind::Grant, &office, &recipient, &who, started);
        grant.certificate = Some(SubsidyCertificate {
            name: format!("{prefecture_name}第一福祉事務所"),
            designated_institutions: vec![clinic.to_string()],
            recipient: Some(onshi_api::subsidy::RecipientRecord {
                name: format!("{}　{}", family.0, given.0),
                name_kana: format!("{} {}", family.1, given.1),
                birth_date: birth.to_string(),
                sex: if male { "1" } else { "2" }.into(),
                address: Some(format!("{prefecture_name}中央市{}丁目{}番", 1 + rng.below(9), 1 + rng.below(30))),
            }),
            ..SubsidyCertificate::default()
        });
        out.events.push(grant);
        let mut case = WelfareCase {
            case: String::new(),
            category: if ticketed { "welfare_only_ticket" } else { "welfare_only_unregistered" }.into(),
            institution: clinic.to_string(),
            month: format!("{:04}{:02}", today.year(), today.month()),
            payer_number: office.as_str().to_string(),
            recipient_number: recipient.as_str().to_string(),
            listed: true,
            validity: Some(if ticketed { "1" } else { "6" }.into()),
            issue_number: None,
            birth_date: birth.to_string(),
        };
        if ticketed {
            let (issued, issue_number) = self.month_ticket(rng, (&office, &recipient), &who, today, clinic, false);
            out.events.push(issued);
            case.issue_number = Some(issue_number);
        }
        let id = self.next_case;
        self.next_case += 1;
        case.case = format!("w{id:07}");
        out.welfare.push(case);
    }

    /// The certificates of one person, their events and the questions to ask about them.
    pub(crate) fn person(&mut self, rng: &mut Rng, who: &Resident, today: Date) -> Outcome {
        let mut out = Outcome { events: Vec::new(), cases: Vec::new(), welfare: Vec::new() };
        let age = who.birth.age_on(today);
        if age >= 20 && rng.below(25) == 0 {
            self.welfare(rng, who, today, &mut out);
            return out;
        }
        let fiscal_start = if today.month() >= 4 { d(today.year(), 4, 1) } else { d(today.year() - 1, 4, 1) };
        let ask = |payer: &PublicPayerNumber, recipient: &RecipientNumber, birth: Date| VerifySubsidyRequest {
            institution_code: None,
            payer_number: payer.as_str().to_string(),
            recipient_number: recipient.as_str().to_string(),
            birth_date: birth.to_string(),
            date_of_care: today.to_string(),
        };
        let (payer, name, from, to, caps): (PublicPayerNumber, &str, Date, Date, &[u32]) = if age < 15 {
            if rng.below(5) >= 2 {
                return out;
            }
            let payer = PublicPayerNumber::with_check_digit(&format!("88{:02}001", who.prefecture)).expect("valid body");
            (payer, "子ども医療費受給者証", fiscal_start.max(who.birth), d(fiscal_start.year() + 1, 3, 31), &[0, 200, 500])
        } else {
            if rng.below(50) != 0 {
                return out;
            }
            let payer = PublicPayerNumber::with_check_digit(&format!("54{:02}001", who.prefecture)).expect("valid body");
            let from = d(today.year(), 1, 1);
            (payer, "特定医療費（指定難病）受給者証", from, d(today.year(), 12, 31), &[2_500, 5_000, 10_000, 20_000])
        };
        let recipient = self.recipient(&payer);
        if who.prefecture > PILOT_PREFECTURES {
            // Paper only: nothing registered, and the answer must say the register cannot tell.
            out.cases.push(self.case("subsidy_payer_not_connected", ask(&payer, &recipient, who.birth), state::PAYER_NOT_CONNECTED, None));
            return out;
        }
        let cap = *rng.pick(caps);
        let variant = rng.below(20);
        let mut grant = self.event(SubsidyEventKind::Grant, &payer, &recipient, who, from);
        grant.certificate = Some(SubsidyCertificate {
            name: name.into(),
            valid_to: Some(to.to_string()),
            self_pay_cap_yen: Some(cap),
            income_segment: (age >= 15).then(|| "一般所得Ⅰ".to_string()),
            designated_institutions: Vec::new(),
            withheld: variant == 0,
            recipient: None,
        });
        out.events.push(grant.clone());
        let (category, expected, cap_then) = match variant {
            0 => ("subsidy_withheld", state::NOT_REGISTERED, None),
            1 if today.add_days(-30) > from => {
                out.events.push(self.event(SubsidyEventKind::End, &payer, &recipient, who, today.add_days(-30)));
                ("subsidy_ended", state::NOT_VALID_ON_DATE, None)
            }
            2 if today.add_days(-60) > from => {
                let lowered = cap / 2;
                let mut change = self.event(SubsidyEventKind::Grant, &payer, &recipient, who, today.add_days(-60));
                let mut certificate = grant.certificate.clone().expect("set above");
                certificate.self_pay_cap_yen = Some(lowered);
                change.certificate = Some(certificate);
                out.events.push(change);
                ("subsidy_cap_changed", state::VALID, Some(lowered))
            }
            _ => ("subsidy_valid", state::VALID, Some(cap)),
        };
        out.cases.push(self.case(category, ask(&payer, &recipient, who.birth), expected, cap_then));
        if variant == 3 {
            // The same numbers with another birth date: nothing shown, as if never registered.
            let other = if who.birth.day() < 28 { who.birth.add_days(1) } else { who.birth.add_days(-1) };
            out.cases.push(self.case("subsidy_wrong_birth_date", ask(&payer, &recipient, other), state::NOT_REGISTERED, None));
        }
        out
    }
}
