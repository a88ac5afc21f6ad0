//! Big values: a round trip of [`SuiteConfig::big_value_size`], and values across the length
//! boundaries where a narrow length field would truncate them (16 MiB, and 4 GiB on request).

use std::sync::Arc;

use bytes::Bytes;
use gos_store::{Digest, Limits, ObjectStore, ObjectStoreExt, PutOptions};

use super::{Checked, ctx, key};
use crate::{StoreFactory, SuiteConfig, open_handles};

/// A big value (64 MiB by default) round-trips byte-identical, by put and by reservation.
pub async fn big_value_round_trip<F: StoreFactory>(
    factory: &Arc<F>,
    config: &SuiteConfig,
) -> Checked {
    let n = config.big_value_size;
    let stores = open_handles(
        &**factory,
        Limits::with_capacity(3 * n as u64),
        config.handles,
    )
    .await?;
    let (a, b) = (&stores[0], &stores[stores.len() - 1]);
    let pattern: Vec<u8> = (0..n as u64)
        .map(|i| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8)
        .collect();
    let k = key("big/value");
    ctx("put", a.put(&k, Bytes::from(pattern.clone())).await)?;
    let got = ctx("get", b.get(&k).await)?.ok_or("big value missing")?;
    if got.len() != n || got[..] != pattern[..] {
        return Err(format!("a {n}-byte value came back different"));
    }
    drop(got);
    let k2 = key("big/reserved");
    let mut r = ctx("reserve", a.reserve(&k2, n, &PutOptions::create()).await)?;
    r.as_mut_slice().copy_from_slice(&pattern);
    ctx("commit", r.commit().await)?;
    let got = ctx("get", b.get(&k2).await)?.ok_or("reserved value missing")?;
    if got[..] != pattern[..] {
        return Err("a value written through a reservation came back different".into());
    }
    drop(got);
    // The digest travels with each of them: by put, by reservation, and by a reservation
    // committed with the digest its writer computed.
    let want = Digest::of(&pattern);
    let k3 = key("big/digested");
    let mut r = ctx("reserve", a.reserve(&k3, n, &PutOptions::create()).await)?;
    r.as_mut_slice().copy_from_slice(&pattern);
    ctx("commit_with_digest", r.commit_with_digest(want).await)?;
    for k in [&k, &k2, &k3] {
        let meta = ctx("head", b.head(k).await)?.ok_or("a big value is missing")?;
        if meta.digest.is_some_and(|d| d != want) {
            return Err(format!(
                "head of `{k}` reports digest {:?}, the value's is {want}",
                meta.digest
            ));
        }
        let (bytes, d) = ctx("get_digested", b.get_digested(k).await)?
            .ok_or("get_digested found no big value")?;
        if d != want || bytes[..] != pattern[..] {
            return Err(format!(
                "get_digested of `{k}` gave digest {d}, the value's is {want}"
            ));
        }
    }
    ctx("delete", a.delete(&k3).await)?;
    let stats = ctx("stats", b.stats().await)?;
    if stats.bytes != 2 * n as u64 || stats.entries != 2 {
        return Err(format!("stats after two big values: {stats:?}"));
    }
    Ok(())
}

/// A pattern with no period a truncation or an offset could hide behind.
fn pattern(len: usize) -> Bytes {
    (0..len as u64)
        .map(|i| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8)
        .collect::<Vec<u8>>()
        .into()
}

/// Values of `b - 1`, `b` and `b + 1` bytes for each boundary `b` (2^24, and 2^32 with
/// [`SuiteConfig::huge_values`]) round-trip whole, put through one handle and read through
/// another, and a `b`-byte reservation commits whole: a length kept in 24 (or 32) bits is
/// caught, whatever [`SuiteConfig::big_value_size`] is.
pub async fn values_cross_length_boundaries<F: StoreFactory>(
    factory: &Arc<F>,
    config: &SuiteConfig,
) -> Checked {
    let mut boundaries = vec![1usize << 24];
    if config.huge_values {
        boundaries.push(usize::try_from(1u64 << 32).map_err(|_| "no 4 GiB values on this target")?);
    }
    for b in boundaries {
        let limits = Limits::with_capacity(b as u64 + 1);
        let stores = open_handles(&**factory, limits, config.handles.max(2)).await?;
        let (w, r) = (&stores[0], &stores[stores.len() - 1]);
        let all = pattern(b + 1);
        let k = key("big/boundary");
        for len in [b - 1, b, b + 1] {
            ctx("put", w.put(&k, all.slice(..len)).await)?;
            let got = ctx("get", r.get(&k).await)?.ok_or("a big value is missing")?;
            if got.len() != len || got != all.slice(..len) {
                return Err(format!(
                    "a value of {len} bytes came back as {} bytes{}",
                    got.len(),
                    if got.len() == len { ", different" } else { "" }
                ));
            }
            drop(got);
            let meta = ctx("head", r.head(&k).await)?.ok_or("head found no big value")?;
            if meta.size != len as u64 {
                return Err(format!(
                    "head says {} bytes for a value of {len}",
                    meta.size
                ));
            }
            ctx("delete", w.delete(&k).await)?;
        }
        let mut res = ctx("reserve", w.reserve(&k, b, &PutOptions::new()).await)?;
        res.as_mut_slice().copy_from_slice(&all[..b]);
        ctx("commit", res.commit().await)?;
        let got = ctx("get", r.get(&k).await)?.ok_or("a reserved big value is missing")?;
        if got.len() != b || got != all.slice(..b) {
            return Err(format!(
                "a {b}-byte reservation came back as {} bytes",
                got.len()
            ));
        }
    }
    Ok(())
}
