//! Admission: `Create` races, the exact fields of limit errors on overwrites, reservations in
//! the stats and under contention, held values across equal-size overwrites.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use bytes::Bytes;
use gos_store::{
    Error, KeyPrefix, Limits, ObjectKey, ObjectStore, ObjectStoreExt, PutMode, PutOptions,
};

use super::{Checked, contenders, ctx, expect_stats, key, lined_up, uniform};
use crate::{Outcome, StoreFactory, SuiteConfig, TestResult, open_handles};

/// Keys each round of [`create_race_has_one_winner`] races for, in the same order on every
/// thread: a thread that falls behind meets keys already created, fails fast and catches up,
/// so the threads keep racing for the same key.
const RACE_KEYS: usize = 1024;

/// Overlapping `Create` pairs [`create_race_has_one_winner`] waits for before it stops.
pub(crate) const MIN_CONTESTED: usize = 128;

/// Concurrent `Create` puts of the same keys, lined up on a spinning barrier, in rounds of
/// 1024 keys: for every key exactly one put succeeds, the rest get `AlreadyExists`,
/// and the key holds the winner's value.
///
/// Threads do not always run at once (a loaded machine), so the scenario counts the pairs of
/// puts of one key whose calls overlapped in time (stamped from one shared sequence before
/// and after each call) and runs rounds until 128 of them were seen, at most `SuiteConfig::race_rounds / 4` rounds; it stops at the first round
/// with two winners. Fewer overlaps than that is reported as skipped, not passed.
pub async fn create_race_has_one_winner<F: StoreFactory>(
    factory: &Arc<F>,
    config: &SuiteConfig,
) -> TestResult {
    let stores = open_handles(&**factory, Limits::UNLIMITED, config.handles).await?;
    // Every round's keys stay until the end: no more rounds than the entries the store
    // accepts (an "unlimited" backend may still bound its entries, as shm does).
    let entry_rounds = usize::try_from(stores[0].limits().max_entries / RACE_KEYS as u64)
        .unwrap_or(usize::MAX)
        .max(1);
    let rounds = (config.race_rounds / 4).clamp(1, entry_rounds);
    let threads = contenders(config);
    let wins: Vec<AtomicUsize> = (0..rounds).map(|_| AtomicUsize::new(0)).collect();
    let winners: Vec<Vec<AtomicUsize>> = (0..rounds)
        .map(|_| (0..RACE_KEYS).map(|_| AtomicUsize::new(0)).collect())
        .collect();
    let keys: Vec<Vec<ObjectKey>> = (0..rounds)
        .map(|r| {
            (0..RACE_KEYS)
                .map(|i| key(&format!("race/{r}/{i}")))
                .collect()
        })
        .collect();
    // When each thread's put of each key started and returned, on one shared sequence.
    let seq = AtomicU64::new(1);
    let stamps: Vec<AtomicU64> = (0..rounds * RACE_KEYS * threads * 2)
        .map(|_| AtomicU64::new(0))
        .collect();
    let stamp = |round: usize, i: usize, t: usize, end: usize| {
        &stamps[((round * RACE_KEYS + i) * threads + t) * 2 + end]
    };
    // Pairs of puts of one key in `round` whose calls overlapped in time.
    let overlaps = |round: usize| -> usize {
        let mut n = 0;
        for i in 0..RACE_KEYS {
            for a in 0..threads {
                for b in a + 1..threads {
                    let (sa, ea) = (stamp(round, i, a, 0), stamp(round, i, a, 1));
                    let (sb, eb) = (stamp(round, i, b, 0), stamp(round, i, b, 1));
                    let load = |x: &AtomicU64| x.load(Ordering::Acquire);
                    n += usize::from(load(sa) < load(eb) && load(sb) < load(ea));
                }
            }
        }
        n
    };
    let ran = AtomicUsize::new(0);
    lined_up(threads, |t, barrier, rt| {
        let store = &stores[t % stores.len()];
        let value = uniform(t as u8 + 1, 64);
        let mut seen = 0;
        for round in 0..rounds {
            barrier.wait()?;
            if round > 0 {
                seen += overlaps(round - 1);
                if wins[round - 1].load(Ordering::Acquire) > RACE_KEYS || seen >= MIN_CONTESTED {
                    return Ok(());
                }
            }
            if t == 0 {
                ran.store(round + 1, Ordering::Release);
            }
            for (i, (k, winner)) in keys[round].iter().zip(&winners[round]).enumerate() {
                stamp(round, i, t, 0).store(seq.fetch_add(1, Ordering::AcqRel), Ordering::Release);
                let result = rt.block_on(store.put_mode(k, value.clone(), PutMode::Create));
                stamp(round, i, t, 1).store(seq.fetch_add(1, Ordering::AcqRel), Ordering::Release);
                match result {
                    Ok(()) => {
                        wins[round].fetch_add(1, Ordering::AcqRel);
                        winner.store(t + 1, Ordering::Release);
                    }
                    Err(Error::AlreadyExists { key }) if &key == k => {}
                    Err(e) => return Err(format!("a racing Create failed with {e:?}")),
                }
            }
        }
        Ok(())
    })?;
    let store = &stores[0];
    let ran = ran.load(Ordering::Acquire);
    let contested: usize = (0..ran).map(overlaps).sum();
    for (round, won) in wins.iter().take(ran).enumerate() {
        let won = won.load(Ordering::Acquire);
        if won != RACE_KEYS {
            return Err(format!(
                "round {round}: {won} lined-up Create puts of {RACE_KEYS} keys succeeded, \
                 want one per key ({contested} overlapping pairs seen)"
            ));
        }
        for (k, winner) in keys[round].iter().zip(&winners[round]) {
            let got = ctx("get", store.get(k).await)?.ok_or("a raced key is missing")?;
            let tag = winner.load(Ordering::Acquire) as u8;
            if got != uniform(tag, 64) {
                return Err(format!("round {round}: `{k}` holds a loser's value"));
            }
        }
    }
    ctx(
        "delete_prefix",
        store
            .delete_prefix(&KeyPrefix::new("race").expect("prefix"))
            .await,
    )?;
    if std::env::var_os("GOS_CONFORMANCE_TIMES").is_some() {
        eprintln!("gos-conformance: create race: {contested} overlapping pairs in {ran} rounds");
    }
    if contested < MIN_CONTESTED {
        return Ok(Outcome::Skipped(format!(
            "only {contested} of {MIN_CONTESTED} racing Create pairs overlapped in {ran} rounds \
             (too few threads ran at once); raise SuiteConfig::race_rounds"
        )));
    }
    Ok(Outcome::Passed)
}

