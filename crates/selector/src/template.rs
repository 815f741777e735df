//! RFC 6570 URI templates, compiled once into an anchored regular expression that answers
//! "could this topic be an expansion of this template?".
//!
//! # What matches
//!
//! Every operator of RFC 6570 level 4 is supported: `{var}`, `{+var}`, `{#var}`, `{.var}`,
//! `{/var}`, `{;var}`, `{?var}` and `{&var}`, each with any number of comma-separated variables
//! and the `*` (explode) and `:N` (prefix) modifiers. The compiled matcher accepts the strings
//! RFC 6570 section 3.2 can produce, under these rules:
//!
//! * **Any variable may be undefined**, and undefined variables are omitted together with their
//!   separator (section 2.3), so `https://x/{?a,b}` matches `https://x/`, `https://x/?a=1`,
//!   `https://x/?b=2` and `https://x/?a=1&b=2`, but never `https://x/?b=2&a=1` (expansion keeps
//!   template order) nor `https://x/?c=3`. A variable may also be the empty string, so
//!   `https://x/books/{id}` matches `https://x/books/`.
//! * **Variables without `*` are strings.** RFC 6570 would also let them be lists or associative
//!   arrays (`{id}` expanding to `1,2`); we do not, because selectors are authorization rules and
//!   `https://x/books/{id}` should mean one book, not `https://x/books/1,2`.
//! * **Exploded variables (`*`) are matched permissively**: the value may be a string, a list
//!   or an associative array, so its region accepts the variable's allowed characters plus the
//!   operator's separator and `=` in any arrangement (for example `{?list*}` accepts
//!   `?list=red&list=green` and `?semi=%3B&dot=.`). For the operators without names (`{x}`,
//!   `{+x}`, `{#x}`, `{.x}`, `{/x}`), one exploded variable makes the whole expression's region
//!   permissive that way. This is a superset of the real expansions.
//! * **The prefix modifier `:N` is accepted and ignored**: the variable matches as if it had no
//!   modifier. Any prefix of a value is itself a value, so this is again a superset, and it keeps
//!   the compiled size independent of `N`.
//! * **Value characters** are those RFC 6570 leaves unencoded: unreserved characters
//!   (`A-Z a-z 0-9 - . _ ~`) and pct-encoded triplets for `{var}`, `{.var}`, `{/var}`, `{;var}`,
//!   `{?var}` and `{&var}`; additionally the reserved characters (`:/?#[]@!$&'()*+,;=`) for
//!   `{+var}` and `{#var}`. A lone `%` never matches. As a deliberate relaxation for topics that
//!   are IRIs rather than URIs, non-ASCII characters are accepted unencoded as well as
//!   pct-encoded.
//! * **Literal text** between expressions is matched byte for byte (it is escaped, so `.` and
//!   `+` mean themselves). RFC 6570 restricts which characters a literal may contain and
//!   pct-encodes some of them on expansion; topics are opaque strings in Mercure, so we accept
//!   any literal character except a stray `}` and compare it as written.
//!
//! # What is not a template
//!
//! Compilation reports "not a template" for text that is not a valid template: an unclosed
//! `{`, a `}` outside an expression, an empty expression, a reserved operator (`=`, `,`, `!`,
//! `@`, `|`), an invalid variable name (RFC 6570 `varname`: `ALPHA / DIGIT / _ / pct-encoded`,
//! with single dots between them), a prefix outside `1..=9999` or with a leading zero, or both
//! modifiers on one variable. The caller then treats the selector as an exact topic.
//!
//! # Bounds
//!
//! The compiled regex is a DFA (the crate's `dfa` module): matching is one table step per byte of the
//! topic, whatever the template, and the DFA's size is known exactly. What is bounded here is
//! compile cost and size, which grow with the number of variables: at most [`MAX_EXPRESSIONS`]
//! expressions and [`MAX_VARIABLES`] variables per template, and the DFA's size limits as a
//! backstop (with the 2048-byte selector cap, the largest templates build in about 10 ms into
//! 20-30 KiB in release builds). Exceeding them is an error, not a fallback to exact matching:
//! the text *is* a template, and silently matching it literally would surprise its author.

