//! Hub URLs and HTTP error text shared by the client-side commands.

use reqwest::Url;
use ssehub_server::MERCURE_PATH;

use crate::UsageError;

/// Parses an `http` or `https` URL given on the command line; `what` names it in the error.
pub fn parse_url(input: &str, what: &str) -> Result<Url, UsageError> {
    let url =
        Url::parse(input).map_err(|e| UsageError(format!("invalid {what} {input:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(UsageError(format!(
            "invalid {what} {input:?}: the scheme must be http or https, not {:?}",
            url.scheme()
        )));
    }
    Ok(url)
}

/// The Mercure endpoint of the hub at `base`: `base` itself when its path already ends with
/// `/.well-known/mercure`, else `base` with that appended to its path (its query is kept).
pub fn mercure_url(base: &str, what: &str) -> Result<Url, UsageError> {
    let mut url = parse_url(base, what)?;
    if !url.path().ends_with(MERCURE_PATH) {
        let path = format!("{}{MERCURE_PATH}", url.path().trim_end_matches('/'));
        url.set_path(&path);
    }
    Ok(url)
}

/// The Mercure subscribe URL at the hub at `base`, with `matchers` as its query: each one a
/// `(parameter, value)` pair such as `("match", "https://example.com/books/1")`, the value
/// percent-encoded.
pub fn subscribe_url(base: &str, matchers: &[(&str, &str)]) -> Result<Url, UsageError> {
    let mut url = mercure_url(base, "hub URL")?;
    {
        let mut query = url.query_pairs_mut();
        for (name, value) in matchers {
            query.append_pair(name, value);
        }
    }
    Ok(url)
}

/// An HTTP client error's one-line text without the parts that only repeat what the message
/// around it says (`error sending request for url (...)`, `client error (Connect)`).
pub fn tidy_http_error(text: &str) -> String {
    let parts: Vec<&str> = text
        .split(": ")
        .filter(|part| {
            !(part.starts_with("error sending request for url (")
                || *part == "client error (Connect)")
        })
        .collect();
    if parts.is_empty() {
        text.to_owned()
    } else {
        parts.join(": ")
    }
}

/// The first non-empty line of a server's error body, shortened to a sensible length.
pub fn first_line(body: &str) -> &str {
    let line = body
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    match line.char_indices().nth(200) {
        Some((end, _)) => &line[..end],
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mercure_path_is_appended_once() {
        for (base, want) in [
            ("http://h:3000", "http://h:3000/.well-known/mercure"),
            ("http://h:3000/", "http://h:3000/.well-known/mercure"),
            ("http://h/prefix/", "http://h/prefix/.well-known/mercure"),
            (
                "https://h/.well-known/mercure",
                "https://h/.well-known/mercure",
            ),
            (
                "http://h/.well-known/mercure?x=1",
                "http://h/.well-known/mercure?x=1",
            ),
        ] {
            assert_eq!(
                mercure_url(base, "hub URL").unwrap().as_str(),
                want,
                "{base}"
            );
        }
    }

    #[test]
    fn matchers_are_percent_encoded_parameters() {
        let matchers = [
            ("match", "a b"),
            ("match", "https://e.com/books/1#x"),
            ("match_urlpattern", "https://e.com/books/:id"),
            ("match", "&=?"),
        ];
        let url = subscribe_url("http://h", &matchers).unwrap();
        assert_eq!(
            url.as_str(),
            "http://h/.well-known/mercure?match=a+b&match=https%3A%2F%2Fe.com%2Fbooks%2F1%23x\
             &match_urlpattern=https%3A%2F%2Fe.com%2Fbooks%2F%3Aid&match=%26%3D%3F"
        );
        // The 0.x parameter, for a legacy hub, is encoded the same way.
        let url = subscribe_url("http://h/", &[("topic", "https://e.com/books/{id}")]).unwrap();
        assert_eq!(
            url.as_str(),
            "http://h/.well-known/mercure?topic=https%3A%2F%2Fe.com%2Fbooks%2F%7Bid%7D"
        );
    }

    #[test]
    fn bad_urls_are_usage_errors() {
        for bad in ["", "nowhere", "ftp://h/x", "http://"] {
            let err = mercure_url(bad, "hub URL").unwrap_err().0;
            assert!(err.starts_with("invalid hub URL"), "{bad}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn http_errors_lose_their_repetitions() {
        assert_eq!(
            tidy_http_error(
                "error sending request for url (http://h:1/x?a=b): client error (Connect): \
                 tcp connect error: Connection refused (os error 111)"
            ),
            "tcp connect error: Connection refused (os error 111)"
        );
        assert_eq!(tidy_http_error("request timed out"), "request timed out");
        assert_eq!(
            tidy_http_error("error sending request for url (http://h/)"),
            "error sending request for url (http://h/)"
        );
    }

    #[test]
    fn first_line_skips_blank_lines_and_is_bounded() {
        assert_eq!(
            first_line("\n  invalid token: expired \nmore"),
            "invalid token: expired"
        );
        assert_eq!(first_line(""), "");
        assert_eq!(first_line(&"é".repeat(300)).chars().count(), 200);
    }
}