fn expect_err(what: &str, got: gos_store::Result<()>, want: &Error) -> Checked {
    match got {
        Err(e) if format!("{e:?}") == format!("{want:?}") => Ok(()),
        other => Err(format!("{what} gave {other:?}, want exactly {want:?}")),
    }
}

/// `TooLarge`, `StoreFull` and `TooManyEntries` carry exact fields, on overwrites and with a
/// reservation open: `StoreFull.requested` is the new value's full size and `available` is
/// `capacity - bytes - reserved + the old value's size`.
pub async fn limit_error_fields_on_overwrite<F: StoreFactory>(
    factory: &Arc<F>,
    config: &SuiteConfig,
) -> Checked {
    let limits = Limits {
        max_value_size: 2000,
        capacity_bytes: 2500,
        max_entries: 2,
    };
    let stores = open_handles(&**factory, limits, config.handles).await?;
    let (s, t) = (&stores[0], &stores[stores.len() - 1]);
    let (k1, k2, k3) = (key("f/1"), key("f/2"), key("f/3"));
    let too_large = Error::TooLarge {
        size: 2001,
        max: 2000,
    };
    // Where only the size limit applies (room is left for 2001 bytes).
    expect_err(
        "a reservation over the maximum size",
        t.reserve(&k3, 2001, &PutOptions::new()).await.map(drop),
        &too_large,
    )?;
    ctx("put", s.put(&k1, uniform(1, 1000)).await)?;
    expect_err(
        "an overwrite over the maximum size",
        t.put(&k1, uniform(3, 2001)).await,
        &too_large,
    )?;
    ctx("put", s.put(&k2, uniform(2, 1000)).await)?;
    let full = |requested, available| Error::StoreFull {
        requested,
        available,
    };
    expect_err(
        "an overwrite over capacity",
        t.put(&k1, uniform(3, 1600)).await,
        &full(1600, 1500),
    )?;
    expect_err(
        "a third entry",
        t.put(&k3, uniform(3, 10)).await,
        &Error::TooManyEntries { max: 2 },
    )?;
    ctx(
        "an overwrite filling the capacity exactly",
        t.put(&k1, uniform(4, 1500)).await,
    )?;
    ctx("delete", s.delete(&k2).await)?;
    let r = ctx("reserve", s.reserve(&k2, 600, &PutOptions::new()).await)?;
    expect_err(
        "an overwrite over capacity with a reservation open",
        t.put(&k1, uniform(5, 1901)).await,
        &full(1901, 1900),
    )?;
    expect_err(
        "a reservation over the space left",
        t.reserve(&k3, 401, &PutOptions::new()).await.map(drop),
        &full(401, 400),
    )?;
    ctx(
        "an overwrite that fits beside the reservation",
        t.put(&k1, uniform(6, 1900)).await,
    )?;
    expect_stats(&**t, "with a reservation open", 1, 1900, 600).await?;
    drop(r);
    expect_stats(&**s, "after the reservation is dropped", 1, 1900, 0).await?;
    if ctx("get", s.get(&k1).await)? != Some(uniform(6, 1900)) {
        return Err("refused overwrites changed the value".into());
    }
    Ok(())
}

