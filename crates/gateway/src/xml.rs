//! The XML of the file interface: decoding (UTF-8 with or without BOM, Shift_JIS), a small
//! element tree read with DTDs and entity declarations refused, and a writer that encodes in
//! the character set a request asked for.
//!
//! Public clients send what they like (unknown elements, absent optional ones, padding), so the
//! reader keeps the whole tree and the request parsers pick what they need by name.

use std::fmt::Write as _;

use onshi_domain::markup::forbidden_in_xml;
use quick_xml::events::Event;

/// The character sets of the interface (CharacterCodeIdentifier, DOMAIN.md §1 "Encoding").
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Charset {
    Utf8,
    ShiftJis,
}

impl Charset {
    /// CharacterCodeIdentifier: `0` UTF-8 and `1` Shift_JIS as public clients and samples use
    /// them (MTS, OQF); `2` is Shift_JIS in one client's code table (oqsFunc OQSCD005), so it is
    /// read as Shift_JIS too. Anything else is not a request for a character set.
    pub fn from_identifier(code: &str) -> Option<Charset> {
        match code.trim() {
            "0" => Some(Charset::Utf8),
            "1" | "2" => Some(Charset::ShiftJis),
            _ => None,
        }
    }

    /// An encoding's name as XML declarations and the configuration write it, any case.
    pub fn from_name(name: &str) -> Option<Charset> {
        match name.to_ascii_lowercase().as_str() {
            "utf-8" | "utf8" => Some(Charset::Utf8),
            "shift_jis" | "shift-jis" | "sjis" | "x-sjis" | "windows-31j" | "cp932" | "ms932" | "ms_kanji" => Some(Charset::ShiftJis),
            _ => None,
        }
    }

    /// The identifier this gateway writes back.
    pub fn identifier(self) -> &'static str {
        match self {
            Charset::Utf8 => "0",
            Charset::ShiftJis => "1",
        }
    }

    fn declared_name(self) -> &'static str {
        match self {
            Charset::Utf8 => "UTF-8",
            Charset::ShiftJis => "Shift_JIS",
        }
    }
}

/// Why a request file could not be read. Each names what is wrong and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    #[error("the file declares encoding {0:?}; write requests in UTF-8 or Shift_JIS")]
    UnsupportedEncoding(String),
    #[error("line {line}: the bytes are not valid {charset}; save the file as the encoding its XML declaration names")]
    BadBytes { charset: &'static str, line: usize },
    #[error("a DOCTYPE is not accepted (DTDs and external entities are refused); remove the <!DOCTYPE …> line")]
    Doctype,
    #[error("entity &{0}; is not defined; only &amp; &lt; &gt; &quot; &apos; and character references are accepted")]
    UnknownEntity(String),
    #[error("the XML ends before <{0}> is closed; the file is incomplete")]
    Truncated(String),
    #[error("the file is empty")]
    Empty,
    #[error("malformed XML at byte {position}: {detail}")]
    Malformed { position: u64, detail: String },
    #[error("the root element is <{0}>, not <XmlMsg>")]
    NotXmlMsg(String),
    #[error(
        "the file is {bytes} bytes; request files of this kind over {limit} bytes are refused unread (a real one is a few KB; a 一括照会 upload of the most entries the center takes is about 5 MB)"
    )]
    TooLarge { bytes: u64, limit: u64 },
    #[error("the file holds more than {0} elements; no request of this kind holds that many (a single check holds about 20)")]
    TooManyElements(usize),
    #[error("<{element}> holds more than {limit} characters; no field of a request is that long")]
    TextTooLong { element: String, limit: usize },
    #[error("elements are nested more than {0} levels deep; no request of the interface is")]
    TooDeep(usize),
    #[error("line {line}: character U+{code:04X} is not allowed in XML (a control character); remove it from the request")]
    ForbiddenCharacter { line: usize, code: u32 },
}

/// What one request file may hold; beyond any of these it is refused with the limit named.
/// The size is checked from the file's metadata before a byte is read (see `files`), so a
/// 50 MB file costs nothing but its `.err`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// File size in bytes.
    pub bytes: u64,
    /// Elements in the document, counted as they are opened.
    pub elements: usize,
    /// Characters of text in one element (whitespace between elements is not text).
    pub text_chars: usize,
}

