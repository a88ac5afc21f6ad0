//! Malformed, truncated and oversized frames from a raw client are answered with an error,
//! while the gateway keeps serving other requests, on the same connection and on others.
#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use common::*;
use gos_gateway::RemoteStore;
use gos_gateway::frame::{self, FrameKind, Reply, Request, Response, WireOptions};
use gos_store::{Error, ObjectKey, ObjectStore, ObjectStoreExt, PutOptions};

fn bad_frame(response: &Response) -> bool {
    matches!(response, Response::Err(Error::InvalidArgument(m)) if m.starts_with("bad request frame"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_are_answered_with_errors_and_others_are_still_served() {
    let fed = Fed::new();
    let store = memory(1 << 30);
    let mut config = fed.gateway_config("alpha", &["beta", "gamma"]);
    config.limits.max_object = 8 << 20;
    let gw = gos_gateway::Gateway::start(config, store.clone())
        .await
        .unwrap();

    // A well-behaved client keeps working the whole time.
    let good = RemoteStore::connect(fed.client("gamma", &gw))
        .await
        .unwrap();
    let worker = tokio::spawn(async move {
        for i in 0..50u32 {
            let key = ObjectKey::new(format!("good/{i}")).unwrap();
            good.put(&key, pattern(64 << 10, i as u8)).await.unwrap();
            assert_eq!(
                good.get(&key).await.unwrap().unwrap(),
                pattern(64 << 10, i as u8)
            );
        }
    });

    let conn = raw_connection(&fed, "beta", &gw).await;
    let put = |len: u64| Request::Put {
        key: ObjectKey::new("evil/1").unwrap(),
        options: WireOptions::from(&PutOptions::new()),
        len,
        reservation: false,
        transfer: None,
    };
    let valid = frame::encode(FrameKind::Request, &put(4)).unwrap();

    // Garbage.
    assert!(bad_frame(
        &raw_request(&conn, b"GET / HTTP/1.1\r\n\r\n").await
    ));
    // An unknown version.
    let mut v = valid.clone();
    v[2] = 200;
    let r = raw_request(&conn, &v).await;
    assert!(
        bad_frame(&r) && format!("{r:?}").contains("version"),
        "{r:?}"
    );
    // A response where a request belongs.
    let mut k = valid.clone();
    k[3] = FrameKind::Response as u8;
    assert!(bad_frame(&raw_request(&conn, &k).await));
    // A header length of 4 GiB: refused from the prefix, nothing allocated or read.
    let mut huge = valid[..frame::PREFIX_LEN].to_vec();
    huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    let r = raw_request(&conn, &huge).await;
    assert!(
        bad_frame(&r) && format!("{r:?}").contains("larger"),
        "{r:?}"
    );
    // A header cut short, and an empty stream.
    assert!(bad_frame(
        &raw_request(&conn, &valid[..valid.len() - 2]).await
    ));
    assert!(bad_frame(&raw_request(&conn, &[]).await));
    // A header that is not postcard for a request.
    let mut junk = valid[..frame::PREFIX_LEN].to_vec();
    junk[4..8].copy_from_slice(&5u32.to_le_bytes());
    junk.extend_from_slice(&[0xff; 5]);
    assert!(bad_frame(&raw_request(&conn, &junk).await));
    // An object cut short: the header announces 4 bytes, 2 come.
    let mut short = valid.clone();
    short.extend_from_slice(b"ab");
    assert!(bad_frame(&raw_request(&conn, &short).await));
    // An object over the gateway's limit is refused before a byte of it is read.
    let mut big = frame::encode(FrameKind::Request, &put(1 << 40)).unwrap();
    big.extend_from_slice(&[0u8; 1024]);
    assert!(matches!(
        raw_request(&conn, &big).await,
        Response::Err(Error::TooLarge { size, max }) if size == 1 << 40 && max == 8 << 20
    ));
    assert_eq!(
        store.get(&ObjectKey::new("evil/1").unwrap()).await.unwrap(),
        None
    );

    // The same connection still serves a valid request.
    let mut ok = valid.clone();
    ok.extend_from_slice(b"abcd");
    let mut checksum = frame::Checksum::new();
    checksum.update(b"abcd");
    ok.extend_from_slice(&checksum.trailer());
    assert!(matches!(
        raw_request(&conn, &ok).await,
        Response::Ok(Reply::Done)
    ));
    assert_eq!(
        store.get(&ObjectKey::new("evil/1").unwrap()).await.unwrap(),
        Some(Bytes::from_static(b"abcd"))
    );
    worker.await.unwrap();
    assert!(gw.stats().requests_failed >= 9);
}
