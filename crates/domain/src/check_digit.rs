//! The check digit (検証番号) shared by insurer numbers, public-expense payer and recipient
//! numbers and medical-institution codes (MHLW 別添２ 設定要領; DOMAIN.md §5).
//!
//! Walk the body from the right multiplying by 2, 1, 2, 1, …; fold each product of 10 or more
//! into the sum of its digits; add everything up; the check digit is (10 − last digit) mod 10.

/// The check digit of a body of ASCII digits. `None` when the body holds anything but digits.
pub fn weighted_2_1(body: &str) -> Option<u8> {
    let mut sum: u32 = 0;
    for (position, byte) in body.bytes().rev().enumerate() {
        if !byte.is_ascii_digit() {
            return None;
        }
        let digit = u32::from(byte - b'0');
        let product = if position % 2 == 0 { digit * 2 } else { digit };
        sum += product / 10 + product % 10;
    }
    Some(((10 - sum % 10) % 10) as u8)
}

/// Whether 12 ASCII digits carry the check digit of a 個人番号 (My Number): the last digit is
/// 11 − (Σ Pₙ·Qₙ mod 11), or 0 when that remainder is 0 or 1, where Pₙ is the n-th digit left
/// of the check digit and Qₙ is n + 1 for n ≤ 6 and n − 5 above (番号法施行令 第8条). onshi
/// never takes one; knowing its shape lets it refuse one typed into a card-number field.
pub fn is_my_number(digits: &str) -> bool {
    let bytes = digits.as_bytes();
    if bytes.len() != 12 || !bytes.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let sum: u32 = (1..=11)
        .map(|n| {
            let p = u32::from(bytes[11 - n] - b'0');
            let q = if n <= 6 { n as u32 + 1 } else { n as u32 - 5 };
            p * q
        })
        .sum();
    let expected = match sum % 11 {
        0 | 1 => 0,
        r => 11 - r,
    };
    u32::from(bytes[11] - b'0') == expected
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn my_numbers_are_known_by_their_check_digit() {
        for valid in ["123456789018", "100000000005", "987654321093", "000000000019"] {
            assert!(is_my_number(valid), "{valid}");
        }
        for not in ["123456789010", "12345678901", "1234567890180", "12345678901a", "64440718"] {
            assert!(!is_my_number(not), "{not}");
        }
    }

    #[test]
    fn worked_examples_from_domain_md() {
        // 保険者番号 0613048 → 8 and 医療機関コード 34 1 07 1236 → 2 (MHLW 2024 PDF).
        assert_eq!(weighted_2_1("0613048"), Some(8));
        assert_eq!(weighted_2_1("341071236"), Some(2));
        // Insurer and payer numbers from the receiptisan sample claim file.
        for number in ["01010016", "01130012", "34130021", "81140048", "28140507", "83120063", "12143210"] {
            assert_eq!(weighted_2_1(&number[..7]), Some(number.as_bytes()[7] - b'0'), "{number}");
        }
        // DOMAIN.md: the test value 83136019 does not pass.
        assert_ne!(weighted_2_1("8313601"), Some(9));
    }

    #[test]
    fn refuses_non_digits() {
        assert_eq!(weighted_2_1("06a3048"), None);
    }
}
