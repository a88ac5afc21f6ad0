//! The lifecycle of an object: reader counts and release, leases on a manual clock, round
//! retention.

use std::collections::BTreeSet;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use gos_store::{
    Clock, Error, Limits, ManualClock, ObjectKey, ObjectStore, ObjectStoreExt, PutOptions, Readers,
    ReleaseOutcome,
};

use super::{Checked, contenders, ctx, expect_stats, key, lined_up, uniform};
use crate::model::CLOCK_START;
use crate::{
    NO_CLOCK, NO_LIFECYCLE, Outcome, StoreFactory, SuiteConfig, TestResult, open_handles,
    open_handles_with,
};

fn remaining(n: u32) -> ReleaseOutcome {
    ReleaseOutcome::Remaining(NonZeroU32::new(n).expect("nonzero"))
}

fn exactly(n: u32) -> Readers {
    Readers::exactly(n).expect("nonzero")
}

async fn expect_release<S: ObjectStore + ?Sized>(
    s: &S,
    k: &ObjectKey,
    want: ReleaseOutcome,
) -> Checked {
    let got = ctx("release", s.release(k).await)?;
    if got != want {
        return Err(format!("release of `{k}` returned {got:?}, want {want:?}"));
    }
    Ok(())
}

async fn expect_readers<S: ObjectStore + ?Sized>(
    s: &S,
    k: &ObjectKey,
    want: Option<Readers>,
) -> Checked {
    let got = ctx("head", s.head(k).await)?.map(|m| m.readers);
    if got != want {
        return Err(format!("head of `{k}` says readers {got:?}, want {want:?}"));
    }
    Ok(())
}

/// A counted object stays readable until its last release, which deletes it (`Deleted`, then
/// `NotFound`); an object without a count is left alone by a release (`Unbounded`); an
/// overwrite resets the count; a reservation commits its count.
pub async fn release_counts_down_then_deletes<F: StoreFactory>(
    factory: &Arc<F>,
    config: &SuiteConfig,
) -> TestResult {
    if config.skip_lifecycle {
        return Ok(Outcome::Skipped(NO_LIFECYCLE.into()));
    }
    let stores = open_handles(&**factory, Limits::UNLIMITED, config.handles.max(2)).await?;
    let (a, b) = (&*stores[0], &*stores[stores.len() - 1]);
    let k = key("rel/counted");
    ctx(
        "put",
        a.put_opts(&k, uniform(1, 100), &PutOptions::new().readers(3))
            .await,
    )?;
    expect_readers(b, &k, Some(exactly(3))).await?;
    for left in [2, 1] {
        expect_release(b, &k, remaining(left)).await?;
        if ctx("get", a.get(&k).await)? != Some(uniform(1, 100)) {
            return Err(format!(
                "the object is gone with {left} release(s) still expected"
            ));
        }
        expect_readers(a, &k, Some(exactly(left))).await?;
    }
    expect_release(a, &k, ReleaseOutcome::Deleted).await?;
    if ctx("get", b.get(&k).await)?.is_some() || ctx("head", b.head(&k).await)?.is_some() {
        return Err("the object is still there after its last release".into());
    }
    expect_release(b, &k, ReleaseOutcome::NotFound).await?;
    expect_stats(b, "after the last release", 0, 0, 0).await?;

    let u = key("rel/unbounded");
    ctx("put", a.put(&u, uniform(2, 10)).await)?;
    expect_release(b, &u, ReleaseOutcome::Unbounded).await?;
    expect_release(b, &u, ReleaseOutcome::Unbounded).await?;
    expect_readers(a, &u, Some(Readers::Unbounded)).await?;
    if ctx("get", a.get(&u).await)? != Some(uniform(2, 10)) {
        return Err("a release changed an object put without a count".into());
    }

    ctx(
        "put",
        a.put_opts(&k, uniform(3, 10), &PutOptions::new().readers(2))
            .await,
    )?;
    expect_release(b, &k, remaining(1)).await?;
    match b
        .put_opts(&k, uniform(4, 10), &PutOptions::create().readers(5))
        .await
    {
        Err(Error::AlreadyExists { .. }) => {}
        other => return Err(format!("a Create over a counted key gave {other:?}")),
    }
    expect_readers(a, &k, Some(exactly(1))).await?;
    ctx(
        "put",
        b.put_opts(&k, uniform(5, 10), &PutOptions::new().readers(3))
            .await,
    )?;
    expect_readers(a, &k, Some(exactly(3))).await?;
    expect_release(a, &k, remaining(2)).await?;

    let r = key("rel/reserved");
    let mut res = ctx(
        "reserve",
        a.reserve(&r, 8, &PutOptions::new().readers(2)).await,
    )?;
    res.as_mut_slice().fill(9);
    expect_release(b, &r, ReleaseOutcome::NotFound).await?;
    ctx("commit", res.commit().await)?;
    expect_readers(b, &r, Some(exactly(2))).await?;
    expect_release(b, &r, remaining(1)).await?;
    expect_release(a, &r, ReleaseOutcome::Deleted).await?;
    expect_release(a, &key("rel/never"), ReleaseOutcome::NotFound).await?;
    Ok(Outcome::Passed)
}

