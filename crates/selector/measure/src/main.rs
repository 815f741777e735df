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
}
