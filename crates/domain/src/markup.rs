//! Escaping text for HTML and XML (element content and attribute values), shared by the
//! receipt report, the reception page and the result files.

/// Appends `text` to `out` with `& < > " '` escaped.
pub fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
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
}