impl Limits {
    /// A single check, a 一括照会 download, a drug or checkup request: about 1 KB and 20
    /// elements in the field. 1 MiB and 1,000 elements are far beyond any of them; 1,000
    /// characters hold any 記号, 番号 or ArbitraryFileIdentifier many times over.
    pub const REQUEST: Limits = Limits { bytes: 1 << 20, elements: 1_000, text_chars: 1_000 };
    /// A 一括照会 upload: at most 10,000 entries (the center's batch size), each about 500
    /// bytes and 8 elements, so about 5 MB and 80,000 elements; 16 MiB and 200,000 leave room
    /// for verbose writers without letting a file run to hundreds of megabytes.
    pub const BULK_UPLOAD: Limits = Limits { bytes: 16 << 20, elements: 200_000, text_chars: 1_000 };
    /// Documents this gateway wrote itself (answers read back by tools and tests): no limit
    /// beyond the size of memory.
    pub const OWN: Limits = Limits { bytes: u64::MAX, elements: usize::MAX, text_chars: usize::MAX };
}

/// Far deeper than any request of the interface (they nest five or six levels).
pub const MAX_DEPTH: usize = 32;

impl XmlError {
    /// An error that a writer still at work would cause: read again later before refusing.
    pub fn may_be_incomplete(&self) -> bool {
        // Zero bytes are what a writer that sized the file first leaves where it has not written yet.
        matches!(
            self,
            XmlError::Truncated(_)
                | XmlError::Empty
                | XmlError::Malformed { .. }
                | XmlError::BadBytes { .. }
                | XmlError::ForbiddenCharacter { code: 0, .. }
        )
    }
}

/// The line (from 1) of a byte offset.
fn line_at(text: &str, byte: usize) -> usize {
    text.as_bytes()[..byte.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1
}

/// Decodes a request file: a UTF-8 BOM means UTF-8; otherwise the XML declaration's encoding
/// (UTF-8 when none is declared).
pub fn decode(bytes: &[u8]) -> Result<(String, Charset), XmlError> {
    if let Some(rest) = bytes.strip_prefix(b"\xEF\xBB\xBF") {
        return decode_as(rest, Charset::Utf8).map(|text| (text, Charset::Utf8));
    }
    let charset = match declared_encoding(bytes) {
        None => Charset::Utf8,
        Some(name) => Charset::from_name(&name).ok_or(XmlError::UnsupportedEncoding(name))?,
    };
    decode_as(bytes, charset).map(|text| (text, charset))
}

fn decode_as(bytes: &[u8], charset: Charset) -> Result<String, XmlError> {
    let encoding = match charset {
        Charset::Utf8 => encoding_rs::UTF_8,
        Charset::ShiftJis => encoding_rs::SHIFT_JIS,
    };
    let (text, had_errors) = encoding.decode_without_bom_handling(bytes);
    if had_errors {
        let line = line_at(&text, text.find('\u{FFFD}').unwrap_or(0));
        return Err(XmlError::BadBytes { charset: charset.declared_name(), line });
    }
    Ok(text.into_owned())
}

/// The `encoding="…"` of the XML declaration, read as ASCII (both accepted encodings keep
/// ASCII as is).
fn declared_encoding(bytes: &[u8]) -> Option<String> {
    let head = &bytes[..bytes.len().min(200)];
    let head = String::from_utf8_lossy(head);
    let declaration = head.strip_prefix("<?xml")?;
    let declaration = &declaration[..declaration.find("?>")?];
    let at = declaration.find("encoding")?;
    let rest = declaration[at + "encoding".len()..].trim_start().strip_prefix('=')?.trim_start();
    let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let value = &rest[1..];
    Some(value[..value.find(quote)?].to_string())
}

/// An element with its text and children; attributes are not used by the interface.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    pub text: String,
    pub children: Vec<Element>,
}

impl Element {
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The trimmed text of the first child `name`, `None` when absent or blank.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.trim()).filter(|t| !t.is_empty())
    }

    /// The first element named `name` at any depth below this one.
    pub fn find(&self, name: &str) -> Option<&Element> {
        self.children.iter().find_map(|c| if c.name == name { Some(c) } else { c.find(name) })
    }
}

