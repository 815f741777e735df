//! Property tests: every RFC 6570 expansion of a random template matches it, and no input makes
//! parsing or matching panic.
//!
//! The expander below follows RFC 6570 appendix A for the cases the matcher claims to cover:
//! string values for every variable, and lists or associative arrays for exploded ones.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use proptest::prelude::*;
use ssehub_selector::Selector;

#[derive(Debug, Clone)]
enum Value {
    Str(String),
    List(Vec<String>),
    Map(Vec<(String, String)>),
}

#[derive(Debug, Clone)]
struct VarSpec {
    name: &'static str,
    explode: bool,
    prefix: Option<usize>,
}

#[derive(Debug, Clone)]
enum Part {
    Literal(String),
    Expr(char, Vec<VarSpec>),
}

const NAMES: [&str; 4] = ["a", "b2", "c_d", "e.f"];

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn reserved(b: u8) -> bool {
    b":/?#[]@!$&'()*+,;=".contains(&b)
}

/// Pct-encodes everything outside the allowed set; with `allow_reserved`, existing pct-encoded
/// triplets pass through unchanged (RFC 6570 section 3.2.1).
fn encode(s: &str, allow_reserved: bool) -> String {
    let b = s.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if unreserved(c) || (allow_reserved && reserved(c)) {
            out.push(c as char);
            i += 1;
        } else if allow_reserved
            && c == b'%'
            && i + 2 < b.len()
            && b[i + 1].is_ascii_hexdigit()
            && b[i + 2].is_ascii_hexdigit()
        {
            out.push_str(&s[i..i + 3]);
            i += 3;
        } else {
            write!(out, "%{c:02X}").unwrap();
            i += 1;
        }
    }
    out
}

/// (first, sep, named, ifemp, allow_reserved) from RFC 6570 appendix A.
fn op_table(op: char) -> (&'static str, &'static str, bool, &'static str, bool) {
    match op {
        '+' => ("", ",", false, "", true),
        '#' => ("#", ",", false, "", true),
        '.' => (".", ".", false, "", false),
        '/' => ("/", "/", false, "", false),
        ';' => (";", ";", true, "", false),
        '?' => ("?", "&", true, "=", false),
        '&' => ("&", "&", true, "=", false),
        _ => ("", ",", false, "", false),
    }
}

fn expand(parts: &[Part], vars: &HashMap<&str, Value>) -> String {
    let mut out = String::new();
    for part in parts {
        let (op, specs) = match part {
            Part::Literal(l) => {
                out.push_str(l);
                continue;
            }
            Part::Expr(op, specs) => (*op, specs),
        };
        let (first, sep, named, ifemp, allow) = op_table(op);
        let mut is_first = true;
        for spec in specs {
            let Some(value) = vars.get(spec.name) else {
                continue;
            };
            match value {
                Value::List(l) if l.is_empty() => continue,
                Value::Map(m) if m.is_empty() => continue,
                _ => {}
            }
            out.push_str(if is_first { first } else { sep });
            is_first = false;
            match value {
                Value::Str(s) => {
                    let s: String = match spec.prefix {
                        Some(n) => s.chars().take(n).collect(),
                        None => s.clone(),
                    };
                    if named {
                        out.push_str(spec.name);
                        if s.is_empty() {
                            out.push_str(ifemp);
                            continue;
                        }
                        out.push('=');
                    }
                    out.push_str(&encode(&s, allow));
                }
                Value::List(items) => {
                    assert!(
                        spec.explode,
                        "generator gives lists to exploded variables only"
                    );
                    for (j, item) in items.iter().enumerate() {
                        if j > 0 {
                            out.push_str(sep);
                        }
                        if named {
                            out.push_str(spec.name);
                            if item.is_empty() {
                                out.push_str(ifemp);
                                continue;
                            }
                            out.push('=');
                        }
                        out.push_str(&encode(item, allow));
                    }
                }
                Value::Map(pairs) => {
                    assert!(
                        spec.explode,
                        "generator gives maps to exploded variables only"
                    );
                    for (j, (k, v)) in pairs.iter().enumerate() {
                        if j > 0 {
                            out.push_str(sep);
                        }
                        out.push_str(&encode(k, allow));
                        if named && v.is_empty() {
                            out.push_str(ifemp);
                            continue;
                        }
                        out.push('=');
                        out.push_str(&encode(v, allow));
                    }
                }
            }
        }
    }
    out
}

