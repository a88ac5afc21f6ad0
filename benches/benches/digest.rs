//! Which digest travels with an object: each candidate over 100 MiB, beside a warm memcpy of
//! the same 100 MiB, and fused with the copy (hash each 256 KiB chunk right after copying it,
//! while it is in cache), all in one run.
//!
//! `cargo bench -p gos-benches --bench digest`

use std::hint::black_box;
use std::time::{Duration, Instant};

const SIZE: usize = 100 << 20;
const CHUNK: usize = 256 << 10;
const RUNS: usize = 15;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

fn time(mut f: impl FnMut()) -> Duration {
    f(); // warm
    median(
        (0..RUNS)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .collect(),
    )
}

fn main() {
    // Some bench harness flags (`--bench`) arrive as arguments; this binary takes none.
    let src: Vec<u8> = (0..SIZE)
        .map(|i| (i as u8).wrapping_mul(31) ^ (i >> 12) as u8)
        .collect();
    let mut dst = vec![0u8; SIZE];
    dst.copy_from_slice(&src); // fault the destination in: the copy below is warm

    let copy = time(|| dst.copy_from_slice(black_box(&src)));
    let xxh3 = time(|| {
        black_box(xxhash_rust::xxh3::xxh3_128(black_box(&src)));
    });
    let crc = time(|| {
        black_box(crc32fast::hash(black_box(&src)));
    });
    let blake3 = time(|| {
        black_box(blake3::hash(black_box(&src)));
    });
    let fused_xxh3 = time(|| {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        for (d, s) in dst.chunks_mut(CHUNK).zip(src.chunks(CHUNK)) {
            d.copy_from_slice(s);
            h.update(d);
        }
        black_box(h.digest128());
    });
    let fused_crc = time(|| {
        let mut h = crc32fast::Hasher::new();
        for (d, s) in dst.chunks_mut(CHUNK).zip(src.chunks(CHUNK)) {
            d.copy_from_slice(s);
            h.update(d);
        }
        black_box(h.finalize());
    });

    let gbps = |d: Duration| SIZE as f64 / d.as_secs_f64() / 1e9;
    println!("digest of 100 MiB, median of {RUNS} (one run, same buffers)");
    println!(
        "{:<28} {:>10} {:>9} {:>12}",
        "what", "time", "GB/s", "x memcpy"
    );
    for (name, d) in [
        ("memcpy (warm)", copy),
        ("xxh3-128", xxh3),
        ("crc32 (crc32fast)", crc),
        ("blake3", blake3),
        ("memcpy + xxh3-128 fused", fused_xxh3),
        ("memcpy + crc32 fused", fused_crc),
    ] {
        println!(
            "{:<28} {:>8.2}ms {:>9.1} {:>12.2}",
            name,
            d.as_secs_f64() * 1e3,
            gbps(d),
            d.as_secs_f64() / copy.as_secs_f64()
        );
    }
}
