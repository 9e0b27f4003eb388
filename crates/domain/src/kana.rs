//! Kana readings (フリガナ) as people and systems write them: insurers send half-width katakana
//! (ｼｹﾝ ﾊﾅｺ), cards print full-width (シケン　ハナコ), forms take hiragana. One comparable form.

/// Half-width katakana (U+FF66–U+FF9D) in their full-width order.
const HALF_KANA: &str = "ヲァィゥェォャュョッーアイウエオカキクケコサシスセソタチツテトナニヌネノハヒフヘホマミムメモヤユヨラリルレロワン";

/// A kana reading as compared at 初回登録: full-width katakana, voiced marks joined, no spaces.
/// Insurers send half-width (ｼｹﾝ ﾊﾅｺ), cards print full-width; both must compare equal.
pub fn reading(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        match c {
            '\u{FF66}'..='\u{FF9D}' => out.push(HALF_KANA.chars().nth(c as usize - 0xFF66).unwrap_or(c)),
            // Voiced and semi-voiced marks join the previous kana: カ + ﾞ → ガ, ハ + ﾟ → パ.
            '\u{FF9E}' | '\u{309B}' | '\u{3099}' => {
                if let Some(last) = out.pop() {
                    out.push(
                        char::from_u32(last as u32 + 1)
                            .filter(|_| "カキクケコサシスセソタチツテトハヒフヘホ".contains(last))
                            .unwrap_or(last),
                    );
                    if last == 'ウ' {
                        out.pop();
                        out.push('ヴ');
                    }
                }
            }
            '\u{FF9F}' | '\u{309C}' | '\u{309A}' => {
                if let Some(last) = out.pop() {
                    out.push(char::from_u32(last as u32 + 2).filter(|_| "ハヒフヘホ".contains(last)).unwrap_or(last));
                }
            }
            // Hiragana to katakana.
            '\u{3041}'..='\u{3096}' => out.push(char::from_u32(c as u32 + 0x60).unwrap_or(c)),
            c if c.is_whitespace() || c == '\u{3000}' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_compare_across_widths_scripts_and_spaces() {
        assert_eq!(reading("ｼｹﾝ ﾊﾅｺ"), "シケンハナコ");
        assert_eq!(reading("シケン　ハナコ"), "シケンハナコ");
        assert_eq!(reading("しけん はなこ"), "シケンハナコ");
        assert_eq!(reading("ｶﾞｯｺｳ ﾊﾟﾝ ｳﾞｨ"), "ガッコウパンヴィ");
        assert_ne!(reading("ｼｹﾝ ﾀﾛｳ"), reading("シケン　ハナコ"));
    }
}