use crate::SelectorError;
use crate::dfa::Dfa;

/// Most expressions (`{...}`) one template may contain.
pub const MAX_EXPRESSIONS: usize = 32;

/// Most variables one template may contain, over all its expressions.
pub const MAX_VARIABLES: usize = 64;

/// Characters RFC 3986 calls unreserved, as the body of a regex class.
const UNRESERVED: &str = r"A-Za-z0-9\-\._\~";
/// RFC 3986 reserved characters (gen-delims and sub-delims), as the body of a regex class.
const RESERVED: &str = r"\:/\?\#\[\]@!\$\&'\(\)\*\+,;=";
/// A pct-encoded triplet.
const PCT: &str = "%[0-9A-Fa-f]{2}";
/// Any byte of a non-ASCII UTF-8 character: the IRI relaxation described above. Matching runs
/// on the bytes of a `&str`, so such a byte is always part of a whole, valid character, and a
/// one-byte class keeps the compiled program small (a Unicode class would be a UTF-8 automaton
/// repeated in every value).
const NON_ASCII: &str = r"\x80-\xFF";

/// A compiled URI template: its regex as an anchored DFA (see [`crate::dfa`]).
pub(crate) struct Template {
    dfa: Dfa,
}

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Template").finish_non_exhaustive()
    }
}

impl Template {
    /// Compiles `src` into a matcher. `Ok(None)` means "not a valid template".
    pub(crate) fn compile(src: &str) -> Result<Option<Template>, SelectorError> {
        let Some(pattern) = to_regex(src)? else {
            return Ok(None);
        };
        // The pattern is built from escaped pieces, so the only expected failure is size.
        let dfa = Dfa::bytes(&pattern).map_err(|_| SelectorError::TooComplex)?;
        Ok(Some(Template { dfa }))
    }

    /// Whether `topic` could be an expansion of the template.
    pub(crate) fn matches(&self, topic: &str) -> bool {
        self.dfa.is_match(topic.as_bytes())
    }

    /// Heap bytes held.
    pub(crate) fn heap_size(&self) -> usize {
        self.dfa.heap_size()
    }
}

/// What every topic a valid template `src` matches starts with: the literal text before its
/// first expression (the compiled regex matches it byte for byte, and so does the equality
/// test of a template with its own text).
pub(crate) fn literal_prefix(src: &str) -> &str {
    &src[..src.find('{').unwrap_or(src.len())]
}

/// Translates a template into regex source, or `None` if it is not a valid template.
fn to_regex(src: &str) -> Result<Option<String>, SelectorError> {
    let mut out = String::with_capacity(src.len() * 4);
    out.push_str(r"\A");
    let mut rest = src;
    let mut expressions = 0usize;
    let mut variables = 0usize;
    loop {
        let Some(open) = rest.find('{') else {
            if rest.contains('}') {
                return Ok(None);
            }
            out.push_str(&regex_syntax::escape(rest));
            break;
        };
        let literal = &rest[..open];
        if literal.contains('}') {
            return Ok(None);
        }
        out.push_str(&regex_syntax::escape(literal));
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            return Ok(None);
        };
        let body = &after[..close];
        if body.contains('{') {
            return Ok(None);
        }
        expressions += 1;
        if expressions > MAX_EXPRESSIONS {
            return Err(SelectorError::TooManyExpressions {
                max: MAX_EXPRESSIONS,
            });
        }
        let Some(expr) = Expression::parse(body) else {
            return Ok(None);
        };
        variables += expr.vars.len();
        if variables > MAX_VARIABLES {
            return Err(SelectorError::TooManyVariables { max: MAX_VARIABLES });
        }
        expr.write_regex(&mut out);
        rest = &after[close + 1..];
    }
    out.push_str(r"\z");
    Ok(Some(out))
}

