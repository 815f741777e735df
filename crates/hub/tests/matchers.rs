//! The matcher engine through the hub's public API: each distinct compiled matcher evaluated once
//! per publish (outside the hub lock) must deliver exactly what evaluating every subscriber's
//! selectors one by one delivered before, for exact / `*` / URI template / URL pattern mixes and
//! private updates; matchers are released with their last subscriber; and the order guarantees
//! hold while subscribers with new matchers join during publishes.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures_util::StreamExt;
use proptest::prelude::*;
use ssehub_codec::{Frame, Parser};
use ssehub_hub::{Hub, Selector, SubscriberStream, Subscription, Update};
use ssehub_selector::{MatcherLimits, MatcherRegistry, Owner, Url};

fn hub_url() -> Url {
    Url::parse("https://example.com/.well-known/mercure").unwrap()
}

/// The ids of every update the stream has ready now.
fn drain_ids(stream: &mut SubscriberStream, parser: &mut Parser) -> Vec<String> {
    let waker = futures_util::task::noop_waker();
    let mut cx = std::task::Context::from_waker(&waker);
    let mut out = Vec::new();
    while let std::task::Poll::Ready(Some(bytes)) = stream.poll_next_unpin(&mut cx) {
        parser.feed(&bytes);
        while let Some(f) = parser.next_frame() {
            if let Frame::Event(e) = f {
                out.push(e.last_event_id.clone());
            }
        }
    }
    out
}

/// A selector of the test's vocabulary.
fn selector(i: usize) -> Selector {
    let hub = hub_url();
    match i {
        0 => Selector::exact_topic("https://example.com/books/1").unwrap(),
        1 => Selector::exact_topic("https://example.com/users/42/books/1").unwrap(),
        2 => Selector::exact_topic("*").unwrap(),
        3 => Selector::parse("https://example.com/books/{id}").unwrap(),
        4 => Selector::parse("https://example.com/users/{user}/books/{id}").unwrap(),
        5 => Selector::url_pattern("https://example.com/users/42/*", Some(&hub)).unwrap(),
        6 => Selector::url_pattern("/users/:id/:rest*", Some(&hub)).unwrap(),
        7 => Selector::url_pattern("https://EXAMPLE.com/books/:id", Some(&hub)).unwrap(),
        8 => Selector::url_pattern("*://example.com/*", Some(&hub)).unwrap(),
        9 => Selector::url_pattern("https://example.com/users/:id(\\d+)/books/*", None).unwrap(),
        10 => Selector::parse("{scheme}://example.com/books/1").unwrap(),
        _ => Selector::exact_topic("urn:x:1").unwrap(),
    }
}

const SELECTORS: usize = 12;

const TOPICS: [&str; 9] = [
    "https://example.com/books/1",
    "https://EXAMPLE.com:443/books/2",
    "https://example.com/users/42/books/1",
    "/users/7/books/1",
    "https://example.com/users/x/books/1",
    "http://example.com/books/1",
    "urn:x:1",
    "https://other.example/books/1",
    "https://example.com/users/42",
];

/// The naive rule: a subscriber gets an update when one of its selectors matches one of the
/// topics and, for a private update, one of its authorized selectors does too.
fn wants(
    selectors: &[Selector],
    authorized: Option<&[Selector]>,
    topics: &[&str],
    private: bool,
) -> bool {
    let any = |sels: &[Selector]| sels.iter().any(|s| topics.iter().any(|t| s.matches(t)));
    any(selectors) && (!private || authorized.is_some_and(any))
}

#[derive(Debug, Clone)]
struct SubSpec {
    selectors: Vec<usize>,
    /// Index into the shared token grants (several subscribers share one `Arc`), or none.
    token: Option<usize>,
}

#[derive(Debug, Clone)]
struct Publish {
    topics: Vec<usize>,
    private: bool,
}

fn sub_spec() -> impl Strategy<Value = SubSpec> {
    (
        prop::collection::vec(0..SELECTORS, 1..4),
        prop::option::of(0..3usize),
    )
        .prop_map(|(selectors, token)| SubSpec { selectors, token })
}

fn publish() -> impl Strategy<Value = Publish> {
    (prop::collection::vec(0..TOPICS.len(), 1..4), any::<bool>())
        .prop_map(|(topics, private)| Publish { topics, private })
}

