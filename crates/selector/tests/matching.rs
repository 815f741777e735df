//! Byte-exact matching tables: the RFC 6570 section 3.2 examples, per-operator matches and
//! near misses, regex metacharacters in literals, and invalid templates falling back to exact.

use ssehub_selector::Selector;

fn sel(s: &str) -> Selector {
    Selector::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

fn check(template: &str, yes: &[&str], no: &[&str]) {
    let s = sel(template);
    assert!(s.is_template(), "{template:?} should compile as a template");
    for topic in yes {
        assert!(s.matches(topic), "{template:?} should match {topic:?}");
    }
    for topic in no {
        assert!(!s.matches(topic), "{template:?} should not match {topic:?}");
    }
}

/// RFC 6570 section 3.2 examples (variables of section 3.2.1), with their expansions. Examples
/// that give a list or associative array to a variable without `*` are left out: we match
/// non-exploded variables as strings (see the `template` module docs).
const RFC_EXAMPLES: &[(&str, &str)] = &[
    // 3.2.2 simple string expansion
    ("{var}", "value"),
    ("{hello}", "Hello%20World%21"),
    ("{half}", "50%25"),
    ("O{empty}X", "OX"),
    ("O{undef}X", "OX"),
    ("{x,y}", "1024,768"),
    ("{x,hello,y}", "1024,Hello%20World%21,768"),
    ("?{x,empty}", "?1024,"),
    ("?{x,undef}", "?1024"),
    ("?{undef,y}", "?768"),
    ("{var:3}", "val"),
    ("{var:30}", "value"),
    ("{list*}", "red,green,blue"),
    ("{keys*}", "semi=%3B,dot=.,comma=%2C"),
    // 3.2.3 reserved expansion
    ("{+var}", "value"),
    ("{+hello}", "Hello%20World!"),
    ("{+half}", "50%25"),
    ("{base}index", "http%3A%2F%2Fexample.com%2Fhome%2Findex"),
    ("{+base}index", "http://example.com/home/index"),
    ("O{+empty}X", "OX"),
    ("O{+undef}X", "OX"),
    ("{+path}/here", "/foo/bar/here"),
    ("here?ref={+path}", "here?ref=/foo/bar"),
    ("up{+path}{var}/here", "up/foo/barvalue/here"),
    ("{+x,hello,y}", "1024,Hello%20World!,768"),
    ("{+path,x}/here", "/foo/bar,1024/here"),
    ("{+path:6}/here", "/foo/b/here"),
    ("{+list*}", "red,green,blue"),
    ("{+keys*}", "semi=;,dot=.,comma=,"),
    // 3.2.4 fragment expansion
    ("{#var}", "#value"),
    ("{#hello}", "#Hello%20World!"),
    ("{#half}", "#50%25"),
    ("foo{#empty}", "foo#"),
    ("foo{#undef}", "foo"),
    ("{#x,hello,y}", "#1024,Hello%20World!,768"),
    ("{#path,x}/here", "#/foo/bar,1024/here"),
    ("{#path:6}/here", "#/foo/b/here"),
    ("{#list*}", "#red,green,blue"),
    ("{#keys*}", "#semi=;,dot=.,comma=,"),
    // 3.2.5 label expansion with dot-prefix
    ("{.who}", ".fred"),
    ("{.who,who}", ".fred.fred"),
    ("{.half,who}", ".50%25.fred"),
    ("www{.dom*}", "www.example.com"),
    ("X{.var}", "X.value"),
    ("X{.empty}", "X."),
    ("X{.undef}", "X"),
    ("X{.var:3}", "X.val"),
    ("X{.list*}", "X.red.green.blue"),
    ("X{.keys*}", "X.semi=%3B.dot=..comma=%2C"),
    ("X{.empty_keys*}", "X"),
    // 3.2.6 path segment expansion
    ("{/who}", "/fred"),
    ("{/who,who}", "/fred/fred"),
    ("{/half,who}", "/50%25/fred"),
    ("{/who,dub}", "/fred/me%2Ftoo"),
    ("{/var}", "/value"),
    ("{/var,empty}", "/value/"),
    ("{/var,undef}", "/value"),
    ("{/var,x}/here", "/value/1024/here"),
    ("{/var:1,var}", "/v/value"),
    ("{/list*}", "/red/green/blue"),
    ("{/list*,path:4}", "/red/green/blue/%2Ffoo"),
    ("{/keys*}", "/semi=%3B/dot=./comma=%2C"),
    // 3.2.7 path-style parameter expansion
    ("{;who}", ";who=fred"),
    ("{;half}", ";half=50%25"),
    ("{;empty}", ";empty"),
    ("{;v,empty,who}", ";v=6;empty;who=fred"),
    ("{;v,bar,who}", ";v=6;who=fred"),
    ("{;x,y}", ";x=1024;y=768"),
    ("{;x,y,empty}", ";x=1024;y=768;empty"),
    ("{;x,y,undef}", ";x=1024;y=768"),
    ("{;hello:5}", ";hello=Hello"),
    ("{;list*}", ";list=red;list=green;list=blue"),
    ("{;keys*}", ";semi=%3B;dot=.;comma=%2C"),
    // 3.2.8 form-style query expansion
    ("{?who}", "?who=fred"),
    ("{?half}", "?half=50%25"),
    ("{?x,y}", "?x=1024&y=768"),
    ("{?x,y,empty}", "?x=1024&y=768&empty="),
    ("{?x,y,undef}", "?x=1024&y=768"),
    ("{?var:3}", "?var=val"),
    ("{?list*}", "?list=red&list=green&list=blue"),
    ("{?keys*}", "?semi=%3B&dot=.&comma=%2C"),
    // 3.2.9 form-style query continuation
    ("{&who}", "&who=fred"),
    ("{&half}", "&half=50%25"),
    ("?fixed=yes{&x}", "?fixed=yes&x=1024"),
    ("{&x,y,empty}", "&x=1024&y=768&empty="),
    ("{&var:3}", "&var=val"),
    ("{&list*}", "&list=red&list=green&list=blue"),
    ("{&keys*}", "&semi=%3B&dot=.&comma=%2C"),
];

#[test]
fn rfc_6570_examples_match_their_expansions() {
    for (template, expansion) in RFC_EXAMPLES {
        let s = sel(template);
        assert!(s.is_template(), "{template:?}");
        assert!(
            s.matches(expansion),
            "{template:?} should match {expansion:?}"
        );
    }
}

#[test]
fn simple_string() {
    check(
        "https://example.com/books/{id}",
        &[
            "https://example.com/books/1",
            "https://example.com/books/abc-DEF_1.2~3",
            "https://example.com/books/50%25",
            "https://example.com/books/%E2%82%AC",
            // The empty string is a defined value; undefined is omitted: both give this.
            "https://example.com/books/",
            // The template's own text, by the equality rule.
            "https://example.com/books/{id}",
        ],
        &[
            "https://example.com/books/1/reviews",
            "https://example.com/books/1?x=2",
            "https://example.com/books/1#top",
            "https://example.com/books/a b",
            "https://example.com/books/50%",
            "https://example.com/books/50%2",
            "https://example.com/books/%zz",
            "https://example.com/books/1,2",
            "https://example.com/books",
            "http://example.com/books/1",
            "https://example.com/books/1 ",
            "xhttps://example.com/books/1",
        ],
    );
    check(
        "urn:{a,b}:end",
        &[
            "urn::end",
            "urn:1:end",
            "urn:1,2:end",
            "urn:,2:end",
            "urn:1,:end",
        ],
        &["urn:1,2,3:end", "urn:1;2:end", "urn:1:2:end"],
    );
}

#[test]
fn reserved() {
    check(
        "https://example.com/{+path}",
        &[
            "https://example.com/",
            "https://example.com/a",
            "https://example.com/a/b/c",
            "https://example.com/a/b?c=d&e=f#g",
            "https://example.com/a%20b",
            "https://example.com/[::1]:80/@!$&'()*+,;=",
        ],
        &[
            "https://example.com/a b",
            "https://example.com/a%2",
            "https://example.com/a\"b",
            "https://example.com/a<b>",
            "https://example.com/a{b}",
            "https://example.com/a|b",
            "https://example.com/a\\b",
            "https://example.org/a",
        ],
    );
    check("{+a,b}x", &["x", "1x", "1,2x", "/a,/bx"], &["1 x", "1,2"]);
}

#[test]
fn fragment() {
    check(
        "https://example.com/page{#section}",
        &[
            "https://example.com/page",
            "https://example.com/page#",
            "https://example.com/page#intro",
            "https://example.com/page#a/b?c",
        ],
        &[
            "https://example.com/pageintro",
            "https://example.com/page/intro",
            "https://example.com/page#a b",
        ],
    );
    check("x{#a,b}", &["x", "x#1", "x#1,2"], &["x1", "x,1"]);
}

#[test]
fn label() {
    check(
        "https://example.com/file{.ext}",
        &[
            "https://example.com/file",
            "https://example.com/file.",
            "https://example.com/file.txt",
            // '.' is unreserved, so a value may contain it.
            "https://example.com/file.tar.gz",
        ],
        &[
            "https://example.com/filetxt",
            "https://example.com/file/txt",
            "https://example.com/file.a/b",
            "https://example.com/file,txt",
        ],
    );
}

#[test]
fn path_segments() {
    check(
        "https://example.com/users{/id}",
        &[
            "https://example.com/users",
            "https://example.com/users/",
            "https://example.com/users/42",
            "https://example.com/users/me%2Ftoo",
        ],
        &[
            "https://example.com/users42",
            "https://example.com/users/42/posts",
            "https://example.com/users/4 2",
        ],
    );
    check(
        "https://example.com/x{/a,b}",
        &[
            "https://example.com/x",
            "https://example.com/x/1",
            "https://example.com/x/1/2",
            "https://example.com/x//2",
        ],
        &[
            "https://example.com/x/1/2/3",
            "https://example.com/x1",
            "https://example.com/x/1,2",
        ],
    );
    check(
        "https://example.com{/segments*}",
        &[
            "https://example.com",
            "https://example.com/a",
            "https://example.com/a/b/c",
            "https://example.com/k=v/k2=v2",
        ],
        &[
            "https://example.coma",
            "https://example.com/a b",
            "https://example.com/a?b",
        ],
    );
}

#[test]
fn path_params() {
    check(
        "https://example.com/map{;x}",
        &[
            "https://example.com/map",
            "https://example.com/map;x",
            "https://example.com/map;x=1",
            "https://example.com/map;x=%3B",
        ],
        &[
            "https://example.com/map;y=1",
            "https://example.com/map;x=1;x=2",
            "https://example.com/map;x=1;",
            "https://example.com/map;x=a;b",
            "https://example.com/map;",
            "https://example.com/map;x=",
        ],
    );
    check(
        "m{;x,y}",
        &["m", "m;x=1", "m;y=2", "m;x=1;y=2", "m;x;y"],
        &["m;y=2;x=1", "m;x=1;x=2", "m;z=3", "m;x=1;y=2;z=3"],
    );
}

#[test]
fn query() {
    check(
        "https://x/{?a,b}",
        &[
            "https://x/?a=1&b=2",
            "https://x/?b=2",
            "https://x/?a=1",
            "https://x/",
            "https://x/?a=",
            "https://x/?a=&b=",
            "https://x/?a=%26",
            "https://x/{?a,b}",
        ],
        &[
            "https://x/?b=2&a=1",
            "https://x/?c=1",
            "https://x/?a=1&b=2&c=3",
            "https://x/?a=1&a=2",
            "https://x/?",
            "https://x/?a",
            "https://x/?a=1&",
            "https://x/&a=1",
            "https://x/?a=1&b=2#f",
            "https://x/?a=x&y",
            "https://x/?A=1",
        ],
    );
    check(
        "https://x/search{?q,page,sort}",
        &[
            "https://x/search?q=rust&page=2&sort=asc",
            "https://x/search?q=rust&sort=asc",
            "https://x/search?page=2&sort=asc",
            "https://x/search?sort=asc",
        ],
        &[
            "https://x/search?sort=asc&q=rust",
            "https://x/search?q=a&q=b",
        ],
    );
    check(
        "https://x/{?list*}",
        &[
            "https://x/",
            "https://x/?list=red&list=green",
            "https://x/?semi=%3B&dot=.",
        ],
        &["https://x/?a=1#f", "https://x/?a=b c", "https://x/&a=1"],
    );
}

#[test]
fn query_continuation() {
    check(
        "https://x/?fixed=yes{&a,b}",
        &[
            "https://x/?fixed=yes",
            "https://x/?fixed=yes&a=1",
            "https://x/?fixed=yes&b=2",
            "https://x/?fixed=yes&a=1&b=2",
        ],
        &[
            "https://x/?fixed=yes&c=1",
            "https://x/?fixed=yes&b=2&a=1",
            "https://x/?fixed=no&a=1",
            "https://x/?fixed=yes?a=1",
        ],
    );
}

#[test]
fn modifiers_are_accepted_and_matched_permissively() {
    // Prefix: any value of the unmodified variable, so longer values match too.
    check("{var:3}", &["val", "value", ""], &["va lue", "a/b"]);
    check("{+path:2}", &["/f", "/foo/bar"], &["a b"]);
    // Explode: lists and associative arrays.
    check(
        "{list*}",
        &["red", "red,green", "k=v,k2=v2"],
        &["a/b", "a b"],
    );
    check(
        "X{.list*}",
        &["X", "X.red", "X.red.green", "X.k=v.k2=v2"],
        &["X/red"],
    );
}

#[test]
fn multiple_expressions() {
    check(
        "https://example.com/{tenant}/books/{id}{?lang}",
        &[
            "https://example.com/acme/books/1",
            "https://example.com/acme/books/1?lang=fr",
            "https://example.com//books/",
        ],
        &[
            "https://example.com/acme/books/1?lang=fr&x=1",
            "https://example.com/acme/x/books/1",
            "https://example.com/acme/books/1/2",
        ],
    );
}

#[test]
fn non_ascii_values_are_accepted_raw_or_encoded() {
    check(
        "https://example.com/tags/{tag}",
        &[
            "https://example.com/tags/caf\u{e9}",
            "https://example.com/tags/caf%C3%A9",
            "https://example.com/tags/\u{1F980}",
        ],
        &["https://example.com/tags/caf\u{e9} noir"],
    );
    check(
        "https://\u{4f8b}\u{3048}.jp/{id}",
        &["https://\u{4f8b}\u{3048}.jp/1"],
        &["https://\u{4f8b}.jp/1", "https://xn--r8jz45g.jp/1"],
    );
}

#[test]
fn regex_metacharacters_in_literals_are_literal() {
    check(
        "https://x.com/a+b/{id}",
        &["https://x.com/a+b/1"],
        &[
            "https://xxcom/a+b/1",
            "https://x.com/aab/1",
            "https://x.com/aaab/1",
            "https://x.com/ab/1",
        ],
    );
    check(
        "^(a|b)*.?[c]$\\{id}",
        &["^(a|b)*.?[c]$\\1"],
        &[
            "a1",
            "ab1",
            "^(a|b)*.?[c]$1",
            "^(a)*.?[c]$\\1",
            "(a|b)*.?[c]$\\1",
        ],
    );
    check("a.b{?q}", &["a.b", "a.b?q=1"], &["axb", "axb?q=1", "a.b?q"]);
}

#[test]
fn exact_selectors() {
    let s = sel("https://example.com/books/1");
    assert_eq!(s.exact(), Some("https://example.com/books/1"));
    assert!(!s.is_template() && !s.is_any());
    assert!(s.matches("https://example.com/books/1"));
    assert!(!s.matches("https://example.com/books/1/"));
    assert!(!s.matches("https://example.com/books/"));
    assert!(!s.matches("HTTPS://example.com/books/1"));
    // No '{', so a '}' or other template-ish text is just text.
    let s = sel("weird}topic?*");
    assert_eq!(s.exact(), Some("weird}topic?*"));
    assert!(s.matches("weird}topic?*"));
    assert!(!s.matches("weird}topic?"));
    // '*' only means "any" on its own.
    let s = sel("**");
    assert_eq!(s.exact(), Some("**"));
    assert!(!s.matches("x"));
    let s = sel(" *");
    assert!(!s.is_any());
    // Templates are not exact.
    assert_eq!(sel("https://x/{id}").exact(), None);
    assert_eq!(sel("*").exact(), None);
}

#[test]
fn invalid_templates_are_exact_topics() {
    for src in [
        "https://x/{id",
        "https://x/{}",
        "https://x/{=a}",
        "https://x/{!a}",
        "https://x/{a b}",
        "https://x/{a:0}",
        "https://x/{a:10000}",
        "https://x/{a*:3}",
        "https://x/{.}",
        "https://x/{a..b}",
        "https://x/{{a}}",
        "https://x/a}{b}",
        "https://x/{a}}",
        "https://x/{a-b}",
        "https://x/{caf\u{e9}}",
        "{",
    ] {
        let s = sel(src);
        assert!(!s.is_template(), "{src:?}");
        assert_eq!(s.exact(), Some(src), "{src:?}");
        assert!(s.matches(src), "{src:?}");
        assert!(!s.matches("https://x/1"), "{src:?}");
        assert!(!s.matches("https://x/"), "{src:?}");
    }
}
