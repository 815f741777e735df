//! Topic selectors on arbitrary text: parsing and matching never panic, a selector always
//! matches its own text, and a selector that is not a template (no variables) matches exactly
//! itself and nothing else.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ssehub_selector::Selector;

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    selector: &'a str,
    topics: Vec<&'a str>,
}

fuzz_target!(|input: Input<'_>| {
    let selector = match Selector::parse(input.selector) {
        Ok(s) => s,
        Err(e) => {
            assert!(!e.to_string().contains('\n'));
            return;
        }
    };
    assert_eq!(selector.as_str(), input.selector);
    assert!(
        selector.matches(input.selector),
        "a selector matches its own text"
    );
    for topic in &input.topics {
        let matched = selector.matches(topic);
        if selector.is_any() {
            assert!(matched);
        } else if !selector.is_template() {
            assert_eq!(selector.exact(), Some(input.selector));
            assert_eq!(matched, *topic == input.selector, "{topic:?}");
        }
    }
});
