//! [`MatcherRegistry`]: compiled once and shared, freed with the last user, bounded globally
//! and per client address and token.

use std::net::IpAddr;

use ssehub_selector::{
    MatcherError, MatcherLimits, MatcherRegistry, Owner, OwnerKind, OwnerLimit, Selector, Url,
};

fn hub() -> Url {
    Url::parse("https://example.com/.well-known/mercure").unwrap()
}

fn ip(s: &str) -> Owner {
    Owner::address(s.parse::<IpAddr>().unwrap())
}

fn limits(
    max_bytes: usize,
    per_client: (usize, usize),
    per_token: (usize, usize),
) -> MatcherLimits {
    MatcherLimits {
        max_bytes,
        per_client: OwnerLimit {
            max_matchers: per_client.0,
            max_bytes: per_client.1,
        },
        per_token: OwnerLimit {
            max_matchers: per_token.0,
            max_bytes: per_token.1,
        },
    }
}

#[test]
fn compiled_once_shared_and_released_with_the_last_user() {
    let r = MatcherRegistry::new(MatcherLimits::default());
    let mut a = r.lease(Some(ip("192.0.2.1")));
    let mut b = r.lease(Some(ip("192.0.2.2")));
    let x = a.url_pattern("/users/:id", Some(&hub())).unwrap();
    let y = b.url_pattern("/users/:id", Some(&hub())).unwrap();
    let t = b.parse("https://example.com/{x}").unwrap();
    let e1 = a.exact("https://example.com/a").unwrap();
    let e2 = r.exact("https://example.com/a").unwrap();
    assert!(Selector::ptr_eq(&x, &y) && Selector::ptr_eq(&e1, &e2));
    assert!(x.matches("https://example.com/users/1") && t.matches("https://example.com/1"));
    // Another base is another matcher.
    let other = Url::parse("https://other.example/.well-known/mercure").unwrap();
    let z = a.url_pattern("/users/:id", Some(&other)).unwrap();
    assert!(!Selector::ptr_eq(&x, &z));
    let stats = r.stats();
    assert_eq!((stats.compiled, stats.shared, stats.owners), (3, 4, 2));
    assert!(stats.bytes > 0);
    drop((x, y, z, t, e1, e2));
    // The leases still count for their owners until dropped; the memory is gone already.
    assert_eq!(
        (r.stats().compiled, r.stats().bytes, r.stats().shared),
        (0, 0, 0)
    );
    drop((a, b));
    assert_eq!(r.stats(), Default::default());
}

#[test]
fn the_byte_budget_refuses_new_matchers_and_frees_as_they_go() {
    let probe = MatcherRegistry::new(MatcherLimits::unlimited());
    let one = probe.url_pattern("/p/0/:x", Some(&hub())).unwrap();
    let each = probe.stats().bytes;
    drop(one);
    let r = MatcherRegistry::new(limits(each * 3 + each / 2, (0, 0), (0, 0)));
    let held: Vec<Selector> = (0..3)
        .map(|i| r.url_pattern(&format!("/p/{i}/:x"), Some(&hub())).unwrap())
        .collect();
    let err = r.url_pattern("/p/3/:x", Some(&hub())).unwrap_err();
    assert!(matches!(err, MatcherError::Full { .. }), "{err}");
    assert!(!err.to_string().contains('\n'));
    // What is already compiled is still handed out, and exact topics are not charged.
    assert!(r.url_pattern("/p/0/:x", Some(&hub())).is_ok());
    assert!(r.exact("https://example.com/p/3").is_ok());
    drop(held);
    assert!(r.url_pattern("/p/3/:x", Some(&hub())).is_ok());
}

