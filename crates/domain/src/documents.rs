//! What the paper a patient shows is worth on the date of care, now that the 保険証 has ended
//! (DOMAIN-2026.md): the 資格確認書 is the paper that replaces it; the old 保険証 and the
//! 資格情報のお知らせ alone were accepted with an オン資 confirmation of the printed numbers only
//! until 2026-03-31 (MHLW notice of 2025-11-12). Dated data, so that the answer on any day says
//! what holds on that day.

use crate::Date;

/// The paper the numbers were read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Document {
    /// 資格確認書: issued by the insurer to whoever has no usable マイナ保険証; its own validity
    /// (the insurer's, at most five years).
    QualificationCertificate,
    /// The old 健康保険証 (no new ones since 2024-12-02).
    InsuranceCard,
    /// 資格情報のお知らせ: sent to マイナ保険証 holders; not meant to be shown alone.
    QualificationNotice,
}

impl Document {
    /// The wire code.
    pub fn code(self) -> &'static str {
        match self {
            Document::QualificationCertificate => "qualification_certificate",
            Document::InsuranceCard => "insurance_card",
            Document::QualificationNotice => "qualification_notice",
        }
    }

    pub fn parse(code: &str) -> Option<Document> {
        [Document::QualificationCertificate, Document::InsuranceCard, Document::QualificationNotice].into_iter().find(|d| d.code() == code)
    }

    pub fn label_ja(self) -> &'static str {
        match self {
            Document::QualificationCertificate => "資格確認書",
            Document::InsuranceCard => "健康保険証",
            Document::QualificationNotice => "資格情報のお知らせ",
        }
    }
}

/// The last day an expired 保険証 or a 資格情報のお知らせ alone was accepted with an オン資
/// confirmation of its numbers (MHLW, 2025-11-12).
pub fn transition_last_day() -> Date {
    Date::new(2026, 3, 31).expect("a valid date")
}

/// The last day the old 保険証 were valid: 国保 and 後期高齢 cards 2025-07-31 at the latest,
/// the employees' (被用者保険) 2025-12-01.
pub fn insurance_card_last_day(regional: bool) -> Date {
    if regional { Date::new(2025, 7, 31) } else { Date::new(2025, 12, 1) }.expect("a valid date")
}

/// The longest validity an insurer may give a 資格確認書.
pub const CERTIFICATE_YEARS_MAX: u16 = 5;

/// Until this day every 後期高齢者 received a 資格確認書 without applying; from the next day
/// only those 85 or over on it do (the others apply).
pub fn late_elderly_automatic_last_day() -> Date {
    Date::new(2026, 7, 31).expect("a valid date")
}

/// Age from which a 後期高齢者 still receives a 資格確認書 without applying after
/// [`late_elderly_automatic_last_day`].
pub const LATE_ELDERLY_AUTOMATIC_AGE: u16 = 85;

/// Whether a 後期高齢者 born on `birth` receives a 資格確認書 without applying, as of `on`.
pub fn late_elderly_certificate_without_application(birth: Date, on: Date) -> bool {
    let last = late_elderly_automatic_last_day();
    on <= last || birth.age_on(last.add_days(1)) >= LATE_ELDERLY_AUTOMATIC_AGE
}

/// What the paper is worth on the day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Worth {
    /// Accepted as it is (the staff check its printed validity).
    Accepted,
    /// Accepted only because オン資 confirmed its numbers (the transition until 2026-03-31).
    AcceptedWithConfirmation,
    /// Not accepted on its own on this day.
    NotAlone,
    /// A 資格確認書 past the validity its insurer registered (the coverage may still be valid).
    Expired { valid_to: Date },
}

/// What `document` is worth on `on`; `regional` is a 国保 or 後期高齢 coverage (their old
/// 保険証 ended earlier); `certificate_to` is the last day of the 資格確認書 the insurer
/// registered, when it did.
pub fn worth(document: Document, on: Date, regional: bool, certificate_to: Option<Date>) -> Worth {
    match document {
        Document::QualificationCertificate => match certificate_to {
            Some(valid_to) if on > valid_to => Worth::Expired { valid_to },
            _ => Worth::Accepted,
        },
        Document::InsuranceCard if on <= insurance_card_last_day(regional) => Worth::Accepted,
        Document::InsuranceCard | Document::QualificationNotice if on <= transition_last_day() => Worth::AcceptedWithConfirmation,
        Document::InsuranceCard | Document::QualificationNotice => Worth::NotAlone,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: u16, m: u8, day: u8) -> Date {
        Date::new(y, m, day).unwrap()
    }

    #[test]
    fn each_paper_on_the_days_the_notices_name() {
        use Document::*;
        // The old card: valid to its end (国保/後期 2025-07-31, 被用者 2025-12-01), then with an
        // オン資 confirmation until 2026-03-31, then not alone.
        assert_eq!(worth(InsuranceCard, d(2025, 7, 31), true, None), Worth::Accepted);
        assert_eq!(worth(InsuranceCard, d(2025, 8, 1), true, None), Worth::AcceptedWithConfirmation);
        assert_eq!(worth(InsuranceCard, d(2025, 12, 1), false, None), Worth::Accepted);
        assert_eq!(worth(InsuranceCard, d(2025, 12, 2), false, None), Worth::AcceptedWithConfirmation);
        assert_eq!(worth(InsuranceCard, d(2026, 3, 31), false, None), Worth::AcceptedWithConfirmation);
        assert_eq!(worth(InsuranceCard, d(2026, 4, 1), false, None), Worth::NotAlone);
        // The お知らせ alone: only in the transition.
        assert_eq!(worth(QualificationNotice, d(2026, 3, 31), true, None), Worth::AcceptedWithConfirmation);
        assert_eq!(worth(QualificationNotice, d(2026, 4, 1), true, None), Worth::NotAlone);
        // The 資格確認書: always (its own printed validity is the staff's to read).
        assert_eq!(worth(QualificationCertificate, d(2030, 1, 1), false, None), Worth::Accepted);
        // Its own registered validity: through its last day, not after.
        let to = Some(d(2026, 7, 31));
        assert_eq!(worth(QualificationCertificate, d(2026, 7, 31), true, to), Worth::Accepted);
        assert_eq!(worth(QualificationCertificate, d(2026, 8, 1), true, to), Worth::Expired { valid_to: d(2026, 7, 31) });
        assert_eq!(Document::parse("qualification_notice"), Some(QualificationNotice));
        assert_eq!(Document::parse("card"), None);
    }

    #[test]
    fn late_elderly_certificates_without_application_until_july_2026_then_from_85() {
        // Born 1941-08-01: 85 on 2026-08-01. Born 1941-08-02: 84 that day.
        assert!(late_elderly_certificate_without_application(d(1950, 1, 1), d(2026, 7, 31)), "everyone until 2026-07-31");
        assert!(late_elderly_certificate_without_application(d(1941, 8, 1), d(2026, 12, 4)));
        assert!(!late_elderly_certificate_without_application(d(1941, 8, 2), d(2026, 12, 4)));
        assert!(!late_elderly_certificate_without_application(d(1950, 1, 1), d(2026, 8, 1)));
    }
}
