//! Benchmarks of GOS live in `benches/`; run them with `cargo bench -p gos-benches`.
