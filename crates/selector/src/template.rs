//! RFC 6570 URI templates, compiled once into an anchored regular expression that answers
//! "could this topic be an expansion of this template?".
//!
//! # What matches
//!
//! Every operator of RFC 6570 level 4 is supported: `{var}`, `{+var}`, `{#var}`, `{.var}`,
//! `{/var}`, `{;var}`, `{?var}` and `{&var}`, each with any number of comma-separated variables
//! and the `*` (explode) and `:N` (prefix) modifiers. For each expression the compiled matcher
//! accepts exactly the strings RFC 6570 section 3.2 can produce, given that:
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
//!   `?list=red&list=green` and `?semi=%3B&dot=.`). This is a superset of the real expansions.
//! * **The prefix modifier `:N` is accepted and ignored**: the variable matches as if it had no
//!   modifier. Any prefix of a value is itself a value, so this is again a superset, and it keeps
//!   the compiled size independent of `N`.
//! * **Value characters** are those RFC 6570 leaves unencoded: unreserved characters
//!   (`A-Z a-z 0-9 - . _ ~`) and pct-encoded triplets for `{var}`, `{.var}`, `{/var}`, `{;var}`,
//!   `{?var}` and `{&var}`; additionally the reserved characters (`:/?#[]@!$&'()*+,;=`) for
//!   `{+var}` and `{#var}`. A lone `%` never matches. As a deliberate relaxation for topics that
//!   are IRIs rather than URIs, non-ASCII characters (other than C1 controls) are accepted
//!   unencoded as well as pct-encoded.
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
//! The `regex` crate matches in linear time, so no topic can make matching blow up. What is
//! bounded here is compile cost: at most [`MAX_EXPRESSIONS`] expressions and
//! [`MAX_VARIABLES_PER_EXPRESSION`] variables per expression (the named operators need a regex
//! quadratic in the number of variables to express "any subsequence, in order"), and a cap on
//! the compiled program size. Exceeding them is an error, not a fallback to exact matching: the
//! text *is* a template, and silently matching it literally would surprise its author.

use regex::bytes::{Regex, RegexBuilder};

use crate::SelectorError;

/// Most expressions (`{...}`) one template may contain.
pub const MAX_EXPRESSIONS: usize = 32;

/// Most variables one expression may list.
pub const MAX_VARIABLES_PER_EXPRESSION: usize = 16;

/// Compiled-program budget handed to the regex builder, in bytes.
const REGEX_SIZE_LIMIT: usize = 2 << 20;

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

/// A compiled URI template.
#[derive(Debug)]
pub(crate) struct Template {
    regex: Regex,
}

impl Template {
    /// Compiles `src` into a matcher. `Ok(None)` means "not a valid template".
    pub(crate) fn compile(src: &str) -> Result<Option<Template>, SelectorError> {
        let Some(pattern) = to_regex(src)? else {
            return Ok(None);
        };
        RegexBuilder::new(&pattern)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map(|regex| Some(Template { regex }))
            // The pattern is built from escaped pieces, so the only expected failure is size.
            .map_err(|_| SelectorError::TooComplex)
    }

    /// Whether `topic` could be an expansion of the template.
    pub(crate) fn matches(&self, topic: &str) -> bool {
        self.regex.is_match(topic.as_bytes())
    }
}