fn render(parts: &[Part]) -> String {
    let mut out = String::new();
    for part in parts {
        match part {
            Part::Literal(l) => out.push_str(l),
            Part::Expr(op, specs) => {
                out.push('{');
                if *op != ' ' {
                    out.push(*op);
                }
                let specs: Vec<String> = specs
                    .iter()
                    .map(|s| match (s.explode, s.prefix) {
                        (true, _) => format!("{}*", s.name),
                        (false, Some(n)) => format!("{}:{n}", s.name),
                        (false, None) => s.name.to_string(),
                    })
                    .collect();
                out.push_str(&specs.join(","));
                out.push('}');
            }
        }
    }
    out
}

fn value_string() -> impl Strategy<Value = String> {
    prop_oneof![
        "(?s).{0,8}",
        "[%:/?#\\[\\]@!$&'()*+,;=a-z0-9\\-._~ ]{0,8}",
        "(%[0-9A-Fa-f]{2}){0,3}",
    ]
}

fn var_spec() -> impl Strategy<Value = VarSpec> {
    (0..NAMES.len(), 0..3u8, 1..12usize).prop_map(|(i, m, n)| VarSpec {
        name: NAMES[i],
        explode: m == 1,
        prefix: (m == 2).then_some(n),
    })
}

fn part() -> impl Strategy<Value = Part> {
    prop_oneof![
        "[A-Za-z0-9\\-._~:/?#\\[\\]@!$&'()*+,;=]{0,6}".prop_map(Part::Literal),
        (
            prop::sample::select(vec![' ', '+', '#', '.', '/', ';', '?', '&']),
            prop::collection::vec(var_spec(), 1..4),
        )
            .prop_map(|(op, specs)| Part::Expr(op, specs)),
    ]
}

/// Per name: whether it is defined, and candidate string, list and map values.
type Candidates = Vec<(u8, String, Vec<String>, Vec<(String, String)>)>;

fn candidates() -> impl Strategy<Value = Candidates> {
    prop::collection::vec(
        (
            0..4u8,
            value_string(),
            prop::collection::vec(value_string(), 0..4),
            prop::collection::vec((value_string(), value_string()), 0..4),
        ),
        NAMES.len(),
    )
}

/// Chooses each variable's value: undefined, or a string; lists and maps only for names that
/// appear solely as exploded variables without a prefix.
fn choose(parts: &[Part], cands: Candidates) -> HashMap<&'static str, Value> {
    let mut scalar_only = HashSet::new();
    for part in parts {
        if let Part::Expr(_, specs) = part {
            for s in specs {
                if !s.explode {
                    scalar_only.insert(s.name);
                }
            }
        }
    }
    let mut vars = HashMap::new();
    for (name, (kind, s, list, map)) in NAMES.iter().zip(cands) {
        let value = match kind {
            0 => continue,
            2 if !scalar_only.contains(name) => Value::List(list),
            3 if !scalar_only.contains(name) => Value::Map(map),
            _ => Value::Str(s),
        };
        vars.insert(*name, value);
    }
    vars
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn expansions_always_match(
        parts in prop::collection::vec(part(), 1..5),
        cands in candidates(),
    ) {
        let template = render(&parts);
        prop_assume!(!template.is_empty());
        let vars = choose(&parts, cands);
        let expansion = expand(&parts, &vars);
        let selector = Selector::parse(&template).unwrap();
        if parts.iter().any(|p| matches!(p, Part::Expr(..))) {
            prop_assert!(selector.is_template(), "{template:?} should be a template");
        }
        prop_assert!(
            selector.matches(&expansion),
            "{template:?} should match its expansion {expansion:?} of {vars:?}"
        );
    }

    #[test]
    fn arbitrary_strings_never_panic(s in any::<String>(), topic in any::<String>()) {
        if let Ok(sel) = Selector::parse(&s) {
            let _ = sel.matches(&topic);
            prop_assert!(sel.matches(&s), "a selector always matches its own text");
        }
    }

    #[test]
    fn template_like_strings_never_panic(
        s in "[{}a-z0-9,.:*+#/;?&=!@|%_ -]{0,60}",
        topic in "[a-z0-9,.:*+#/;?&=%_-]{0,40}",
    ) {
        match Selector::parse(&s) {
            Ok(sel) => {
                let _ = sel.matches(&topic);
                prop_assert!(sel.matches(&s));
                prop_assert_eq!(sel.as_str(), s.as_str());
                if !sel.is_template() && !sel.is_any() {
                    prop_assert_eq!(sel.exact(), Some(s.as_str()));
                    prop_assert_eq!(sel.matches(&topic), topic == s);
                }
            }
            Err(e) => prop_assert!(!e.to_string().contains('\n')),
        }
    }
}