/// A live reservation shows in `stats().reserved`, never in `stats().bytes`, holds its full
/// length against the capacity (an overwrite's old value stays counted until the commit), and
/// a refused commit gives its charge back.
pub async fn reservations_show_in_stats<F: StoreFactory>(
    factory: &Arc<F>,
    config: &SuiteConfig,
) -> Checked {
    let limits = Limits::with_capacity(1000).max_entries(8);
    let stores = open_handles(&**factory, limits, config.handles).await?;
    let (s, t) = (&stores[0], &stores[stores.len() - 1]);
    let (a, b) = (key("res/a"), key("res/b"));
    let mut ra = ctx("reserve", s.reserve(&a, 300, &PutOptions::new()).await)?;
    ra.as_mut_slice().fill(0xA);
    expect_stats(&**t, "one reservation open", 0, 0, 300).await?;
    let avail = ctx("stats", t.stats().await)?.available();
    if avail != 700 {
        return Err(format!("available() is {avail} with 300 of 1000 reserved"));
    }
    ctx("put", t.put(&b, uniform(1, 200)).await)?;
    expect_stats(&**s, "a value beside a reservation", 1, 200, 300).await?;
    let mut rb = ctx("reserve", s.reserve(&b, 400, &PutOptions::new()).await)?;
    rb.as_mut_slice().fill(0xB);
    expect_stats(&**t, "an overwrite reserved", 1, 200, 700).await?;
    expect_err(
        "a put over what reservations leave",
        t.put(&key("res/c"), uniform(2, 101)).await,
        &Error::StoreFull {
            requested: 101,
            available: 100,
        },
    )?;
    ctx("commit", rb.commit().await)?;
    expect_stats(&**t, "after the overwrite's commit", 1, 400, 300).await?;
    if ctx("get", t.get(&b).await)? != Some(uniform(0xB, 400)) {
        return Err("a committed overwrite reads back different".into());
    }
    let rc = ctx("reserve", s.reserve(&b, 100, &PutOptions::create()).await)?;
    expect_stats(&**t, "a Create reserved over a present key", 1, 400, 400).await?;
    match rc.commit().await {
        Err(Error::AlreadyExists { key }) if key == b => {}
        other => return Err(format!("a Create commit over a present key gave {other:?}")),
    }
    expect_stats(&**t, "after a refused commit", 1, 400, 300).await?;
    ctx("commit", ra.commit().await)?;
    expect_stats(&**s, "after both commits", 2, 700, 0).await?;
    Ok(())
}