/// Translates a template into regex source, or `None` if it is not a valid template.
fn to_regex(src: &str) -> Result<Option<String>, SelectorError> {
    let mut out = String::with_capacity(src.len() * 4);
    out.push_str(r"\A");
    let mut rest = src;
    let mut expressions = 0usize;
    loop {
        let Some(open) = rest.find('{') else {
            if rest.contains('}') {
                return Ok(None);
            }
            out.push_str(&regex::escape(rest));
            break;
        };
        let literal = &rest[..open];
        if literal.contains('}') {
            return Ok(None);
        }
        out.push_str(&regex::escape(literal));
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
        let Some(expr) = Expression::parse(body)? else {
            return Ok(None);
        };
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

    /// Regex for one string value expanded with this operator.
    fn value_regex(self) -> String {
        if self.allows_reserved() {
            format!("(?:(?-u:[{UNRESERVED}{RESERVED}{NON_ASCII}])|{PCT})*")
        } else {
            format!("(?:(?-u:[{UNRESERVED}{NON_ASCII}])|{PCT})*")
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
    /// Parses the text between the braces; `Ok(None)` if it is not valid RFC 6570 syntax.
    fn parse(body: &'a str) -> Result<Option<Expression<'a>>, SelectorError> {
        let (op, list) = match body.chars().next() {
            None => return Ok(None),
            Some('+') => (Operator::Reserved, &body[1..]),
            Some('#') => (Operator::Fragment, &body[1..]),
            Some('.') => (Operator::Label, &body[1..]),
            Some('/') => (Operator::Path, &body[1..]),
            Some(';') => (Operator::PathParam, &body[1..]),
            Some('?') => (Operator::Query, &body[1..]),
            Some('&') => (Operator::QueryContinuation, &body[1..]),
            // Reserved for future extensions (section 2.2): not a template we understand.
            Some('=' | ',' | '!' | '@' | '|') => return Ok(None),
            Some(_) => (Operator::Simple, body),
        };
        let mut vars = Vec::new();
        for spec in list.split(',') {
            if vars.len() == MAX_VARIABLES_PER_EXPRESSION {
                return Err(SelectorError::TooManyVariables {
                    max: MAX_VARIABLES_PER_EXPRESSION,
                });
            }
            let Some(var) = parse_varspec(spec) else {
                return Ok(None);
            };
            vars.push(var);
        }
        Ok(Some(Expression { op, vars }))
    }

    /// Appends the regex for this expression: the empty string (all variables undefined) or
    /// `first` followed by a non-empty, in-order subsequence of the items joined by `sep`.
    fn write_regex(&self, out: &mut String) {
        let op = self.op;
        let first = regex::escape(op.first());
        let sep = regex::escape(op.sep());

        if !op.named() {
            // Unnamed items are indistinguishable, so "which subsequence" does not matter, only
            // how many: linear instead of quadratic. With an exploded variable the exploded
            // class already contains the separator and every value character, so it alone
            // covers the whole region.
            let n = self.vars.len();
            if self.vars.iter().any(|v| v.explode) {
                out.push_str(&format!("(?:{first}{})?", op.exploded_regex()));
            } else {
                let value = op.value_regex();
                out.push_str(&format!("(?:{first}{value}(?:{sep}{value}){{0,{}}})?", n - 1));
            }
            return;
        }

        let items: Vec<String> = self.vars.iter().map(|v| item_regex(op, v)).collect();

        out.push_str("(?:");
        out.push_str(&first);
        out.push_str("(?:");
        // Alternative k: item k is the first defined one; each later item is optional and, when
        // present, preceded by the separator. Quadratic in the item count, hence the cap.
        for (k, item) in items.iter().enumerate() {
            if k > 0 {
                out.push('|');
            }
            out.push_str(item);
            for later in &items[k + 1..] {
                out.push_str("(?:");
                out.push_str(&sep);
                out.push_str(later);
                out.push_str(")?");
            }
        }
        out.push_str("))?");
    }
}

/// The regex for one variable's contribution, excluding the `first`/`sep` before it.
fn item_regex(op: Operator, var: &VarSpec<'_>) -> String {
    if var.explode {
        return op.exploded_regex();
    }
    let value = op.value_regex();
    if !op.named() {
        return value;
    }
    let name = regex::escape(var.name);
    if op == Operator::PathParam {
        // `;` uses an empty ifemp: an empty value expands to just `;name`.
        format!("{name}(?:={value})?")
    } else {
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
            b'%' if b.len() > i + 2 && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit() => {
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
            "{", "}", "a{", "{}", "{a", "a}", "{a}}", "{{a}}", "{=a}", "{,a}", "{!a}", "{@a}",
            "{|a}", "{a,}", "{,}", "{a b}", "{a:0}", "{a:10000}", "{a*:3}", "{a:3*}", "{a**}",
            "{+}", "{?}", "{a:}", "{a-b}",
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
        let vars: Vec<String> = (0..MAX_VARIABLES_PER_EXPRESSION)
            .map(|i| format!("v{i}"))
            .collect();
        assert!(Template::compile(&format!("{{?{}}}", vars.join(","))).unwrap().is_some());
        let vars: Vec<String> = (0..=MAX_VARIABLES_PER_EXPRESSION)
            .map(|i| format!("v{i}"))
            .collect();
        assert_eq!(
            Template::compile(&format!("{{?{}}}", vars.join(","))).unwrap_err(),
            SelectorError::TooManyVariables {
                max: MAX_VARIABLES_PER_EXPRESSION
            }
        );
    }

    #[test]
    fn worst_case_within_caps_compiles() {
        // Every expression at the variable cap, every operator, exploded and not: the largest
        // program a selector can ask for must still fit the size budget.
        let ops = ["", "+", "#", ".", "/", ";", "?", "&"];
        let mut src = String::new();
        for e in 0..MAX_EXPRESSIONS {
            let vars: Vec<String> = (0..MAX_VARIABLES_PER_EXPRESSION)
                .map(|i| if i % 2 == 0 { format!("v{i}") } else { format!("v{i}*") })
                .collect();
            src.push_str(&format!("{{{}{}}}", ops[e % ops.len()], vars.join(",")));
        }
        if src.len() <= crate::MAX_SELECTOR_LEN {
            assert!(Template::compile(&src).unwrap().is_some());
        }
        // The largest template that fits the length cap with single-letter names.
        let mut src = String::new();
        'outer: for e in 0..MAX_EXPRESSIONS {
            let body: Vec<&str> = ["a"; MAX_VARIABLES_PER_EXPRESSION].to_vec();
            let expr = format!("{{{}{}}}", ops[e % ops.len()], body.join(","));
            if src.len() + expr.len() > crate::MAX_SELECTOR_LEN {
                break 'outer;
            }
            src.push_str(&expr);
        }
        assert!(Template::compile(&src).unwrap().is_some());
    }

    #[test]
    fn literal_only_template_with_braces_in_expression() {
        let t = compiled("https://example.com/{id}");
        assert!(t.matches("https://example.com/1"));
        assert!(!t.matches("https://example.com/1/2"));
    }
}
#[cfg(test)]
mod scratch {
    #[test]
    fn measure() {
        for nvars in [4usize, 8, 12, 16] {
            let mut src = String::new();
            let ops = [";", "?", "&"];
            let mut e = 0;
            loop {
                let vars: Vec<String> = (0..nvars).map(|i| format!("{}", (b'a' + i as u8) as char)).collect();
                let expr = format!("{{{}{}}}", ops[e % 3], vars.join(","));
                if src.len() + expr.len() > 2048 || e >= 32 { break; }
                src.push_str(&expr);
                e += 1;
            }
            let pat = super::to_regex(&src).unwrap().unwrap();
            let mut lim = 1usize << 16;
            loop {
                let t = std::time::Instant::now();
                let r = regex::RegexBuilder::new(&pat).size_limit(lim).build();
                if r.is_ok() {
                    let el = t.elapsed();
                    let r = r.unwrap();
                    let topic = "?a=1&b=2".repeat(200);
                    let t2 = std::time::Instant::now();
                    for _ in 0..100 { std::hint::black_box(r.is_match(&topic)); }
                    eprintln!("nvars={nvars} exprs={e} patlen={} limit={}KiB compile={:?} match100={:?}", pat.len(), lim>>10, el, t2.elapsed());
                    break;
                }
                lim *= 2;
            }
        }
    }
}
