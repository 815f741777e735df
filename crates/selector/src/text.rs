//! The characters Mercure 1.0 forbids in topics, matcher values, update ids and event types
//! (draft-dunglas-mercure-08, "Terminology" and "Publication"): C0 controls (U+0000-U+001F),
//! DEL (U+007F), C1 controls (U+0080-U+009F) and format characters (general category `Cf`:
//! the bidirectional and zero-width controls, invisible and so a way to spoof identifiers).

use icu_properties::CodePointMapData;
use icu_properties::props::GeneralCategory;

/// The first forbidden character of `s`, if any.
///
/// ```
/// use ssehub_selector::forbidden_char;
///
/// assert_eq!(forbidden_char("https://example.com/books/1"), None);
/// assert_eq!(forbidden_char("a\u{202E}b"), Some('\u{202E}')); // RIGHT-TO-LEFT OVERRIDE
/// assert_eq!(forbidden_char("a\u{85}"), Some('\u{85}')); // NEXT LINE (C1)
/// ```
pub fn forbidden_char(s: &str) -> Option<char> {
    let categories = CodePointMapData::<GeneralCategory>::new();
    s.chars().find(|&c| {
        // Printable ASCII is the common case: one comparison, no table lookup.
        if (' '..='~').contains(&c) {
            return false;
        }
        c.is_control() || categories.get(c) == GeneralCategory::Format
    })
}

/// A forbidden character for an error message: its code point (`U+202E`), since printing the
/// character itself would show nothing.
pub fn describe_char(c: char) -> String {
    format!("U+{:04X}", c as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forbidden_ranges() {
        for c in ['\0', '\t', '\n', '\u{1F}', '\u{7F}', '\u{80}', '\u{9F}'] {
            assert_eq!(forbidden_char(&format!("a{c}")), Some(c), "{c:?}");
        }
        // Cf: soft hyphen, Arabic letter mark, zero-width space/joiners, bidi controls, word
        // joiner, BOM, tags.
        for c in [
            '\u{AD}',
            '\u{61C}',
            '\u{200B}',
            '\u{200D}',
            '\u{202A}',
            '\u{2066}',
            '\u{2060}',
            '\u{FEFF}',
            '\u{E0001}',
            '\u{E007F}',
        ] {
            assert_eq!(forbidden_char(&format!("x{c}y")), Some(c), "{c:?}");
        }
        for ok in [
            "",
            "https://exämple.com/ü/日本/😀",
            "~ !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}",
            "\u{A0}",
        ] {
            assert_eq!(forbidden_char(ok), None, "{ok:?}");
        }
        assert_eq!(describe_char('\u{202E}'), "U+202E");
    }
}
