//! Fails when a method of a core trait is not forwarded at the boundary.
//!
//! A method with a default body compiles when it is not forwarded, and then
//! every connector behind [`AnySource`](super::AnySource) or
//! [`AnySink`](super::AnySink) silently loses its own version of it. This test
//! reads the traits from siphon-core's source and checks that each of their
//! methods is in every block that forwards them.

const CORE_SOURCE: &str = include_str!("../../../siphon-core/src/source.rs");
const CORE_SINK: &str = include_str!("../../../siphon-core/src/sink.rs");
const HERE_SOURCE: &str = include_str!("source.rs");
const HERE_SINK: &str = include_str!("sink.rs");
const CORE_EVENT: &str = include_str!("../../../siphon-core/src/event.rs");
const HERE_EVENT: &str = include_str!("events.rs");
const CORE_STATE: &str = include_str!("../../../siphon-core/src/state.rs");
const HERE_STATE: &str = include_str!("state.rs");

/// The names of the `fn`s directly inside the block that follows `header`
/// (comments and string literals skipped).
fn methods(text: &str, header: &str) -> Vec<String> {
    let start = text
        .find(header)
        .unwrap_or_else(|| panic!("`{header}` is not in the source any more"));
    let body = &text[start..];
    let bytes = body.as_bytes();
    let mut names = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return names;
                }
            }
            b'f' if depth == 1
                && body[i..].starts_with("fn ")
                && !bytes[i - 1].is_ascii_alphanumeric()
                && bytes[i - 1] != b'_' =>
            {
                let name: String = body[i + 3..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                names.push(name);
            }
            _ => {}
        }
        i += 1;
    }
    panic!("the block after `{header}` does not end");
}

/// Checks that every method of the core trait is in each forwarding block.
fn all_forwarded(core: &str, core_header: &str, here: &str, blocks: &[&str]) {
    let wanted = methods(core, core_header);
    assert!(
        wanted.len() >= 3,
        "found too few methods after `{core_header}`: {wanted:?}"
    );
    for block in blocks {
        let have = methods(here, block);
        let missing: Vec<&String> = wanted.iter().filter(|m| !have.contains(m)).collect();
        assert!(
            missing.is_empty(),
            "`{block}` does not forward {missing:?} of `{core_header}`: add them to the \
             dispatch layer (the `dyn` mirror trait, its implementation and the `Any*` type), \
             or connectors behind it lose their own versions"
        );
    }
}

#[test]
fn every_source_method_is_forwarded() {
    all_forwarded(
        CORE_SOURCE,
        "pub trait Source",
        HERE_SOURCE,
        &[
            "trait DynSource",
            "impl<T> DynSource for $wrapper<T>",
            "impl Source for AnySource",
        ],
    );
}

#[test]
fn every_log_method_is_forwarded() {
    all_forwarded(
        CORE_SOURCE,
        "pub trait LogSource",
        HERE_SOURCE,
        &[
            "trait DynLog",
            "DynLog for Logged<T>",
            "impl LogSource for AnySource",
        ],
    );
}

#[test]
fn every_change_stream_method_is_forwarded() {
    all_forwarded(
        CORE_SOURCE,
        "pub trait ChangeStream",
        HERE_SOURCE,
        &[
            "trait DynChangeStream",
            "DynChangeStream for Stream<C>",
            "impl ChangeStream for AnyChangeStream",
        ],
    );
}

#[test]
fn every_sink_method_is_forwarded() {
    all_forwarded(
        CORE_SINK,
        "pub trait Sink",
        HERE_SINK,
        &[
            "trait DynSink",
            "DynSink for Target<T>",
            "impl Sink for AnySink",
        ],
    );
}

#[test]
fn every_event_sink_method_is_forwarded() {
    // The trait is small: `all_forwarded`'s floor of three methods is for the
    // large ones, so the check is spelled out here.
    let wanted = methods(CORE_EVENT, "pub trait EventSink");
    assert_eq!(wanted, ["delivery", "publish"], "update this test's list");
    for block in [
        "trait DynEventSink",
        "DynEventSink for Publisher<T>",
        "impl EventSink for AnyEventSink",
    ] {
        let have = methods(HERE_EVENT, block);
        let missing: Vec<&String> = wanted.iter().filter(|m| !have.contains(m)).collect();
        assert!(missing.is_empty(), "`{block}` does not forward {missing:?}");
    }
}

#[test]
fn every_state_store_method_is_forwarded() {
    all_forwarded(
        CORE_STATE,
        "pub trait StateStore",
        HERE_STATE,
        &[
            "trait DynState",
            "DynState for Store<T>",
            "impl StateStore for AnyStateStore",
        ],
    );
}

#[test]
fn a_missing_method_is_found() {
    let here = "impl Sink for AnySink {\n    async fn prepare(&self) {}\n}\n";
    let core = "pub trait Sink {\n    fn prepare(&self);\n    fn unfilled(&self) -> X { async { \"}\" } }\n    fn fill(&self);\n}\n";
    assert_eq!(
        methods(core, "pub trait Sink"),
        ["prepare", "unfilled", "fill"]
    );
    let missed = std::panic::catch_unwind(|| {
        all_forwarded(core, "pub trait Sink", here, &["impl Sink for AnySink"])
    });
    assert!(missed.is_err());
}
