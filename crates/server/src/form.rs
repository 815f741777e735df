//! Strict `application/x-www-form-urlencoded` decoding.
//!
//! Generic form decoders replace invalid UTF-8 with U+FFFD, which would silently corrupt a
//! publisher's data. Ours refuses it, so the publisher learns of the problem.

use std::borrow::Cow;

use percent_encoding::percent_decode;

/// Why a form or query string could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: not valid UTF-8 after percent-decoding")]
pub struct FormError {
    /// The field name (lossily decoded) whose name or value was invalid.
    pub field: String,
}

/// Decodes `a=1&b=2&a=3` into pairs, in order; `+` means space; a pair without `=` has an
/// empty value; empty pairs are skipped.
pub fn decode_pairs(input: &[u8]) -> Result<Vec<(String, String)>, FormError> {
    input
        .split(|&b| b == b'&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = match pair.iter().position(|&b| b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &b""[..]),
            };
            let key = decode(k).map_err(|_| FormError { field: lossy(k) })?;
            let value = decode(v).map_err(|_| FormError { field: key.clone() })?;
            Ok((key, value))
        })
        .collect()
}

fn decode(raw: &[u8]) -> Result<String, std::string::FromUtf8Error> {
    let plus_as_space: Cow<'_, [u8]> = if raw.contains(&b'+') {
        Cow::Owned(
            raw.iter()
                .map(|&b| if b == b'+' { b' ' } else { b })
                .collect(),
        )
    } else {
        Cow::Borrowed(raw)
    };
    let bytes: Vec<u8> = percent_decode(&plus_as_space).collect();
    String::from_utf8(bytes)
}

fn lossy(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_pairs_in_order_with_repeats() {
        let pairs = decode_pairs(b"topic=a&data=x+y%2Bz&topic=b&private&&id=%E2%9C%93").unwrap();
        let want = [
            ("topic", "a"),
            ("data", "x y+z"),
            ("topic", "b"),
            ("private", ""),
            ("id", "✓"),
        ];
        let got: Vec<_> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn refuses_invalid_utf8() {
        assert_eq!(
            decode_pairs(b"topic=a&data=%FF%FE").unwrap_err().field,
            "data"
        );
        assert_eq!(decode_pairs(b"da%C3ta=1").unwrap_err().field, "da%C3ta");
        assert!(decode_pairs(b"data=\xff").is_err());
    }

    #[test]
    fn keeps_malformed_percent_sequences_literally() {
        assert_eq!(
            decode_pairs(b"data=100%").unwrap(),
            [("data".into(), "100%".into())]
        );
    }
}