/// The eight RFC 6570 operators (section 3.2.1 and appendix A).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    Simple,
    Reserved,
    Fragment,
    Label,
    Path,
    PathParam,
    Query,
    QueryContinuation,
}

impl Operator {
    /// The string emitted before the first defined variable.
    fn first(self) -> &'static str {
        match self {
            Operator::Simple | Operator::Reserved => "",
            Operator::Fragment => "#",
            Operator::Label => ".",
            Operator::Path => "/",
            Operator::PathParam => ";",
            Operator::Query => "?",
            Operator::QueryContinuation => "&",
        }
    }

    /// The string emitted between defined variables (and between exploded members).
    fn sep(self) -> &'static str {
        match self {
            Operator::Simple | Operator::Reserved | Operator::Fragment => ",",
            Operator::Label => ".",
            Operator::Path => "/",
            Operator::PathParam => ";",
            Operator::Query | Operator::QueryContinuation => "&",
        }
    }

    /// Whether variables expand as `name=value` pairs.
    fn named(self) -> bool {
        matches!(
            self,
            Operator::PathParam | Operator::Query | Operator::QueryContinuation
        )
    }

    /// Whether reserved characters and pct-encoded triplets pass through unencoded.
    fn allows_reserved(self) -> bool {
        matches!(self, Operator::Reserved | Operator::Fragment)
    }

    /// Regex for one character of a string value expanded with this operator (`*` it for a
    /// whole value).
    fn value_char_regex(self) -> String {
        if self.allows_reserved() {
            format!("(?:(?-u:[{UNRESERVED}{RESERVED}{NON_ASCII}])|{PCT})")
        } else {
            format!("(?:(?-u:[{UNRESERVED}{NON_ASCII}])|{PCT})")
        }
    }

    /// Regex for one exploded variable's contribution (after `first`/`sep`): permissively, the
    /// value characters plus the separator and `=`, which covers lists (`a,b`), associative
    /// arrays (`k=v,k2=v2`) and, for named operators, `name=v;name=w`-style repetitions.
    fn exploded_regex(self) -> String {
        let extra = match self {
            // ',' and '=' are already reserved characters.
            Operator::Reserved | Operator::Fragment => "",
            Operator::Simple => ",=",
            Operator::Label => "=",
            Operator::Path => "/=",
            Operator::PathParam => ";=",
            Operator::Query | Operator::QueryContinuation => r"\&=",
        };
        let reserved = if self.allows_reserved() { RESERVED } else { "" };
        format!("(?:(?-u:[{UNRESERVED}{reserved}{extra}{NON_ASCII}])|{PCT})*")
    }
}

/// One `varspec`: a variable name and its modifier.
#[derive(Debug)]
struct VarSpec<'a> {
    name: &'a str,
    explode: bool,
}

/// One `{...}` expression.
#[derive(Debug)]
struct Expression<'a> {
    op: Operator,
    vars: Vec<VarSpec<'a>>,
}

