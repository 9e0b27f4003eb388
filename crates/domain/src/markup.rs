//! Escaping text for HTML and XML (element content and attribute values), shared by the
//! receipt report, the reception page and the result files.

/// Appends `text` to `out` with `& < > " '` escaped. Characters that XML 1.0 cannot carry at
/// all (C0 controls but tab, line feed and carriage return; U+FFFE, U+FFFF) become U+FFFD, so
/// that what was typed or sent is still seen to be odd and the document stays well-formed.
pub fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            c if forbidden_in_xml(c) => out.push('\u{FFFD}'),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// Whether XML 1.0 forbids `c` anywhere in a document, even as a character reference: the C0
/// controls but tab, line feed and carriage return, and U+FFFE/U+FFFF.
pub fn forbidden_in_xml(c: char) -> bool {
    (c < ' ' && !matches!(c, '\t' | '\n' | '\r')) || matches!(c, '\u{FFFE}' | '\u{FFFF}')
}

/// `text` with `& < > " '` escaped.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    escape_into(&mut out, text);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_the_five_characters_and_keeps_the_rest() {
        assert_eq!(super::escape("a<b>&\"c\"'d' 山田"), "a&lt;b&gt;&amp;&quot;c&quot;&#39;d&#39; 山田");
    }

    #[test]
    fn characters_no_document_can_carry_are_replaced() {
        assert_eq!(super::escape("1\u{0}2\u{1b}3\u{FFFF}"), "1\u{FFFD}2\u{FFFD}3\u{FFFD}");
        assert_eq!(super::escape("a\tb\r\nc"), "a\tb\r\nc");
    }
}
