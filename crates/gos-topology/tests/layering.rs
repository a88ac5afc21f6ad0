//! Architecture invariant: the routing core (graphs, messages, routing, adaptation, counters)
//! knows nothing about tokio; only `manager.rs` does.

const CORE: [(&str, &str); 9] = [
    ("lib.rs", include_str!("../src/lib.rs")),
    ("graph.rs", include_str!("../src/graph.rs")),
    ("connectivity.rs", include_str!("../src/connectivity.rs")),
    ("routing.rs", include_str!("../src/routing.rs")),
    ("message.rs", include_str!("../src/message.rs")),
    ("node.rs", include_str!("../src/node.rs")),
    ("adapt.rs", include_str!("../src/adapt.rs")),
    ("stats.rs", include_str!("../src/stats.rs")),
    ("error.rs", include_str!("../src/error.rs")),
];

#[test]
fn the_routing_core_does_not_use_tokio() {
    for (file, text) in CORE {
        let code = text.split("#[cfg(test)]").next().unwrap_or(text);
        assert!(
            !code.lines().any(|l| l.trim_start().starts_with("use tokio")
                || l.contains("tokio::")
                || l.contains(".await")),
            "{file} uses tokio or async code; keep it in manager.rs"
        );
    }
}
