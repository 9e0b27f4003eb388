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

#[cfg(test)]
mod tests {
    use super::*;

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
