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

    // The same 100 MiB of work on one 256 KiB buffer that stays in cache: what each costs
    // in compute alone, without the memory traffic (what a fused copy adds to the copy).
    let small = &src[..CHUNK];
    let mut small_dst = vec![0u8; CHUNK];
    let reps = SIZE / CHUNK;
    let copy_cached = time(|| {
        for _ in 0..reps {
            small_dst.copy_from_slice(black_box(small));
        }
    });
    let xxh3_cached = time(|| {
        for _ in 0..reps {
            black_box(xxhash_rust::xxh3::xxh3_128(black_box(small)));
        }
    });
    let crc_cached = time(|| {
        for _ in 0..reps {
            black_box(crc32fast::hash(black_box(small)));
        }
    });
    let blake3_cached = time(|| {
        for _ in 0..reps {
            black_box(blake3::hash(black_box(small)));
        }
    });
    // The store's own fused path (`DigestHasher::copy_and_update`, what an shm put runs).
    let gos_fused = time(|| {
        let mut h = gos_store::DigestHasher::new();
        h.copy_and_update(&mut dst, black_box(&src));
        black_box(h.finish());
    });

    let gbps = |d: Duration| SIZE as f64 / d.as_secs_f64() / 1e9;
    println!("digest of 100 MiB, median of {RUNS} (one run, same buffers)");
    println!(
        "{:<36} {:>10} {:>9} {:>12}",
        "what", "time", "GB/s", "x memcpy"
    );
    for (name, d) in [
        ("memcpy (warm)", copy),
        ("xxh3-128", xxh3),
        ("crc32 (crc32fast)", crc),
        ("blake3", blake3),
        ("memcpy + xxh3-128 fused", fused_xxh3),
        ("memcpy + crc32 fused", fused_crc),
        ("gos DigestHasher::copy_and_update", gos_fused),
        ("in cache: memcpy 256 KiB x400", copy_cached),
        ("in cache: xxh3-128", xxh3_cached),
        ("in cache: crc32", crc_cached),
        ("in cache: blake3", blake3_cached),
    ] {
        println!(
            "{:<36} {:>8.2}ms {:>9.1} {:>12.2}",
            name,
            d.as_secs_f64() * 1e3,
            gbps(d),
            d.as_secs_f64() / copy.as_secs_f64()
        );
    }
}
