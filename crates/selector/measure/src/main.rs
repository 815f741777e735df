//! What the registry charges a compiled matcher ([`Selector::heap_size`] plus its entry) against
//! what compiling and holding it really allocates, measured with a counting allocator: never
//! less, and not wildly more. And once the last handle is gone, the memory is back.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};

use ssehub_selector::{MatcherLimits, MatcherRegistry, Selector, Url};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        LIVE.fetch_add(n as isize - l.size() as isize, Relaxed);
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn groups(n: usize, i: usize) -> String {
    let mut s = format!("https://example.com/x{i}");
    for k in 0..n {
        s.push_str(&format!("/:a{k}"));
    }
    s
}

fn template(i: usize) -> String {
    let vars: Vec<String> = (0..64).map(|k| format!("a{k}")).collect();
    format!("https://example.com/x{i}{{?{}}}", vars.join(","))
}

fn main() {
    let hub = Url::parse("https://example.com/.well-known/mercure").unwrap();
    type Make = Box<dyn Fn(&MatcherRegistry, usize) -> Selector>;
    let kinds: Vec<(&str, Make)> = vec![
        ("users/{i}/:rest*", Box::new({
            let hub = hub.clone();
            move |r, i| r.url_pattern(&format!("https://example.com/users/{i}/:rest*"), Some(&hub)).unwrap()
        })),
        ("relative /books/:id/{i}", Box::new({
            let hub = hub.clone();
            move |r, i| r.url_pattern(&format!("/books/:id/{i}"), Some(&hub)).unwrap()
        })),
        ("64 groups", Box::new({
            let hub = hub.clone();
            move |r, i| r.url_pattern(&groups(64, i), Some(&hub)).unwrap()
        })),
        ("regex groups", Box::new({
            let hub = hub.clone();
            move |r, i| r.url_pattern(&format!("https://example.com/{i}/:a(\\d+)/:b(\\w+)-:c([a-z]{{2,8}})"), Some(&hub)).unwrap()
        })),
        ("template users/{id}", Box::new(|r, i| r.parse(&format!("https://example.com/users{i}/{{id}}")).unwrap())),
        ("template 64 query vars", Box::new(|r, i| r.parse(&template(i)).unwrap())),
    ];
    const N: usize = 40;
    for (name, make) in &kinds {
        let r = MatcherRegistry::new(MatcherLimits::unlimited());
        // Warm-up: lazily initialised statics (Unicode tables...) are not the matcher's.
        drop(make(&r, 1_000_000));
        let before = LIVE.load(Relaxed);
        let held: Vec<Selector> = (0..N).map(|i| make(&r, i)).collect();
        let measured = (LIVE.load(Relaxed) - before) as usize / N;
        let charged = r.stats().bytes / N;
        let own = held[0].heap_size();
        println!("{name:26} allocated {measured:>7} B, heap_size {own:>7} B, charged {charged:>7} B");
        assert!(charged >= measured, "{name}: charged {charged} < allocated {measured}");
        assert!(charged <= measured * 3 + 2048, "{name}: charged {charged} for {measured}");
        drop(held);
        assert_eq!(r.stats().bytes, 0);
        let left = LIVE.load(Relaxed) - before;
        assert!(left < 4096, "{name}: {left} bytes left after dropping everything");
    }
    costs();
}

/// Compile and evaluation costs the limits rest on (printed for docs/limits.md).
pub fn costs() {
    use ssehub_selector::{Matched, SelectorIndex};
    let hub = Url::parse("https://example.com/.well-known/mercure").unwrap();
    let time = |name: &str, f: &dyn Fn() -> bool| {
        let t = std::time::Instant::now();
        let ok = f();
        println!("{name:60} {:>10.2?} ({})", t.elapsed(), if ok { "compiled" } else { "refused" });
    };
    time("URL pattern https://example.com/users/42/:rest*", &|| Selector::url_pattern("https://example.com/users/42/:rest*", Some(&hub)).is_ok());
    time("URL pattern, 64 groups", &|| Selector::url_pattern(&groups(64, 1), Some(&hub)).is_ok());
    time("URL pattern, 64 optional groups", &|| {
        let mut s = "https://example.com/x".to_owned();
        for k in 0..64 { s.push_str(&format!("/:a{k}?")); }
        Selector::url_pattern(&s, Some(&hub)).is_ok()
    });
    time("URL pattern, exponential DFA ((?:a|b)*a(?:a|b){20})", &|| Selector::url_pattern("https://example.com/:x((?:a|b)*a(?:a|b){20})", Some(&hub)).is_ok());
    time("URL pattern, exponential DFA ((?:a|b)*a(?:a|b){12})", &|| Selector::url_pattern("https://example.com/:x((?:a|b)*a(?:a|b){12})", Some(&hub)).is_ok());
    time("URL pattern, [\\w\\W]{1,200} twice", &|| Selector::url_pattern("https://example.com/:x([\\w\\W]{1,200}[\\w\\W]{1,200})", Some(&hub)).is_ok());
    time("URL pattern, 30 \\w+ groups", &|| {
        let mut s = "https://example.com/x".to_owned();
        for k in 0..30 { s.push_str(&format!("/:a{k}(\\w+)")); }
        Selector::url_pattern(&s, Some(&hub)).is_ok()
    });
    time("URI template, 64 query variables", &|| Selector::parse(&template(1)).is_ok());
    time("URI template, 32 x {;a*,b} (the slowest within the caps)", &|| {
        Selector::parse(&(0..32).map(|k| format!("{{;a{k}*,b{k}}}")).collect::<String>()).is_ok()
    });
    // Evaluation: 1,024 distinct matchers that all share the topic's prefix (the index cannot
    // narrow them), one topic per publish.
    for (label, topic) in [
        ("a 40-byte topic", "https://example.com/news/7/item-1234".to_owned()),
        ("a 64-segment topic", format!("https://example.com/x{}", "/seg".repeat(64))),
    ] {
        let mut index = SelectorIndex::default();
        let held: Vec<Selector> = (0..1024)
            .map(|i| Selector::url_pattern(&format!("https://example.com/:section/{i}/:item"), Some(&hub)).unwrap())
            .collect();
        for s in &held { index.insert(s); }
        let topics = vec![topic];
        let mut m = Matched::default();
        let n = 200;
        let t = std::time::Instant::now();
        for _ in 0..n { index.matching(&topics, &mut m); }
        println!("1,024 URL patterns one prefix, {label:20} {:>10.2?} per publish ({:.0} ns per matcher)", t.elapsed() / n, t.elapsed().as_nanos() as f64 / n as f64 / 1024.0);
        let held64: Vec<Selector> = (0..1024).map(|i| Selector::url_pattern(&groups(64, i), Some(&hub)).unwrap()).collect();
        let mut index = SelectorIndex::default();
        for s in &held64 { index.insert(s); }
        let t = std::time::Instant::now();
        for _ in 0..n { index.matching(&topics, &mut m); }
        println!("1,024 64-group URL patterns,      {label:20} {:>10.2?} per publish", t.elapsed() / n);
    }
}