fn grants() -> Vec<Arc<[Selector]>> {
    vec![
        vec![selector(5)].into(),
        vec![selector(3), selector(9)].into(),
        vec![selector(2)].into(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Subscribers join and leave between publishes; every one gets exactly the updates the
    /// naive per-subscriber rule says, in order.
    #[test]
    fn delivers_what_per_subscriber_evaluation_delivered(
        steps in prop::collection::vec(
            prop_oneof![
                3 => sub_spec().prop_map(Step::Join),
                1 => any::<prop::sample::Index>().prop_map(Step::Leave),
                4 => publish().prop_map(Step::Publish),
            ],
            1..40,
        ),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let _guard = rt.enter();
        let hub = Hub::builder().heartbeat(None).build();
        let grants = grants();
        struct Live {
            spec: SubSpec,
            stream: SubscriberStream,
            parser: Parser,
            expected: Vec<String>,
        }
        let mut live: Vec<Live> = Vec::new();
        for step in steps {
            match step {
                Step::Join(spec) => {
                    let mut s = Subscription::new();
                    for &i in &spec.selectors {
                        s = s.selector(selector(i));
                    }
                    if let Some(t) = spec.token {
                        s = s.authorized(grants[t].clone());
                    }
                    let stream = hub.subscribe(s).unwrap();
                    live.push(Live { spec, stream, parser: Parser::new(), expected: Vec::new() });
                }
                Step::Leave(i) => {
                    if !live.is_empty() {
                        let mut gone = live.swap_remove(i.index(live.len()));
                        let got = drain_ids(&mut gone.stream, &mut gone.parser);
                        prop_assert_eq!(got, gone.expected);
                    }
                }
                Step::Publish(p) => {
                    let topics: Vec<&str> = p.topics.iter().map(|&i| TOPICS[i]).collect();
                    let mut update = Update::new(topics[0], "x").private(p.private);
                    for t in &topics[1..] {
                        update = update.topic(*t);
                    }
                    let id = hub.publish_now(update).unwrap();
                    for l in &mut live {
                        let sels: Vec<Selector> = l.spec.selectors.iter().map(|&i| selector(i)).collect();
                        let auth = l.spec.token.map(|t| &*grants[t]);
                        if wants(&sels, auth, &topics, p.private) {
                            l.expected.push(id.clone());
                        }
                    }
                }
            }
        }
        for mut l in live {
            let got = drain_ids(&mut l.stream, &mut l.parser);
            prop_assert_eq!(got, l.expected, "{:?}", l.spec);
        }
        prop_assert_eq!(hub.stats().matchers, 0, "every matcher left with its subscribers");
    }
}

#[derive(Debug, Clone)]
enum Step {
    Join(SubSpec),
    Leave(prop::sample::Index),
    Publish(Publish),
}

#[tokio::test]
async fn one_matcher_for_many_subscribers_and_nothing_left_after_them() {
    let registry = MatcherRegistry::new(MatcherLimits::default());
    let hub = Hub::builder().heartbeat(None).build();
    let mut streams = Vec::new();
    for i in 0..200u32 {
        let mut lease = registry.lease(Some(Owner::address([10, 0, (i % 4) as u8, 1].into())));
        let mut s = Subscription::new();
        for k in 0..4 {
            s = s.selector(
                lease
                    .url_pattern(&format!("/feeds/{k}/:item"), Some(&hub_url()))
                    .unwrap(),
            );
        }
        s = s.selector(
            lease
                .url_pattern(&format!("/users/{i}/*"), Some(&hub_url()))
                .unwrap(),
        );
        streams.push((hub.subscribe(s).unwrap(), lease));
    }
    assert_eq!(hub.stats().matchers, 4 + 200);
    assert_eq!(registry.stats().compiled, 4 + 200);
    assert_eq!(
        hub.subscribers_matching("https://example.com/feeds/2/x"),
        200
    );
    assert_eq!(hub.subscribers_matching("/users/7/inbox"), 1);
    hub.publish(Update::new("https://example.com/feeds/1/a", "x"))
        .await
        .unwrap();
    assert_eq!(hub.stats().deliveries, 200);
    drop(streams);
    assert_eq!(hub.stats().matchers, 0);
    assert_eq!(
        registry.stats(),
        Default::default(),
        "compiled matchers freed with their users"
    );
}

#[tokio::test]
async fn a_refused_subscription_releases_its_matchers() {
    let hub = Hub::builder().heartbeat(None).max_subscribers(1).build();
    let hub_url = hub_url();
    let _first = hub
        .subscribe(
            Subscription::new().selector(Selector::url_pattern("/a/:x", Some(&hub_url)).unwrap()),
        )
        .unwrap();
    let refused = hub.subscribe(
        Subscription::new().selector(Selector::url_pattern("/b/:x", Some(&hub_url)).unwrap()),
    );
    assert!(refused.is_err());
    assert_eq!(hub.stats().matchers, 1);
    assert_eq!(hub.subscribers_matching("/b/1"), 0);
}

/// Subscribers with matchers new to the hub join while publishers publish: each gets exactly
/// the matching updates published after it joined (its stream's head id), once and in order,
/// whether its matcher was in the index when a publish evaluated it or joined in between
/// (evaluated under the lock).
#[test]
fn order_holds_while_new_matchers_join_during_publishes() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let hub = Hub::builder().heartbeat(None).history_size(100_000).build();
    let hub_url = hub_url();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let published = std::sync::Mutex::new(Vec::<(u64, usize)>::new());
    let seq_of = |id: &str| -> u64 { id.rsplit('-').next().unwrap().parse().unwrap() };
    let joined = std::thread::scope(|scope| {
        for p in 0..2 {
            let (hub, stop, published) = (&hub, &stop, &published);
            scope.spawn(move || {
                let mut n = 0usize;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let t = (n * 2 + p) % 8;
                    let id = hub
                        .publish_now(Update::new(format!("https://example.com/t/{t}/x"), "d"))
                        .unwrap();
                    published.lock().unwrap().push((seq_of(&id), t));
                    n += 1;
                }
            });
        }
        let mut joined = Vec::new();
        for i in 0..300usize {
            // Distinct text (so a new matcher each time), same meaning: topic t = i % 8.
            let pattern = format!("https://example.com/t/{}/:v{i}", i % 8);
            let stream = hub
                .subscribe(
                    Subscription::new()
                        .selector(Selector::url_pattern(&pattern, Some(&hub_url)).unwrap()),
                )
                .unwrap();
            let head = stream.cursor().map_or(0, seq_of);
            joined.push((i % 8, head, stream));
            if i % 50 == 49 {
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        joined
    });
    let published = published.into_inner().unwrap();
    let mut checked = 0;
    for (t, head, mut stream) in joined {
        let mut parser = Parser::new();
        let got: Vec<u64> = drain_ids(&mut stream, &mut parser)
            .iter()
            .map(|id| seq_of(id))
            .collect();
        let want: BTreeSet<u64> = published
            .iter()
            .filter(|&&(seq, topic)| topic == t && seq > head)
            .map(|&(seq, _)| seq)
            .collect();
        assert!(got.windows(2).all(|w| w[0] < w[1]), "in order, once each");
        assert_eq!(
            got.iter().copied().collect::<BTreeSet<u64>>(),
            want,
            "topic {t} after {head}"
        );
        checked += got.len();
    }
    assert!(checked > 0);
    eprintln!(
        "{checked} deliveries checked; matcher evaluations under the lock: {}",
        hub.stats().late_matcher_evaluations
    );
}

/// Replay is scanned in bounded steps (a subscriber with many patterns asking for everything
/// retained must not hold the hub lock for the whole scan), and still arrives complete, in
/// order, joined with live delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_in_bounded_steps_is_complete_and_ordered() {
    let hub = Hub::builder().heartbeat(None).history_size(5_000).build();
    let hub_url = hub_url();
    let mut want = Vec::new();
    for i in 0..3_000u32 {
        let topic = format!("https://example.com/s{}/{}", i % 50, i);
        let id = hub.publish(Update::new(topic, "x")).await.unwrap();
        if i % 50 < 40 {
            want.push(id);
        }
    }
    let mut s = Subscription::new().last_event_id("earliest");
    for k in 0..40 {
        s = s.selector(Selector::url_pattern(&format!("/s{k}/:n"), Some(&hub_url)).unwrap());
    }
    for k in 100..180 {
        s = s.selector(Selector::url_pattern(&format!("/nothing{k}/*"), Some(&hub_url)).unwrap());
    }
    let mut stream = hub.subscribe(s).unwrap();
    // Live updates published while it catches up come after the replayed ones.
    for i in 0..20u32 {
        let id = hub
            .publish(Update::new(format!("https://example.com/s1/live{i}"), "x"))
            .await
            .unwrap();
        want.push(id);
    }
    let mut parser = Parser::new();
    let mut got = Vec::new();
    while got.len() < want.len() {
        let Ok(Some(bytes)) =
            tokio::time::timeout(std::time::Duration::from_secs(5), stream.next()).await
        else {
            break;
        };
        parser.feed(&bytes);
        while let Some(f) = parser.next_frame() {
            if let Frame::Event(e) = f {
                got.push(e.last_event_id.clone());
            }
        }
    }
    assert_eq!(got.len(), want.len());
    assert_eq!(got, want);
}
