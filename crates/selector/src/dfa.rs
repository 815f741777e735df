//! The one regex representation every compiled matcher uses: an anchored, capture-free sparse
//! DFA (regex-automata), built once at compile time within fixed size limits.
//!
//! Why not `regex::Regex`: a `Regex` builds several engines and keeps per-thread caches that grow
//! as it matches (its lazy DFA up to 2 MiB each), and it does not say how large it is. A subscriber
//! chooses its matchers, so the hub must know what one costs and keep that bounded. A sparse DFA is
//! immutable (no cache, so evaluating it from any thread allocates nothing), matches in one
//! table step per byte, and reports its exact heap size. The price is paid once, when building: a
//! pattern whose DFA would exceed the limits below is refused as too complex (the classic
//! exponential cases, such as `(a|b)*a(a|b){12}`), instead of being matched slowly.
//!
//! URL Pattern components are matched against the components of a parsed URL, which are ASCII
//! (the URL Standard percent-encodes or punycodes everything else), so their regexes are
//! compiled over ASCII only ([`ascii_only`]): a Unicode class such as `[^/]` or `\w` becomes a
//! byte class instead of a UTF-8 automaton, which keeps those DFAs one or two orders of magnitude
//! smaller with the same answers on every possible input.

use regex_automata::dfa::{Automaton, StartKind, dense, sparse};
use regex_automata::nfa::thompson::{self, WhichCaptures};
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input};
use regex_syntax::hir::{self, Class, ClassBytes, ClassBytesRange, Hir, HirKind, Look};

/// Heap the intermediate NFA may use while compiling one regex.
const NFA_SIZE_LIMIT: usize = 256 * 1024;
/// The dense DFA built first (and its determinization's working memory) may use this much.
const DENSE_SIZE_LIMIT: usize = 1024 * 1024;
/// Largest sparse DFA kept, in bytes; past it the pattern is too complex. The largest valid
/// URI template our caps allow needs about 32 KiB; a 64-group URL pattern about 3 KiB.
pub(crate) const MAX_DFA_BYTES: usize = 256 * 1024;

/// A compiled, anchored, capture-free regex: `is_match` answers whether the whole input matches
/// (the sources are anchored with `^...$` or `\A...\z`).
pub(crate) struct Dfa {
    dfa: sparse::DFA<Vec<u8>>,
}

/// Why a regex could not be compiled within the limits.
#[derive(Debug)]
pub(crate) struct TooComplex;

impl Dfa {
    /// Compiles regex `source` in byte mode (`utf8(false)`, Unicode syntax as written): for
    /// URI templates, whose topics are arbitrary UTF-8.
    pub(crate) fn bytes(source: &str) -> Result<Dfa, TooComplex> {
        let hir = syntax::parse_with(source, &syntax::Config::new().utf8(false))
            .map_err(|_| TooComplex)?;
        Dfa::from_hir(&hir)
    }

    /// Compiles regex `source` (Unicode syntax, as `regex::Regex::new` reads it) for inputs that
    /// are always ASCII (see the module docs): same answers on ASCII inputs, far smaller DFA.
    pub(crate) fn ascii(source: &str) -> Result<Dfa, TooComplex> {
        let hir = regex_syntax::Parser::new()
            .parse(source)
            .map_err(|_| TooComplex)?;
        Dfa::from_hir(&ascii_only(&hir))
    }

    fn from_hir(hir: &Hir) -> Result<Dfa, TooComplex> {
        let nfa = thompson::Compiler::new()
            .configure(
                thompson::Config::new()
                    .utf8(false)
                    .which_captures(WhichCaptures::None)
                    .nfa_size_limit(Some(NFA_SIZE_LIMIT)),
            )
            .build_from_hir(hir)
            .map_err(|_| TooComplex)?;
        let dense = dense::Builder::new()
            .configure(
                dense::Config::new()
                    .start_kind(StartKind::Anchored)
                    .dfa_size_limit(Some(DENSE_SIZE_LIMIT))
                    .determinize_size_limit(Some(DENSE_SIZE_LIMIT)),
            )
            .build_from_nfa(&nfa)
            .map_err(|_| TooComplex)?;
        let dfa = dense.to_sparse().map_err(|_| TooComplex)?;
        if dfa.memory_usage() > MAX_DFA_BYTES {
            return Err(TooComplex);
        }
        Ok(Dfa { dfa })
    }

