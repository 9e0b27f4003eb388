//! Calendar dates as the interfaces write them (`YYYYMMDD`), and timestamps (`YYYYMMDDHHmmss`,
//! Japan time). A tiny civil-date type is enough: the domain needs day arithmetic, month
//! boundaries and ages, not time zones.

use std::fmt;

use crate::error::FieldError;

/// A calendar date (proleptic Gregorian), 1800-01-01 ..= 9999-12-31.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Date {
    year: u16,
    month: u8,
    day: u8,
}

const YEAR_MIN: u16 = 1800;

impl Date {
    /// Builds a date, refusing impossible ones (2023-02-29, month 13).
    pub fn new(year: u16, month: u8, day: u8) -> Option<Date> {
        if !(YEAR_MIN..=9999).contains(&year) || !(1..=12).contains(&month) {
            return None;
        }
        if day == 0 || day > days_in_month(year, month) {
            return None;
        }
        Some(Date { year, month, day })
    }

    /// Parses `YYYYMMDD` (8 ASCII digits).
    pub fn parse_yyyymmdd(text: &str) -> Result<Date, FieldError> {
        let bytes = text.as_bytes();
        if bytes.len() != 8 || !bytes.iter().all(u8::is_ascii_digit) {
            return Err(FieldError::new("must be a date written as 8 digits YYYYMMDD", text));
        }
        let number = |range: std::ops::Range<usize>| -> u16 { text[range].parse().expect("checked to be ASCII digits") };
        let (year, month, day) = (number(0..4), number(4..6) as u8, number(6..8) as u8);
        Date::new(year, month, day).ok_or_else(|| FieldError::new("is not a calendar date", text))
    }

    pub fn year(self) -> u16 {
        self.year
    }
    pub fn month(self) -> u8 {
        self.month
    }
    pub fn day(self) -> u8 {
        self.day
    }

    /// Days since 1970-01-01 (negative before). Howard Hinnant's `days_from_civil`.
    pub fn to_days(self) -> i64 {
        let (y, m, d) = (self.year as i64, self.month as i64, self.day as i64);
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// The inverse of [`Date::to_days`]; `None` outside the supported range.
    pub fn from_days(days: i64) -> Option<Date> {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
        let year = yoe + era * 400 + i64::from(month <= 2);
        Date::new(u16::try_from(year).ok()?, month, day)
    }

    /// This date moved by `days` (saturating at the ends of the supported range).
    pub fn add_days(self, days: i64) -> Date {
        Date::from_days(self.to_days() + days).unwrap_or(if days < 0 { Date::MIN } else { Date::MAX })
    }

    pub const MIN: Date = Date { year: YEAR_MIN, month: 1, day: 1 };
    pub const MAX: Date = Date { year: 9999, month: 12, day: 31 };

    /// The first day of this date's month.
    pub fn first_of_month(self) -> Date {
        Date { day: 1, ..self }
    }

    /// The first day of the following month.
    pub fn first_of_next_month(self) -> Date {
        if self.month == 12 {
            Date::new(self.year.saturating_add(1).min(9999), 1, 1).unwrap_or(Date::MAX)
        } else {
            Date { month: self.month + 1, day: 1, year: self.year }
        }
    }

    /// The same month and day `years` later; 29 February becomes 1 March in a common year,
    /// which is how Japanese law counts an age reached by someone born on 29 February
    /// (年齢計算ニ関スル法律: the age is reached at the end of the day before the birthday).
    pub fn add_years(self, years: u16) -> Date {
        let year = self.year.saturating_add(years).min(9999);
        Date::new(year, self.month, self.day).unwrap_or_else(|| Date::new(year, 3, 1).expect("1 March exists"))
    }

    /// Age in whole years on `on`, counting a birthday as reached on the birthday itself
    /// (the convention of the counter rules; see `copay`).
    pub fn age_on(self, on: Date) -> u16 {
        if on < self {
            return 0;
        }
        let mut age = on.year - self.year;
        if (on.month, on.day) < (self.month, self.day) {
            age -= 1;
        }
        age
    }

    /// `YYYYMMDD`.
    pub fn yyyymmdd(self) -> String {
        self.to_string()
    }

    /// As reception reads it: 2026年11月1日.
    pub fn japanese(self) -> String {
        format!("{}年{}月{}日", self.year(), self.month(), self.day())
    }
}

/// A `YYYYMMDD` text as reception reads it, or the text itself when it is not a date.
pub fn japanese_text(text: &str) -> String {
    Date::parse_yyyymmdd(text).map_or_else(|_| text.to_string(), Date::japanese)
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}{:02}{:02}", self.year, self.month, self.day)
    }
}

