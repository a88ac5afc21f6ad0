//! A shared-memory store reopened through the facade (as `gos serve` and `Cluster::start` do)
//! gets back at once what a killed process held: here, a reservation of a child process
//! killed with SIGKILL while writing.
//!
//! This test binary re-executes itself (the `child` test with `GOS_TEST_ROLE` set).
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use gos::config::ClusterConfig;
use gos::shm::ShmStore;
use gos::{ObjectKey, ObjectStore, PutOptions};

const ROLE: &str = "GOS_TEST_ROLE";
const NAME: &str = "GOS_TEST_SHM_NAME";
const RESERVED: usize = 1 << 20;

fn config(name: &str) -> ClusterConfig {
    ClusterConfig::from_toml(&format!(
        "fed_id = \"reopen\"\n[topology]\nkind = \"ring\"\nnodes = 2\n[store]\nbackend = \"shm\"\nname = \"{name}\"\ncapacity = \"16MiB\"\n"
    ))
    .unwrap()
}

/// The child: opens the store, reserves, says so, and waits to be killed.
#[test]
fn child() {
    if std::env::var(ROLE).as_deref() != Ok("reserve") {
        return;
    }
    let name = std::env::var(NAME).unwrap();
    let store = ShmStore::open(&name).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let key = ObjectKey::new("fed/node_1/round_1").unwrap();
    let reservation = rt
        .block_on(store.reserve(&key, RESERVED, &PutOptions::new()))
        .unwrap();
    println!("reserved");
    std::thread::sleep(Duration::from_secs(60));
    drop(reservation);
}

struct Removed(String);

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = ShmStore::remove(&self.0);
    }
}

struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_reopened_store_gives_back_what_a_killed_process_reserved() {
    let name = format!("gos-reopen-{}", std::process::id());
    let _removed = Removed(name.clone());
    let created = gos::open_store(&config(&name)).unwrap();
    assert!(created.created);

    let mut child = Killed(
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child", "--nocapture", "--test-threads=1"])
            .env(ROLE, "reserve")
            .env(NAME, &name)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let said = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|line| line.contains("reserved"));
    assert!(said, "the child did not reserve");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let reserved = |store: &dyn ObjectStore| rt.block_on(store.stats()).unwrap().reserved;
    assert_eq!(reserved(&*created.store), RESERVED as u64);

    // SIGKILL: the child's reservation stays charged in the shared tables ...
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    assert_eq!(reserved(&*created.store), RESERVED as u64);

    // ... until the store is reopened through the facade, which gives it back at once.
    let reopened = gos::open_store(&config(&name)).unwrap();
    assert!(!reopened.created);
    assert_eq!(reserved(&*reopened.store), 0);
    assert_eq!(reserved(&*created.store), 0);
}