/// `N` lined-up threads release one object `N` times between them: exactly one release
/// deletes it, the others return every count from `N - 1` down to 1 once each, and no reader
/// finds the object gone before its own release.
pub async fn concurrent_releases_delete_exactly_once<F: StoreFactory>(
    factory: &Arc<F>,
    config: &SuiteConfig,
) -> TestResult {
    if config.skip_lifecycle {
        return Ok(Outcome::Skipped(NO_LIFECYCLE.into()));
    }
    const PER_THREAD: usize = 4;
    let stores = open_handles(&**factory, Limits::UNLIMITED, config.handles).await?;
    let threads = contenders(config);
    let readers = (threads * PER_THREAD) as u32;
    let rounds = (config.race_rounds / 4).max(4);
    let keys: Vec<ObjectKey> = (0..rounds).map(|r| key(&format!("rel/race/{r}"))).collect();
    for k in &keys {
        ctx(
            "put",
            stores[0]
                .put_opts(k, uniform(7, 256), &PutOptions::new().readers(readers))
                .await,
        )?;
    }
    let outcomes = lined_up(threads, |t, barrier, rt| {
        let store = &stores[t % stores.len()];
        let mut seen = Vec::with_capacity(rounds * PER_THREAD);
        for k in &keys {
            barrier.wait()?;
            for _ in 0..PER_THREAD {
                match rt.block_on(store.get(k)) {
                    Ok(Some(v)) if v == uniform(7, 256) => {}
                    other => {
                        return Err(format!(
                            "a reader that had not released yet got {:?} for `{k}`",
                            other.map(|v| v.map(|b| b.len()))
                        ));
                    }
                }
                seen.push(rt.block_on(store.release(k)).map_err(|e| e.to_string())?);
            }
        }
        Ok(seen)
    })?;
    for (round, k) in keys.iter().enumerate() {
        let mut deleted = 0;
        let mut counts = BTreeSet::new();
        for per_thread in &outcomes {
            for outcome in &per_thread[round * PER_THREAD..(round + 1) * PER_THREAD] {
                match outcome {
                    ReleaseOutcome::Deleted => deleted += 1,
                    ReleaseOutcome::Remaining(n) => {
                        if !counts.insert(n.get()) {
                            return Err(format!("round {round}: two releases both left {n}"));
                        }
                    }
                    other => return Err(format!("round {round}: a release returned {other:?}")),
                }
            }
        }
        if deleted != 1 || counts != (1..readers).collect() {
            return Err(format!(
                "round {round}: {deleted} releases deleted the object and the others left \
                 {counts:?}; want exactly one delete and each count from {} to 1",
                readers - 1
            ));
        }
        if ctx("head", stores[0].head(k).await)?.is_some() {
            return Err(format!(
                "round {round}: the object outlived its last release"
            ));
        }
    }
    expect_stats(&*stores[0], "after every release", 0, 0, 0).await?;
    Ok(Outcome::Passed)
}

