//! Names as they are written, and what a Shift_JIS client gets instead.
//!
//! The register keeps names in full Unicode from the insurer's file to the answer: JIS X 0213
//! characters (𠮷, 𡈽, 鷗) and ideographic variation sequences (葛 with U+E0100) arrive as the
//! insurer sent them, and a UTF-8 answer carries them unchanged. A receipt computer that asks
//! for Shift_JIS (CharacterCodeIdentifier 1) can only hold CP932. The real system prints what it
//! cannot carry as "●" and says nothing, and the receipt computer then overwrites the spelling
//! it had with the "●" (the most common trouble of 2026, DOMAIN-2026.md). Here every character
//! CP932 lacks is replaced by one written rule, and the answer lists each replacement, so that
//! the receipt computer (and staff) keep their own spelling.
//!
//! The rule, in order, for each character of a name, kana or address:
//! 1. A variation selector (U+FE00–FE0F, U+E0100–E01EF) is dropped: the base character before
//!    it stays, only the glyph variant is lost. Reported.
//! 2. A character CP932 holds stays as it is (including the NEC and IBM extensions: 髙, 﨑).
//! 3. A character in [`EQUIVALENTS`] becomes its everyday form (𠮷 → 吉), the form a person
//!    with that name writes where the system lacks it. Reported.
//! 4. Anything else becomes 〓 (U+3013, ゲタ), the typesetter's mark for a character that could
//!    not be set, which nobody mistakes for part of a name (unlike "●"). Reported.

/// Characters outside CP932 with the everyday form a person writes instead, as registries and
/// banks substitute them (人名用漢字 and JIS X 0213 forms whose 常用 form CP932 holds).
pub const EQUIVALENTS: &[(char, char)] = &[
    ('𠮷', '吉'),
    ('𡈽', '土'),
    ('鷗', '鴎'),
    ('剝', '剥'),
    ('頰', '頬'),
    ('𠮟', '叱'),
    ('塡', '填'),
    ('蔣', '蒋'),
    ('屛', '屏'),
    ('瘦', '痩'),
    ('搔', '掻'),
    ('醬', '醤'),
    ('摑', '掴'),
    ('繡', '繍'),
    ('蟬', '蝉'),
];

/// The mark for a character that has no CP932 form and no everyday equivalent.
pub const GETA: char = '〓';

/// One replacement: where in the text, what was written, and what the answer carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replacement {
    /// The position (from 1) of the character in the text as registered, counted in
    /// characters without variation selectors, as a person counts the letters of a name.
    pub position: usize,
    /// The character as registered, with its variation selector when it had one.
    pub original: String,
    /// What the answer carries instead (the base character, an equivalent, or 〓).
    pub written: char,
}

impl Replacement {
    /// `U+20BB7→吉`, `U+845B U+E0100→葛`: code points, since the original has no Shift_JIS form.
    pub fn describe(&self) -> String {
        let points: Vec<String> = self.original.chars().map(|c| format!("U+{:04X}", c as u32)).collect();
        format!("{}文字目 {}→{}", self.position, points.join(" "), self.written)
    }
}

/// A text fitted to CP932, with what was replaced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fitted {
    pub text: String,
    pub replaced: Vec<Replacement>,
}

/// Whether CP932 (Windows-31J, as encoding_rs's Shift_JIS encodes) holds `c`.
pub fn in_cp932(c: char) -> bool {
    let mut buffer = [0u8; 4];
    let (_, _, unmappable) = encoding_rs::SHIFT_JIS.encode(c.encode_utf8(&mut buffer));
    !unmappable
}

fn is_variation_selector(c: char) -> bool {
    matches!(c as u32, 0xFE00..=0xFE0F | 0xE0100..=0xE01EF)
}

/// `text` by the rule above. A text CP932 holds whole comes back unchanged with nothing replaced.
pub fn fit_cp932(text: &str) -> Fitted {
    let mut out = String::with_capacity(text.len());
    let mut replaced = Vec::new();
    let mut chars = text.chars().peekable();
    let mut position = 0;
    while let Some(c) = chars.next() {
        if is_variation_selector(c) {
            // A selector with no base before it (a damaged name): nothing to keep.
            replaced.push(Replacement { position: position.max(1), original: c.to_string(), written: GETA });
            out.push(GETA);
            continue;
        }
        position += 1;
        let mut original = c.to_string();
        let mut selected = false;
        while let Some(&next) = chars.peek().filter(|n| is_variation_selector(**n)) {
            original.push(next);
            selected = true;
            chars.next();
        }
        let written = if in_cp932(c) { c } else { EQUIVALENTS.iter().find(|(from, _)| *from == c).map_or(GETA, |(_, to)| *to) };
        if selected || written != c {
            replaced.push(Replacement { position, original, written });
        }
        out.push(written);
    }
    Fitted { text: out, replaced }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_maps_characters_cp932_lacks_to_characters_it_holds() {
        for (from, to) in EQUIVALENTS {
            assert!(!in_cp932(*from), "{from} (U+{:04X}) is in CP932 and needs no equivalent", *from as u32);
            assert!(in_cp932(*to), "{to} is not in CP932");
        }
    }

    #[test]
    fn names_cp932_holds_pass_unchanged() {
        // 髙 and 﨑 are IBM/NEC extensions: outside JIS X 0208, inside CP932.
        for name in ["山田　太郎", "髙橋　健", "山﨑　花子", "ﾔﾏﾀﾞ ﾀﾛｳ", "東京都千代田区１－２"] {
            let fitted = fit_cp932(name);
            assert_eq!(fitted.text, name);
            assert!(fitted.replaced.is_empty(), "{name}: {:?}", fitted.replaced);
        }
    }

    #[test]
    fn each_step_of_the_rule_written_out() {
        // 𠮷 (U+20BB7, JIS X 0213 plane 2): the everyday 吉.
        let fitted = fit_cp932("𠮷田　花子");
        assert_eq!(fitted.text, "吉田　花子");
        assert_eq!(fitted.replaced, vec![Replacement { position: 1, original: "𠮷".into(), written: '吉' }]);
        assert_eq!(fitted.replaced[0].describe(), "1文字目 U+20BB7→吉");
        // 葛 with the IVS U+E0100: 葛 stays, the selector goes, and that is said.
        let fitted = fit_cp932("葛\u{E0100}城　誠");
        assert_eq!(fitted.text, "葛城　誠");
        assert_eq!(fitted.replaced[0].describe(), "1文字目 U+845B U+E0100→葛");
        // A character with neither a CP932 form nor an equivalent: ゲタ, at its position
        // counted without the selector before it.
        let fitted = fit_cp932("辻\u{E0101} \u{2A6B2}");
        assert_eq!(fitted.text, "辻 〓");
        assert_eq!(fitted.replaced.len(), 2);
        assert_eq!(fitted.replaced[1], Replacement { position: 3, original: "\u{2A6B2}".into(), written: GETA });
    }

    #[test]
    fn a_fitted_text_always_encodes_and_has_one_character_per_registered_one() {
        use proptest::prelude::*;
        proptest!(|(text in "\\PC{0,20}")| {
            let fitted = fit_cp932(&text);
            let (_, _, unmappable) = encoding_rs::SHIFT_JIS.encode(&fitted.text);
            prop_assert!(!unmappable, "{:?} still has characters CP932 lacks", fitted.text);
            let registered = text.chars().filter(|c| !is_variation_selector(*c)).count();
            let orphans = fitted.replaced.iter().filter(|r| r.original.chars().all(is_variation_selector)).count();
            prop_assert_eq!(fitted.text.chars().count(), registered + orphans);
        });
    }
}