impl<'a> Expression<'a> {
    /// Parses the text between the braces; `None` if it is not valid RFC 6570 syntax.
    fn parse(body: &'a str) -> Option<Expression<'a>> {
        let (op, list) = match body.chars().next() {
            None => return None,
            Some('+') => (Operator::Reserved, &body[1..]),
            Some('#') => (Operator::Fragment, &body[1..]),
            Some('.') => (Operator::Label, &body[1..]),
            Some('/') => (Operator::Path, &body[1..]),
            Some(';') => (Operator::PathParam, &body[1..]),
            Some('?') => (Operator::Query, &body[1..]),
            Some('&') => (Operator::QueryContinuation, &body[1..]),
            // Reserved for future extensions (section 2.2): not a template we understand.
            Some('=' | ',' | '!' | '@' | '|') => return None,
            Some(_) => (Operator::Simple, body),
        };
        let vars = list
            .split(',')
            .map(parse_varspec)
            .collect::<Option<Vec<_>>>()?;
        Some(Expression { op, vars })
    }

    /// Appends the regex for this expression: the empty string (all variables undefined) or
    /// `first` followed by a non-empty, in-order subsequence of the items joined by `sep`.
    fn write_regex(&self, out: &mut String) {
        let op = self.op;
        let first = regex_syntax::escape(op.first());
        let sep = regex_syntax::escape(op.sep());

        if !op.named() {
            // Unnamed items are indistinguishable, so "which subsequence" does not matter, only
            // how many: linear instead of quadratic. With an exploded variable the exploded
            // class already contains the separator and every value character, so it alone
            // covers the whole region.
            let n = self.vars.len();
            if self.vars.iter().any(|v| v.explode) {
                out.push_str(&format!("(?:{first}{})?", op.exploded_regex()));
            } else if op.allows_reserved() {
                // `+` and `#` values may contain the separator `,` themselves, so the values
                // and separators are just a run of value characters: the same language as
                // below, without the bounded count that makes a DFA blow up when such
                // expressions follow one another (`{#a,...}{#a,...}`).
                out.push_str(&format!("(?:{first}{}*)?", op.value_char_regex()));
            } else {
                let value = format!("{}*", op.value_char_regex());
                out.push_str(&format!(
                    "(?:{first}{value}(?:{sep}{value}){{0,{}}})?",
                    n - 1
                ));
            }
            return;
        }

        // Named items differ (each starts with its name), so order and "at most once" matter.
        // Build E_k = "items 1..=k with at least one present", in template order:
        // E_1 = I_1, E_k = (?:E_{k-1}(?:sep I_k)?|I_k). Each item appears twice, so the
        // pattern stays linear in the number of variables (the flat "pick the first present
        // item, then optional rest" alternation would be quadratic).
        let mut items = self.vars.iter().map(|v| item_regex(op, v));
        let mut present = items.next().unwrap_or_default();
        for item in items {
            present = format!("(?:{present}(?:{sep}{item})?|{item})");
        }
        out.push_str(&format!("(?:{first}{present})?"));
    }
}

/// The regex for one variable's contribution, excluding the `first`/`sep` before it.
fn item_regex(op: Operator, var: &VarSpec<'_>) -> String {
    if var.explode {
        return op.exploded_regex();
    }
    let char = op.value_char_regex();
    if !op.named() {
        return format!("{char}*");
    }
    let name = regex_syntax::escape(var.name);
    if op == Operator::PathParam {
        // `;` uses an empty ifemp: an empty value expands to just `;name`, never `;name=`.
        format!("{name}(?:={char}+)?")
    } else {
        let value = format!("{char}*");
        // `?` and `&` use `=` as ifemp: an empty value expands to `name=`.
        format!("{name}={value}")
    }
}

/// Parses `varname [ ":" max-length | "*" ]`.
fn parse_varspec(spec: &str) -> Option<VarSpec<'_>> {
    let (name, explode) = if let Some(name) = spec.strip_suffix('*') {
        (name, true)
    } else if let Some((name, len)) = spec.split_once(':') {
        if !valid_max_length(len) {
            return None;
        }
        (name, false)
    } else {
        (spec, false)
    };
    valid_varname(name).then_some(VarSpec { name, explode })
}

/// `max-length = %x31-39 0*3DIGIT`: 1 to 9999 without a leading zero.
fn valid_max_length(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=4).contains(&b.len()) && b[0] != b'0' && b.iter().all(u8::is_ascii_digit)
}