/// On a manual clock: an object is there until the clock reaches its deadline (`head` says
/// it exactly), then gone for every operation, its room free for the next put, entry and
/// reservation; a held `Bytes` stays intact; `sweep` counts what it removed; a committed
/// reservation's lease runs from its commit.
pub async fn expired_object_disappears_and_space_returns<F: StoreFactory>(
    factory: &Arc<F>,
    config: &SuiteConfig,
) -> TestResult {
    if config.skip_lifecycle {
        return Ok(Outcome::Skipped(NO_LIFECYCLE.into()));
    }
    let clock = ManualClock::at(CLOCK_START);
    let limits = Limits::with_capacity(1000).max_entries(3);
    let Some(stores) = open_handles_with(
        &**factory,
        limits,
        config.handles.max(2),
        Some(Arc::new(clock.clone()) as Arc<dyn Clock>),
    )
    .await?
    else {
        return Ok(Outcome::Skipped(NO_CLOCK.into()));
    };
    let (s, t) = (&*stores[0], &*stores[stores.len() - 1]);
    let start = SystemTime::UNIX_EPOCH + CLOCK_START;
    let (a, b, c) = (key("lease/a"), key("lease/b"), key("lease/c"));
    let ten = Duration::from_secs(10);
    ctx(
        "put",
        s.put_opts(&a, uniform(1, 600), &PutOptions::new().lease(ten))
            .await,
    )?;
    ctx(
        "put",
        s.put_opts(
            &b,
            uniform(2, 300),
            &PutOptions::new().readers(2).lease(2 * ten),
        )
        .await,
    )?;
    let meta = ctx("head", t.head(&a).await)?.ok_or("a leased object is missing")?;
    if meta.expires_at != Some(start + ten) || meta.size != 600 {
        return Err(format!(
            "head of a 10 s lease put at the start says {meta:?}"
        ));
    }
    let held = ctx("get", t.get(&a).await)?.ok_or("a leased object is missing")?;
    clock.advance(ten - Duration::from_millis(1));
    if ctx("get", t.get(&a).await)?.is_none() {
        return Err("an object is gone 1 ms before its deadline".into());
    }
    clock.advance(Duration::from_millis(1));
    if ctx("get", t.get(&a).await)?.is_some() || ctx("head", s.head(&a).await)?.is_some() {
        return Err("an object is still there when the clock reaches its deadline".into());
    }
    let keys = ctx("keys", t.keys().await)?;
    let stats = ctx("stats", s.stats().await)?;
    if keys != [b.clone()] || ctx("len", t.len().await)? != 1 || stats.bytes != 300 {
        return Err(format!("after expiry: keys {keys:?}, stats {stats:?}"));
    }
    ctx(
        "a put into the room an expired object left",
        t.put(&c, uniform(3, 700)).await,
    )?;
    if held != uniform(1, 600) {
        return Err("a held value changed when its object expired".into());
    }
    expect_release(t, &a, ReleaseOutcome::NotFound).await?;
    if ctx("delete", t.delete(&a).await)? {
        return Err("delete of an expired key returned true".into());
    }
    ctx("delete", t.delete(&c).await)?;
    ctx(
        "a Create over an expired key",
        s.put_opts(&a, uniform(4, 10), &PutOptions::create()).await,
    )?;
    clock.advance(ten);
    expect_release(s, &b, ReleaseOutcome::NotFound).await?;

    // Room held by expired objects nobody touched is free for every admission.
    ctx("delete", s.delete(&a).await)?;
    for i in 0..3 {
        let k = key(&format!("lease/full/{i}"));
        ctx(
            "put",
            s.put_opts(&k, uniform(5, 300), &PutOptions::new().lease(ten))
                .await,
        )?;
    }
    clock.advance(ten);
    ctx(
        "a new entry where expired ones fill the table",
        t.put(&a, uniform(6, 900)).await,
    )?;
    ctx("delete", t.delete(&a).await)?;
    for i in 0..3 {
        let k = key(&format!("lease/full/{i}"));
        ctx(
            "put",
            s.put_opts(&k, uniform(5, 300), &PutOptions::new().lease(ten))
                .await,
        )?;
    }
    clock.advance(ten);
    let r = ctx(
        "a reservation where expired objects fill the room",
        t.reserve(&a, 1000, &PutOptions::new()).await,
    )?;
    drop(r);

    // sweep counts exactly what expired and nothing else touched.
    let k = key("lease/kept");
    ctx("put", s.put(&k, uniform(7, 10)).await)?;
    for i in 0..2 {
        let k = key(&format!("lease/swept/{i}"));
        ctx(
            "put",
            s.put_opts(&k, uniform(8, 10), &PutOptions::new().lease(ten))
                .await,
        )?;
    }
    clock.advance(ten);
    let swept = ctx("sweep", t.sweep().await)?;
    let again = ctx("sweep", s.sweep().await)?;
    if swept != 2 || again != 0 {
        return Err(format!("sweep removed {swept} then {again}, want 2 then 0"));
    }
    if ctx("keys", s.keys().await)? != [k.clone()] {
        return Err("sweep removed a live object or left an expired one".into());
    }

    // A reservation's lease runs from its commit.
    let mut res = ctx(
        "reserve",
        s.reserve(&c, 4, &PutOptions::new().lease(ten)).await,
    )?;
    res.as_mut_slice().fill(1);
    clock.advance(2 * ten);
    ctx("commit", res.commit().await)?;
    let meta = ctx("head", t.head(&c).await)?.ok_or("a committed leased object is missing")?;
    if meta.expires_at != Some(clock.now() + ten) {
        return Err(format!(
            "a reservation with a 10 s lease committed at {:?} expires at {:?}",
            clock.now(),
            meta.expires_at
        ));
    }
    Ok(Outcome::Passed)
}