    /// Whether the whole of `haystack` matches.
    pub(crate) fn is_match(&self, haystack: &[u8]) -> bool {
        let input = Input::new(haystack).anchored(Anchored::Yes).earliest(true);
        // No quit bytes and no heuristic Unicode word boundary are configured, so a search
        // cannot fail; an error would mean "no match" anyway.
        matches!(self.dfa.try_search_fwd(&input), Ok(Some(_)))
    }

    /// Heap bytes the DFA holds.
    pub(crate) fn heap_size(&self) -> usize {
        self.dfa.memory_usage()
    }
}

/// `hir` restricted to ASCII inputs: classes intersected with `[\x00-\x7F]` (as byte classes),
/// literals with a non-ASCII byte replaced by a class that never matches, Unicode word
/// boundaries by ASCII ones, captures dropped. On an ASCII haystack the result matches exactly
/// where `hir` does: a non-ASCII character can match nothing in it, and Unicode and ASCII word
/// characters agree on ASCII.
pub(crate) fn ascii_only(hir: &Hir) -> Hir {
    match hir.kind() {
        HirKind::Empty => Hir::empty(),
        HirKind::Literal(hir::Literal(bytes)) => {
            if bytes.is_ascii() {
                Hir::literal(bytes.clone())
            } else {
                Hir::fail()
            }
        }
        HirKind::Class(Class::Unicode(c)) => {
            let ranges = c.ranges().iter().filter(|r| r.start().is_ascii()).map(|r| {
                let end = r.end().min('\x7F');
                ClassBytesRange::new(r.start() as u8, end as u8)
            });
            Hir::class(Class::Bytes(ClassBytes::new(ranges)))
        }
        HirKind::Class(Class::Bytes(c)) => {
            let ranges = c
                .ranges()
                .iter()
                .filter(|r| r.start() < 0x80)
                .map(|r| ClassBytesRange::new(r.start(), r.end().min(0x7F)));
            Hir::class(Class::Bytes(ClassBytes::new(ranges)))
        }
        HirKind::Look(look) => Hir::look(ascii_look(*look)),
        HirKind::Repetition(rep) => Hir::repetition(hir::Repetition {
            min: rep.min,
            max: rep.max,
            greedy: rep.greedy,
            sub: Box::new(ascii_only(&rep.sub)),
        }),
        HirKind::Capture(cap) => ascii_only(&cap.sub),
        HirKind::Concat(subs) => Hir::concat(subs.iter().map(ascii_only).collect()),
        HirKind::Alternation(subs) => Hir::alternation(subs.iter().map(ascii_only).collect()),
    }
}

fn ascii_look(look: Look) -> Look {
    match look {
        Look::WordUnicode => Look::WordAscii,
        Look::WordUnicodeNegate => Look::WordAsciiNegate,
        Look::WordStartUnicode => Look::WordStartAscii,
        Look::WordEndUnicode => Look::WordEndAscii,
        Look::WordStartHalfUnicode => Look::WordStartHalfAscii,
        Look::WordEndHalfUnicode => Look::WordEndHalfAscii,
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_compilation_agrees_with_regex_on_ascii_inputs() {
        let cases = [
            r"^(?:/((?:[^/]+?)(?:/(?:[^/]+?))*))?$",
            r"^(?:/(\w+))(?:/(\d+))?$",
            r"^(?:/(é|x))$",
            r"^(?i:k)$",
            r"^\bab\b$",
            r"^(?:/(.*))$",
            r"^[\p{Greek}a]$",
        ];
        let inputs = [
            "", "/", "/a", "/a/b", "/ab/12", "/x", "k", "K", "ab", "/a/", "a", "/a1/2", "/_/9",
        ];
        for src in cases {
            let dfa = Dfa::ascii(src).unwrap();
            let re = regex::Regex::new(src).unwrap();
            for input in inputs {
                assert_eq!(
                    dfa.is_match(input.as_bytes()),
                    re.is_match(input),
                    "{src} on {input:?}"
                );
            }
        }
    }

    #[test]
    fn exponential_dfas_are_refused() {
        assert!(Dfa::ascii(r"^((a|b)*a(a|b){20})$").is_err());
        assert!(Dfa::ascii(r"^\w{1,60}$").unwrap().heap_size() < 16 * 1024);
    }
}