/// The character set an `.err` for these bytes is written in: the one the request's
/// CharacterCodeIdentifier asks for (0 UTF-8, 1 or 2 Shift_JIS), otherwise the request's own
/// (BOM or declaration), otherwise UTF-8. Read from the bytes as they are, since the request
/// may be refused for not parsing at all; both encodings keep ASCII as is.
pub fn err_charset(bytes: &[u8]) -> Charset {
    const TAG: &[u8] = b"<CharacterCodeIdentifier>";
    let asked = bytes.windows(TAG.len()).position(|w| w == TAG).and_then(|at| {
        let value = &bytes[at + TAG.len()..];
        let value = &value[..value.len().min(16)];
        let end = value.iter().position(|&b| b == b'<')?;
        Charset::from_identifier(std::str::from_utf8(&value[..end]).ok()?)
    });
    asked.unwrap_or_else(|| {
        if bytes.starts_with(b"\xEF\xBB\xBF") {
            return Charset::Utf8;
        }
        declared_encoding(bytes).and_then(|name| Charset::from_name(&name)).unwrap_or(Charset::Utf8)
    })
}

/// Parses a document this gateway wrote (an answer) into its root element, `<XmlMsg>`.
pub fn parse(text: &str) -> Result<Element, XmlError> {
    parse_within(text, Limits::OWN)
}

