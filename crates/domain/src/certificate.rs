//! The life of a card's 利用者証明用電子証明書 at the counter (JPKI.md, DOMAIN-2026.md):
//! valid until its last day; "更新のご案内" from three months before; after it expired, the
//! real system still confirms **eligibility only** until the end of the third month after the
//! month of expiry (no drug, checkup or diagnosis information, no new consent); then nothing.

use crate::Date;

/// Months before expiry from which the holder is told to renew.
pub const WARN_MONTHS: u8 = 3;
/// Months after the month of expiry during which eligibility is still confirmed.
pub const GRACE_MONTHS: u8 = 3;

/// Where a certificate stands on a day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    /// Valid, and not near its end.
    Valid,
    /// Valid, ending on `expires_on` within [`WARN_MONTHS`]: tell the holder to renew.
    ExpiringSoon { expires_on: Date },
    /// Expired on `expired_on`; eligibility only, until `grace_until` (inclusive).
    Grace { expired_on: Date, grace_until: Date },
    /// Expired, and past the grace period.
    Expired { expired_on: Date },
}

/// The same day `months` months earlier (the month's last day when it has no such day: 31 May
/// minus three months is 28 or 29 February).
fn months_before(date: Date, months: u8) -> Date {
    let total = i32::from(date.year()) * 12 + i32::from(date.month()) - 1 - i32::from(months);
    let (year, month) = ((total / 12) as u16, (total % 12) as u8 + 1);
    (1..=date.day()).rev().find_map(|day| Date::new(year, month, day)).unwrap_or(Date::MIN)
}

/// The last day of the `months`-th month after `date`'s month.
fn end_of_month_after(date: Date, months: u8) -> Date {
    let mut first = date.first_of_month();
    for _ in 0..=months {
        first = first.first_of_next_month();
    }
    first.add_days(-1)
}

/// Where a certificate whose last valid day is `not_after` stands on `today`.
pub fn standing(not_after: Date, today: Date) -> Standing {
    if today > not_after {
        let grace_until = end_of_month_after(not_after, GRACE_MONTHS);
        return if today <= grace_until {
            Standing::Grace { expired_on: not_after, grace_until }
        } else {
            Standing::Expired { expired_on: not_after }
        };
    }
    if today >= months_before(not_after, WARN_MONTHS) { Standing::ExpiringSoon { expires_on: not_after } } else { Standing::Valid }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> Date {
        Date::parse_yyyymmdd(text).unwrap()
    }

    #[test]
    fn the_warning_starts_three_months_before_and_the_grace_ends_with_the_third_month_after() {
        // Written out from the rule: a certificate ending 2026-06-15.
        let end = d("20260615");
        assert_eq!(standing(end, d("20260314")), Standing::Valid);
        assert_eq!(standing(end, d("20260315")), Standing::ExpiringSoon { expires_on: end }, "three months before to the day");
        assert_eq!(standing(end, d("20260615")), Standing::ExpiringSoon { expires_on: end }, "valid on its last day");
        let grace = Standing::Grace { expired_on: end, grace_until: d("20260930") };
        assert_eq!(standing(end, d("20260616")), grace, "June is the month of expiry; July, August, September follow");
        assert_eq!(standing(end, d("20260930")), grace);
        assert_eq!(standing(end, d("20261001")), Standing::Expired { expired_on: end });
        // Across a year end, and from a day the earlier month lacks.
        assert_eq!(standing(d("20261130"), d("20270228")), Standing::Grace { expired_on: d("20261130"), grace_until: d("20270228") });
        assert_eq!(standing(d("20261130"), d("20270301")), Standing::Expired { expired_on: d("20261130") });
        assert_eq!(standing(d("20270531"), d("20270227")), Standing::Valid);
        assert_eq!(standing(d("20270531"), d("20270228")), Standing::ExpiringSoon { expires_on: d("20270531") }, "28 Feb for 31 May");
        assert_eq!(standing(d("20280531"), d("20280229")), Standing::ExpiringSoon { expires_on: d("20280531") }, "29 Feb in a leap year");
        assert_eq!(standing(d("20280531"), d("20280228")), Standing::Valid);
    }
}