fn is_leap(year: u16) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// A moment in Japan time to the second, written `YYYYMMDDHHmmss` as in the Onshi files
/// (ProcessExecutionTime, …ConsTime). Stored as seconds since 1970-01-01T00:00 JST.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Timestamp(i64);

impl Timestamp {
    pub fn from_jst_seconds(seconds: i64) -> Timestamp {
        Timestamp(seconds)
    }
    /// From Unix seconds (UTC), shifting to Japan time (UTC+9, no daylight saving).
    pub fn from_unix(unix_seconds: i64) -> Timestamp {
        Timestamp(unix_seconds + 9 * 3600)
    }
    pub fn jst_seconds(self) -> i64 {
        self.0
    }
    pub fn unix_seconds(self) -> i64 {
        self.0 - 9 * 3600
    }
    pub fn at_start_of(date: Date) -> Timestamp {
        Timestamp(date.to_days() * 86_400)
    }
    pub fn date(self) -> Date {
        Date::from_days(self.0.div_euclid(86_400)).unwrap_or(Date::MIN)
    }

    /// Parses `YYYYMMDDHHmmss`.
    pub fn parse(text: &str) -> Result<Timestamp, FieldError> {
        let bytes = text.as_bytes();
        if bytes.len() != 14 || !bytes.iter().all(u8::is_ascii_digit) {
            return Err(FieldError::new("must be a time written as 14 digits YYYYMMDDHHmmss", text));
        }
        let date = Date::parse_yyyymmdd(&text[..8])?;
        let hms: Vec<i64> = (0..3).map(|i| text[8 + 2 * i..10 + 2 * i].parse().expect("digits")).collect();
        if hms[0] > 23 || hms[1] > 59 || hms[2] > 59 {
            return Err(FieldError::new("has an impossible time of day", text));
        }
        Ok(Timestamp(date.to_days() * 86_400 + hms[0] * 3600 + hms[1] * 60 + hms[2]))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.rem_euclid(86_400);
        write!(f, "{}{:02}{:02}{:02}", self.date(), secs / 3600, secs / 60 % 60, secs % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_refuses() {
        assert_eq!(Date::parse_yyyymmdd("20240229").unwrap(), Date::new(2024, 2, 29).unwrap());
        assert!(Date::parse_yyyymmdd("20230229").is_err());
        assert!(Date::parse_yyyymmdd("2024-01-01").is_err());
        assert!(Date::parse_yyyymmdd("２０２４０１０１").is_err());
        assert!(Date::parse_yyyymmdd("20241301").is_err());
    }

    #[test]
    fn ages_count_the_birthday_itself() {
        let born = Date::new(1956, 3, 15).unwrap();
        assert_eq!(born.age_on(Date::new(2026, 3, 14).unwrap()), 69);
        assert_eq!(born.age_on(Date::new(2026, 3, 15).unwrap()), 70);
    }

    #[test]
    fn timestamps_round_trip() {
        let t = Timestamp::parse("20261125093005").unwrap();
        assert_eq!(t.to_string(), "20261125093005");
        assert_eq!(t.date(), Date::new(2026, 11, 25).unwrap());
        assert!(Timestamp::parse("20261125246000").is_err());
    }

    proptest! {
        #[test]
        fn days_round_trip(days in -62_000i64..2_900_000) {
            let date = Date::from_days(days).unwrap();
            prop_assert_eq!(date.to_days(), days);
            prop_assert_eq!(Date::parse_yyyymmdd(&date.to_string()).unwrap(), date);
            prop_assert!(date.add_days(1) > date);
        }
    }
}