/// Reservations racing for the last room, lined up on a barrier: exactly as many are admitted
/// as fit, `stats().reserved` says so while they are open, and every refusal is a `StoreFull`
/// for the full length.
pub async fn reservations_never_over_admit<F: StoreFactory>(
    factory: &Arc<F>,
    config: &SuiteConfig,
) -> Checked {
    const L: usize = 1000;
    let stores = open_handles(
        &**factory,
        Limits::with_capacity(10 * L as u64),
        config.handles,
    )
    .await?;
    ctx(
        "put",
        stores[0].put(&key("room/used"), uniform(1, 2500)).await,
    )?;
    let fit = (10 * L - 2500) / L;
    let threads = contenders(config);
    let per_thread = (10 / threads).max(1) + 1;
    let rounds = (config.race_rounds / 10).max(4);
    let admitted = lined_up(threads, |t, barrier, rt| {
        let store = &stores[t % stores.len()];
        let mut counts = Vec::with_capacity(rounds);
        for round in 0..rounds {
            barrier.wait()?;
            let mut held = Vec::new();
            for i in 0..per_thread {
                let k = key(&format!("room/{round}/{t}/{i}"));
                match rt.block_on(store.reserve(&k, L, &PutOptions::new())) {
                    Ok(r) => held.push(r),
                    Err(Error::StoreFull {
                        requested,
                        available,
                    }) if requested == L as u64 && available < L as u64 => {}
                    Err(e) => return Err(format!("a racing reservation failed with {e:?}")),
                }
            }
            counts.push(held.len());
            barrier.wait()?;
            if t == 0 {
                let stats = rt.block_on(store.stats()).map_err(|e| e.to_string())?;
                if stats.bytes != 2500 || stats.reserved > (10 * L - 2500) as u64 {
                    return Err(format!(
                        "round {round}: stats with reservations open: {stats:?}"
                    ));
                }
            }
            barrier.wait()?;
            drop(held);
            barrier.wait()?;
        }
        Ok(counts)
    })?;
    for round in 0..rounds {
        let total: usize = admitted.iter().map(|c| c[round]).sum();
        if total != fit {
            return Err(format!(
                "round {round}: {total} reservations of {L} bytes were admitted where {fit} fit"
            ));
        }
    }
    expect_stats(&*stores[0], "after the races", 1, 2500, 0).await
}

/// A `Bytes` read before an overwrite of the same size (by put and by commit) keeps its
/// contents: a backend must not rewrite the old value's memory in place.
pub async fn held_values_survive_equal_size_overwrite<F: StoreFactory>(
    factory: &Arc<F>,
    config: &SuiteConfig,
) -> Checked {
    const LEN: usize = 4096;
    let stores = open_handles(&**factory, Limits::UNLIMITED, config.handles.max(2)).await?;
    let (a, b) = (&stores[0], &stores[stores.len() - 1]);
    let k = key("held/equal");
    let value = |tag: u8| Bytes::from((0..LEN).map(|i| (i as u8) ^ tag).collect::<Vec<u8>>());
    ctx("put", a.put(&k, value(1)).await)?;
    let first = ctx("get", b.get(&k).await)?.ok_or("missing after put")?;
    ctx("put", a.put(&k, value(2)).await)?;
    let second = ctx("get", b.get(&k).await)?.ok_or("missing after put")?;
    let mut r = ctx("reserve", a.reserve(&k, LEN, &PutOptions::new()).await)?;
    r.as_mut_slice().copy_from_slice(&value(3));
    ctx("commit", r.commit().await)?;
    let third = ctx("get", b.get(&k).await)?.ok_or("missing after commit")?;
    ctx("put", a.put(&k, value(4)).await)?;
    if first != value(1) {
        return Err(
            "a held value changed when its key was overwritten with a value of the same size"
                .into(),
        );
    }
    if second != value(2) {
        return Err(
            "a held value changed when a reservation of the same size was committed over its key"
                .into(),
        );
    }
    if third != value(3) {
        return Err("a held committed value changed when its key was overwritten".into());
    }
    Ok(())
}