#[test]
fn per_client_limits_count_distinct_patterns_of_one_address() {
    let r = MatcherRegistry::new(limits(0, (2, 0), (0, 0)));
    let mut first = r.lease(Some(ip("192.0.2.1")));
    let a = first.url_pattern("/a/:x", Some(&hub())).unwrap();
    let _a_again = first.url_pattern("/a/:x", Some(&hub())).unwrap();
    let b = first.parse("/b/{x}").unwrap();
    assert_eq!(first.len(), 2);
    // A second subscription from the same address: patterns it already holds are free.
    let mut second = r.lease(Some(ip("192.0.2.1")));
    assert!(second.url_pattern("/a/:x", Some(&hub())).is_ok());
    let err = second.url_pattern("/c/:x", Some(&hub())).unwrap_err();
    assert_eq!(
        err,
        MatcherError::OwnerLimit {
            owner: OwnerKind::Client,
            max_matchers: 2,
            max_bytes: 0
        }
    );
    assert!(err.to_string().contains("your address"), "{err}");
    // Exact topics are not counted; another address is not affected; an IPv6 /64 is one.
    for i in 0..10 {
        second.exact(&format!("https://example.com/{i}")).unwrap();
    }
    let mut other = r.lease(Some(ip("192.0.2.2")));
    assert!(other.url_pattern("/c/:x", Some(&hub())).is_ok());
    let mut v6a = r.lease(Some(ip("2001:db8::1")));
    let mut v6b = r.lease(Some(ip("2001:db8::ffff:1")));
    v6a.url_pattern("/d/:x", Some(&hub())).unwrap();
    v6a.url_pattern("/e/:x", Some(&hub())).unwrap();
    assert!(v6b.url_pattern("/f/:x", Some(&hub())).is_err());
    // The first subscription leaves: its address may take another.
    drop(first);
    drop((a, b));
    assert!(second.url_pattern("/c/:x", Some(&hub())).is_ok());
}

#[test]
fn per_client_byte_limits() {
    let probe = MatcherRegistry::new(MatcherLimits::unlimited());
    let one = probe.url_pattern("/p/0/:x", Some(&hub())).unwrap();
    let each = probe.stats().bytes;
    drop(one);
    let r = MatcherRegistry::new(limits(0, (0, each * 2 + each / 2), (0, 0)));
    let mut lease = r.lease(Some(ip("198.51.100.7")));
    lease.url_pattern("/p/0/:x", Some(&hub())).unwrap();
    lease.url_pattern("/p/1/:x", Some(&hub())).unwrap();
    assert!(matches!(
        lease.url_pattern("/p/2/:x", Some(&hub())),
        Err(MatcherError::OwnerLimit {
            owner: OwnerKind::Client,
            ..
        })
    ));
}

#[test]
fn a_token_owner_is_charged_what_the_lease_holds() {
    let r = MatcherRegistry::new(limits(0, (0, 0), (2, 0)));
    let token = r.token_owner("eyJ...");
    let mut one = r.lease(Some(ip("192.0.2.1")));
    one.url_pattern("/a/:x", Some(&hub())).unwrap();
    one.url_pattern("/b/:x", Some(&hub())).unwrap();
    one.add_owner(token).unwrap();
    // The same token from another address: over its limit with a third pattern.
    let mut two = r.lease(Some(ip("192.0.2.2")));
    two.url_pattern("/a/:x", Some(&hub())).unwrap();
    two.url_pattern("/c/:x", Some(&hub())).unwrap();
    let err = two.add_owner(token).unwrap_err();
    assert!(matches!(
        err,
        MatcherError::OwnerLimit {
            owner: OwnerKind::Token,
            ..
        }
    ));
    assert!(err.to_string().contains("your token"), "{err}");
    assert_eq!(r.stats().owners, 3, "refused: nothing charged to the token");
    drop(one);
    two.add_owner(token).unwrap();
    drop(two);
    assert_eq!(r.stats().owners, 0);
}

#[test]
fn invalid_patterns_are_errors_and_cost_nothing() {
    let r = MatcherRegistry::new(MatcherLimits::default());
    assert!(matches!(
        r.url_pattern("/x/(", Some(&hub())),
        Err(MatcherError::Invalid(_))
    ));
    assert!(matches!(r.parse(""), Err(MatcherError::Invalid(_))));
    assert!(matches!(
        r.url_pattern("https://example.com/:x((?:a|b)*a(?:a|b){20})", Some(&hub())),
        Err(MatcherError::Invalid(
            ssehub_selector::SelectorError::TooComplex
        ))
    ));
    assert_eq!(r.stats(), Default::default());
    assert!(r.exact("*").unwrap().is_any());
}

#[test]
fn concurrent_users_share_one_compile_and_leave_nothing() {
    let r = MatcherRegistry::new(MatcherLimits::default());
    std::thread::scope(|s| {
        for t in 0..4 {
            let r = &r;
            s.spawn(move || {
                for round in 0..50 {
                    let mut lease = r.lease(Some(Owner::address([10, 0, 0, t].into())));
                    let held: Vec<Selector> = (0..8)
                        .map(|i| {
                            lease
                                .url_pattern(&format!("/r{}/{i}/:x", round % 3), Some(&hub()))
                                .unwrap()
                        })
                        .collect();
                    assert!(held[0].matches(&format!("https://example.com/r{}/0/y", round % 3)));
                }
            });
        }
    });
    assert_eq!(r.stats(), Default::default());
}