/// Parses a decoded request into its root element, which must be `<XmlMsg>`, refusing it
/// once it holds more elements or longer text than `limits` allow.
pub fn parse_within(text: &str, limits: Limits) -> Result<Element, XmlError> {
    if text.trim().is_empty() {
        return Err(XmlError::Empty);
    }
    // Refused, not dropped: an answer echoing one would be a file the レセコン's parser refuses.
    if let Some((at, c)) = text.char_indices().find(|&(_, c)| forbidden_in_xml(c)) {
        return Err(XmlError::ForbiddenCharacter { line: line_at(text, at), code: c as u32 });
    }
    let mut reader = quick_xml::Reader::from_str(text);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut elements: usize = 0;
    let count = |elements: &mut usize| {
        *elements += 1;
        if *elements > limits.elements { Err(XmlError::TooManyElements(limits.elements)) } else { Ok(()) }
    };
    loop {
        let position = reader.buffer_position();
        let event = reader
            .read_event()
            .map_err(|e| XmlError::Malformed { position: reader.error_position().max(position), detail: e.to_string() })?;
        match event {
            Event::DocType(_) => return Err(XmlError::Doctype),
            Event::Start(start) => {
                count(&mut elements)?;
                if stack.len() >= MAX_DEPTH {
                    return Err(XmlError::TooDeep(MAX_DEPTH));
                }
                stack.push(Element { name: start.local_name().as_ref().to_string(), ..Element::default() })
            }
            Event::Empty(start) => {
                count(&mut elements)?;
                let element = Element { name: start.local_name().as_ref().to_string(), ..Element::default() };
                attach(&mut stack, &mut root, element, position)?;
            }
            Event::End(_) => {
                let element =
                    stack.pop().ok_or_else(|| XmlError::Malformed { position, detail: "closing tag without an opening one".into() })?;
                attach(&mut stack, &mut root, element, position)?;
            }
            Event::Text(text) => push_text(&mut stack, &text.xml10_content(), position, limits)?,
            Event::CData(data) => push_text(&mut stack, &data.into_inner(), position, limits)?,
            Event::GeneralRef(reference) => {
                let name = reference.xml10_content().to_string();
                let c = match reference.resolve_char_ref() {
                    Ok(Some(c)) => c,
                    Ok(None) => predefined_entity(&name).ok_or(XmlError::UnknownEntity(name))?,
                    Err(e) => return Err(XmlError::Malformed { position, detail: e.to_string() }),
                };
                if forbidden_in_xml(c) {
                    return Err(XmlError::ForbiddenCharacter { line: line_at(text, position as usize), code: c as u32 });
                }
                push_text(&mut stack, c.encode_utf8(&mut [0; 4]), position, limits)?;
            }
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if let Some(open) = stack.pop() {
        return Err(XmlError::Truncated(open.name));
    }
    let root = root.ok_or(XmlError::Empty)?;
    if root.name != "XmlMsg" {
        return Err(XmlError::NotXmlMsg(root.name));
    }
    Ok(root)
}

fn predefined_entity(name: &str) -> Option<char> {
    Some(match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        _ => return None,
    })
}

fn attach(stack: &mut [Element], root: &mut Option<Element>, element: Element, position: u64) -> Result<(), XmlError> {
    match stack.last_mut() {
        Some(parent) => {
            // Requests have no mixed content: whitespace before a child is indentation, not
            // text, and is not kept (so a 一括照会 body does not gather a line per entry).
            if parent.text.trim().is_empty() {
                parent.text.clear();
            }
            parent.children.push(element)
        }
        None if root.is_none() => *root = Some(element),
        None => return Err(XmlError::Malformed { position, detail: format!("a second root element <{}>", element.name) }),
    }
    Ok(())
}

fn push_text(stack: &mut [Element], text: &str, position: u64, limits: Limits) -> Result<(), XmlError> {
    match stack.last_mut() {
        Some(element) => {
            element.text.push_str(text);
            // Characters never outnumber bytes, so only a long text is counted; whitespace
            // alone is indentation (bounded by the file's size), not a field's text.
            if element.text.len() > limits.text_chars && element.text.chars().count() > limits.text_chars && !element.text.trim().is_empty()
            {
                return Err(XmlError::TextTooLong { element: element.name.clone(), limit: limits.text_chars });
            }
        }
        None if text.trim().is_empty() => {}
        None => return Err(XmlError::Malformed { position, detail: "text outside the root element".into() }),
    }
    Ok(())
}

/// Writes a result document element by element, escaping text.
pub struct XmlWriter {
    out: String,
    open: Vec<&'static str>,
    charset: Charset,
}

impl XmlWriter {
    pub fn new(charset: Charset) -> XmlWriter {
        let mut out = String::with_capacity(4096);
        let _ = writeln!(out, "<?xml version=\"1.0\" encoding=\"{}\" standalone=\"no\"?>", charset.declared_name());
        XmlWriter { out, open: Vec::new(), charset }
    }

    /// The charset the file is written in.
    pub fn charset(&self) -> Charset {
        self.charset
    }

    pub fn open(&mut self, name: &'static str) -> &mut Self {
        self.indent();
        let _ = writeln!(self.out, "<{name}>");
        self.open.push(name);
        self
    }

    pub fn close(&mut self) -> &mut Self {
        if let Some(name) = self.open.pop() {
            self.indent();
            let _ = writeln!(self.out, "</{name}>");
        }
        self
    }

    /// `<name>value</name>`.
    pub fn leaf(&mut self, name: &str, value: &str) -> &mut Self {
        self.indent();
        let _ = write!(self.out, "<{name}>");
        onshi_domain::markup::escape_into(&mut self.out, value);
        let _ = writeln!(self.out, "</{name}>");
        self
    }

    /// A leaf only when there is a value.
    pub fn opt(&mut self, name: &str, value: Option<&str>) -> &mut Self {
        if let Some(value) = value {
            self.leaf(name, value);
        }
        self
    }

    fn indent(&mut self) {
        for _ in 0..self.open.len() {
            self.out.push_str("  ");
        }
    }

    /// The document in its character set. Characters Shift_JIS cannot hold become numeric
    /// character references, which every XML reader resolves.
    pub fn finish(mut self) -> Vec<u8> {
        while !self.open.is_empty() {
            self.close();
        }
        encode(self.out, self.charset)
    }
}

/// `text` in `charset`; characters Shift_JIS cannot hold become numeric character references.
pub fn encode(text: String, charset: Charset) -> Vec<u8> {
    match charset {
        Charset::Utf8 => text.into_bytes(),
        Charset::ShiftJis => encoding_rs::SHIFT_JIS.encode(&text).0.into_owned(),
    }
}

/// The document with the text of every `<element>` replaced by asterisks, in its own charset;
/// `None` when it cannot be decoded or an element is not closed.
pub fn redact(bytes: &[u8], element: &str) -> Option<Vec<u8>> {
    let (text, charset) = decode(bytes).ok()?;
    let (open, close) = (format!("<{element}>"), format!("</{element}>"));
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(start) = rest.find(&open) {
        let inner = start + open.len();
        let end = inner + rest[inner..].find(&close)?;
        out.push_str(&rest[..inner]);
        out.extend(std::iter::repeat_n('*', rest[inner..end].chars().count()));
        rest = &rest[end..];
    }
    out.push_str(rest);
    Some(encode(out, charset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_utf8_with_bom_and_shift_jis() {
        let text = "<?xml version='1.0' encoding='UTF-8' standalone='no'?><XmlMsg><A>山田</A></XmlMsg>";
        let mut with_bom = b"\xEF\xBB\xBF".to_vec();
        with_bom.extend_from_slice(text.as_bytes());
        let (decoded, charset) = decode(&with_bom).unwrap();
        assert_eq!(charset, Charset::Utf8);
        assert_eq!(parse(&decoded).unwrap().value("A"), Some("山田"));

        let sjis_text = text.replace("UTF-8", "Shift_JIS");
        let sjis = encoding_rs::SHIFT_JIS.encode(&sjis_text).0.into_owned();
        assert_ne!(sjis, sjis_text.as_bytes());
        let (decoded, charset) = decode(&sjis).unwrap();
        assert_eq!(charset, Charset::ShiftJis);
        assert_eq!(parse(&decoded).unwrap().value("A"), Some("山田"));
    }

    #[test]
    fn refuses_doctype_unknown_entities_and_other_encodings() {
        let xxe = r#"<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><XmlMsg><A>&e;</A></XmlMsg>"#;
        assert_eq!(parse(xxe), Err(XmlError::Doctype));
        assert_eq!(parse("<XmlMsg><A>&e;</A></XmlMsg>"), Err(XmlError::UnknownEntity("e".into())));
        assert_eq!(parse("<XmlMsg><A>&amp;&#x5C71;</A></XmlMsg>").unwrap().value("A"), Some("&山"));
        assert_eq!(decode(b"<?xml version=\"1.0\" encoding=\"EUC-JP\"?><XmlMsg/>"), Err(XmlError::UnsupportedEncoding("EUC-JP".into())));
    }

    #[test]
    fn names_truncated_and_foreign_documents() {
        assert_eq!(parse("<XmlMsg><MessageHeader><A>1</A>"), Err(XmlError::Truncated("MessageHeader".into())));
        assert!(parse("<XmlMsg><A>1</B></XmlMsg>").unwrap_err().to_string().contains("malformed XML"));
        assert_eq!(parse("<html></html>"), Err(XmlError::NotXmlMsg("html".into())));
        assert_eq!(parse("  "), Err(XmlError::Empty));
        let bad = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<XmlMsg>\n<A>\xff</A></XmlMsg>";
        assert_eq!(decode(bad), Err(XmlError::BadBytes { charset: "UTF-8", line: 3 }));
    }

    #[test]
    fn refuses_control_characters_raw_or_as_references() {
        assert_eq!(parse("<XmlMsg>\n<A>a\u{1}b</A></XmlMsg>"), Err(XmlError::ForbiddenCharacter { line: 2, code: 1 }));
        assert_eq!(parse("<XmlMsg>\n\n<A>&#1;</A></XmlMsg>"), Err(XmlError::ForbiddenCharacter { line: 3, code: 1 }));
        assert_eq!(parse("<XmlMsg><A>&#xFFFF;</A></XmlMsg>"), Err(XmlError::ForbiddenCharacter { line: 1, code: 0xFFFF }));
        assert!(parse("<XmlMsg><A>a\tb&#9;&#10;</A></XmlMsg>").is_ok(), "tab and line feed are allowed");
        let zeros = parse("<XmlMsg><A>1</A>\0\0\0").unwrap_err();
        assert!(zeros.may_be_incomplete(), "zeros where a writer has not written yet");
        assert!(!XmlError::ForbiddenCharacter { line: 1, code: 1 }.may_be_incomplete());
        assert!(zeros.to_string().contains("U+0000"), "{zeros}");
    }

    #[test]
    fn refuses_elements_nested_deeper_than_any_request() {
        // A million levels would overflow the stack when the tree is searched or dropped.
        let depth = 1_000_000;
        let text = format!("<XmlMsg>{}{}</XmlMsg>", "<A>".repeat(depth), "</A>".repeat(depth));
        assert_eq!(parse(&text), Err(XmlError::TooDeep(MAX_DEPTH)));
        let fine = format!("<XmlMsg>{}1{}</XmlMsg>", "<A>".repeat(MAX_DEPTH - 1), "</A>".repeat(MAX_DEPTH - 1));
        assert_eq!(parse(&fine).unwrap().find("A").map(|a| a.name.as_str()), Some("A"));
    }

    #[test]
    fn refuses_more_elements_or_longer_text_than_the_limits_allow() {
        let limits = Limits { bytes: 1 << 20, elements: 5, text_chars: 4 };
        assert!(parse_within("<XmlMsg><A>abcd</A><B/><C>山田太郎</C><D/></XmlMsg>", limits).is_ok(), "exactly at the limits");
        assert_eq!(parse_within("<XmlMsg><A/><B/><C/><D/><E/></XmlMsg>", limits), Err(XmlError::TooManyElements(5)));
        assert_eq!(parse_within("<XmlMsg><A>abcde</A></XmlMsg>", limits), Err(XmlError::TextTooLong { element: "A".into(), limit: 4 }));
        assert_eq!(
            parse_within("<XmlMsg><A>ab&amp;&amp;c</A></XmlMsg>", limits),
            Err(XmlError::TextTooLong { element: "A".into(), limit: 4 }),
            "references count as the characters they stand for"
        );
        // Indentation between elements is not text, however many entries a body holds.
        let indented = format!("<XmlMsg>{}</XmlMsg>", "\n      <A>1</A>".repeat(4));
        let root = parse_within(&indented, limits).unwrap();
        assert_eq!((root.text.as_str(), root.children.len()), ("", 4));
        assert!(XmlError::TooManyElements(1000).to_string().contains("1000"));
        assert!(!XmlError::TextTooLong { element: "A".into(), limit: 1 }.may_be_incomplete());
    }

    #[test]
    fn an_err_file_takes_the_charset_the_request_asked_for_or_its_own() {
        let with = |code: &str, declared: &str| {
            format!("<?xml version=\"1.0\" encoding=\"{declared}\"?><XmlMsg><MessageHeader>{code}</MessageHeader><A>")
        };
        let asked = |n: &str| format!("<CharacterCodeIdentifier>{n}</CharacterCodeIdentifier>");
        assert_eq!(err_charset(with(&asked("1"), "UTF-8").as_bytes()), Charset::ShiftJis, "1 asks for Shift_JIS");
        assert_eq!(err_charset(with(&asked(" 2 "), "UTF-8").as_bytes()), Charset::ShiftJis, "2 is read as Shift_JIS");
        assert_eq!(err_charset(with(&asked("0"), "Shift_JIS").as_bytes()), Charset::Utf8, "0 asks for UTF-8");
        assert_eq!(err_charset(with(&asked("9"), "Shift_JIS").as_bytes()), Charset::ShiftJis, "otherwise the request's own");
        assert_eq!(err_charset(with("", "windows-31j").as_bytes()), Charset::ShiftJis);
        assert_eq!(err_charset(b"\xEF\xBB\xBF<XmlMsg>"), Charset::Utf8);
        assert_eq!(err_charset(b"\x00\xff garbage"), Charset::Utf8, "UTF-8 when nothing says otherwise");
    }

    #[test]
    fn redacts_every_occurrence_of_an_element_in_its_charset() {
        let text = "<?xml version=\"1.0\" encoding=\"Shift_JIS\"?><XmlMsg><N>１２3</N><M>山</M><N>45</N></XmlMsg>";
        let sjis = encoding_rs::SHIFT_JIS.encode(text).0.into_owned();
        let (redacted, charset) = decode(&redact(&sjis, "N").unwrap()).unwrap();
        assert_eq!(charset, Charset::ShiftJis);
        assert!(redacted.contains("<N>***</N><M>山</M><N>**</N>"), "{redacted}");
        assert_eq!(redact(b"<XmlMsg><N>1</XmlMsg>", "N"), None, "an element not closed");
    }

    #[test]
    fn writes_escaped_text_in_the_asked_charset() {
        let mut w = XmlWriter::new(Charset::ShiftJis);
        w.open("XmlMsg").leaf("Name", "田中 <&> 𠮷");
        let bytes = w.finish();
        let (text, charset) = decode(&bytes).unwrap();
        assert_eq!(charset, Charset::ShiftJis);
        assert_eq!(parse(&text).unwrap().value("Name"), Some("田中 <&> 𠮷"));
    }
}