/// `delete_rounds_before(fed, n)` removes exactly the round keys `fed/<node>/round_<m>` with
/// `m < n`, and nothing else (other federations, deeper keys, non-round keys under `fed`); a
/// `fed` that is not one segment is an `InvalidKey` error that changes nothing.
pub async fn retention_deletes_exactly_earlier_rounds<F: StoreFactory>(
    factory: &Arc<F>,
    config: &SuiteConfig,
) -> Checked {
    let stores = open_handles(&**factory, Limits::UNLIMITED, config.handles).await?;
    let s = &stores[0];
    let mut all = Vec::new();
    for node in ["n1", "n2"] {
        for round in 0..5 {
            all.push(format!("fed/{node}/round_{round}"));
        }
    }
    all.extend(
        [
            "other/n1/round_0",
            "fedx/n1/round_0",
            "fed/meta",
            "fed/n1/round_1/extra",
            "fed/n1/round_x",
            "fed/n1/round_",
        ]
        .map(String::from),
    );
    for k in &all {
        ctx("put", s.put(&key(k), Bytes::from_static(b"r")).await)?;
    }
    let left = |keep: &dyn Fn(&str) -> bool| -> Vec<ObjectKey> {
        let mut v: Vec<ObjectKey> = all.iter().filter(|k| keep(k)).map(|k| key(k)).collect();
        v.sort();
        v
    };
    let t = &stores[stores.len() - 1];
    for bad in ["", "fed/n1", "a/b/c"] {
        match t.delete_rounds_before(bad, 3).await {
            Err(Error::InvalidKey(_)) => {}
            other => return Err(format!("delete_rounds_before({bad:?}, 3) gave {other:?}")),
        }
    }
    if ctx(
        "delete_rounds_before",
        t.delete_rounds_before("fed", 0).await,
    )? != 0
    {
        return Err("delete_rounds_before(fed, 0) removed something".into());
    }
    let removed = ctx(
        "delete_rounds_before",
        t.delete_rounds_before("fed", 3).await,
    )?;
    let early = ["round_0", "round_1", "round_2"];
    let want =
        left(&|k| !(k.starts_with("fed/n") && early.iter().any(|r| k.ends_with(&format!("/{r}")))));
    let got = ctx("keys", s.keys().await)?;
    if removed != 6 || got != want {
        return Err(format!(
            "delete_rounds_before(fed, 3) removed {removed} (want 6) and left {got:?}, want {want:?}"
        ));
    }
    let removed = ctx(
        "delete_rounds_before",
        s.delete_rounds_before("fed", u64::MAX).await,
    )?;
    let got = ctx("keys", t.keys().await)?;
    let want = left(&|k| {
        !k.starts_with("fed/n") || k.contains("extra") || k.ends_with("_x") || k.ends_with("round_")
    });
    if removed != 4 || got != want {
        return Err(format!(
            "delete_rounds_before(fed, MAX) removed {removed} (want 4) and left {got:?}, want {want:?}"
        ));
    }
    Ok(())
}