/// `varname = varchar *( ["."] varchar )`, `varchar = ALPHA / DIGIT / "_" / pct-encoded`.
fn valid_varname(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    // Whether the previous token was a varchar (a dot must follow one and precede one).
    let mut after_varchar = false;
    while i < b.len() {
        match b[i] {
            c if c.is_ascii_alphanumeric() || c == b'_' => {
                after_varchar = true;
                i += 1;
            }
            b'%' if b.len() > i + 2
                && b[i + 1].is_ascii_hexdigit()
                && b[i + 2].is_ascii_hexdigit() =>
            {
                after_varchar = true;
                i += 3;
            }
            b'.' if after_varchar => {
                after_varchar = false;
                i += 1;
            }
            _ => return false,
        }
    }
    after_varchar
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compiled(src: &str) -> Template {
        Template::compile(src).unwrap().unwrap()
    }

    #[test]
    fn varnames() {
        for ok in ["a", "A1", "_", "a.b", "a.b.c", "%41", "a%2Eb", "x_1"] {
            assert!(valid_varname(ok), "{ok}");
        }
        for bad in ["", ".", ".a", "a.", "a..b", "a-b", "a b", "%4", "%GG", "é"] {
            assert!(!valid_varname(bad), "{bad}");
        }
    }

    #[test]
    fn max_lengths() {
        for ok in ["1", "9", "10", "9999"] {
            assert!(valid_max_length(ok), "{ok}");
        }
        for bad in ["", "0", "01", "10000", "1a", "+1", "-1"] {
            assert!(!valid_max_length(bad), "{bad}");
        }
    }

    #[test]
    fn invalid_templates_are_none() {
        for src in [
            "{",
            "}",
            "a{",
            "{}",
            "{a",
            "a}",
            "{a}}",
            "{{a}}",
            "{=a}",
            "{,a}",
            "{!a}",
            "{@a}",
            "{|a}",
            "{a,}",
            "{,}",
            "{a b}",
            "{a:0}",
            "{a:10000}",
            "{a*:3}",
            "{a:3*}",
            "{a**}",
            "{+}",
            "{?}",
            "{a:}",
            "{a-b}",
        ] {
            assert!(Template::compile(src).unwrap().is_none(), "{src}");
        }
    }

    #[test]
    fn expression_and_variable_caps() {
        let many = "{a}".repeat(MAX_EXPRESSIONS);
        assert!(Template::compile(&many).unwrap().is_some());
        let too_many = "{a}".repeat(MAX_EXPRESSIONS + 1);
        assert_eq!(
            Template::compile(&too_many).unwrap_err(),
            SelectorError::TooManyExpressions {
                max: MAX_EXPRESSIONS
            }
        );
        let vars = |n: usize| {
            (0..n)
                .map(|i| format!("v{i}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        assert!(
            Template::compile(&format!("{{?{}}}", vars(MAX_VARIABLES)))
                .unwrap()
                .is_some()
        );
        assert_eq!(
            Template::compile(&format!("{{?{}}}", vars(MAX_VARIABLES + 1))).unwrap_err(),
            SelectorError::TooManyVariables { max: MAX_VARIABLES }
        );
        // The cap counts over the whole template, not per expression.
        let split = format!("{{a,b}}{}", "{c}".repeat(MAX_VARIABLES - 1));
        assert!(matches!(
            Template::compile(&split),
            Err(SelectorError::TooManyExpressions { .. } | SelectorError::TooManyVariables { .. })
        ));
    }

    #[test]
    fn worst_cases_within_caps_compile() {
        // For every operator, the most variables the caps allow, in as many expressions as
        // allowed, exploded and not: the largest programs a selector can ask for must fit the
        // size budget.
        for op in ["", "+", "#", ".", "/", ";", "?", "&"] {
            for per_expr in [2, 4, 8, 16, MAX_VARIABLES] {
                for explode in [false, true] {
                    let exprs = (MAX_VARIABLES / per_expr).min(MAX_EXPRESSIONS);
                    let body = (0..per_expr)
                        .map(|i| {
                            let star = if explode && i % 2 == 1 { "*" } else { "" };
                            format!("v{i}{star}")
                        })
                        .collect::<Vec<_>>()
                        .join(",");
                    let src = format!("{{{op}{body}}}").repeat(exprs);
                    assert!(
                        Template::compile(&src).unwrap().is_some(),
                        "{op} {per_expr}"
                    );
                }
            }
        }
    }

    #[test]
    fn literal_only_template_with_braces_in_expression() {
        let t = compiled("https://example.com/{id}");
        assert!(t.matches("https://example.com/1"));
        assert!(!t.matches("https://example.com/1/2"));
    }
}
