//! Create leaves nothing behind (issue 10, defect 2): a create killed at any moment leaves no
//! temporary file (the store is formatted while it has no name), and the temporary files of
//! earlier versions are cleaned.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{ARENA, Guarded, PrivateDir, ROLE, Rng, STORE, child_command, config, unique};
use gos_store_shm::ShmStore;

const WAIT: Duration = Duration::from_secs(60);

/// Not a test by itself: a child's side (does nothing without the role variable).
#[test]
fn child() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    common::create_roles(&role, &std::env::var(STORE).expect("store"));
}

/// Issue 10, defect 2: a create killed at any moment (here: SIGKILL at random times during
/// the formatting of a 256 MiB store) leaves no file behind, or a whole store.
#[test]
fn a_create_killed_at_random_moments_leaves_no_temporary_file() {
    let dir = PrivateDir::new("create-kill");
    let mut env = dir.env();
    env.push((ARENA, (256u64 << 20).to_string()));
    // How long a whole create takes here.
    let started = Instant::now();
    let mut whole = Guarded(child_command("create", "s", &env).spawn().expect("spawn"));
    assert!(whole.wait(WAIT).success());
    let full = started.elapsed();
    std::fs::remove_file(dir.0.join("gos-s")).expect("remove");
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for round in 0..8 {
        let mut child = Guarded(child_command("create", "s", &env).spawn().expect("spawn"));
        let at = full.mul_f64(rng.next(100) as f64 / 100.0);
        std::thread::sleep(at);
        child.signal(libc::SIGKILL);
        let status = child.wait(WAIT);
        let files = dir.files();
        match files.as_slice() {
            [] => {}
            [only] if only == "gos-s" => {
                dir.check_and_remove_store(&format!("round {round}"));
            }
            other => panic!("round {round}: killed after {at:?} ({status:?}) it left {other:?}"),
        }
    }
}

/// Issue 10, defect 2: temporary files left by creators of earlier versions (named
/// `.gos-<name>.<pid>.<n>.tmp`), of dead processes or of this process id, are removed, and
/// do not make the create fail.
#[test]
fn stale_temporary_files_of_earlier_versions_are_cleaned() {
    let name = unique("stale");
    let dir = Path::new(gos_store_shm::DEFAULT_DIR);
    let pid = std::process::id();
    let mut stale: Vec<PathBuf> = (0..64)
        .map(|n| dir.join(format!(".gos-{name}.{pid}.{n}.tmp")))
        .collect();
    stale.push(dir.join(format!(".gos-{name}.999999999.0.tmp")));
    for path in &stale {
        std::fs::write(path, b"left by a killed create").expect("write");
    }
    let created = ShmStore::create(&name, config());
    let left: Vec<&PathBuf> = stale.iter().filter(|p| p.exists()).collect();
    for path in &left {
        let _ = std::fs::remove_file(path);
    }
    let _ = ShmStore::remove(&name);
    created.expect("create despite the stale files");
    assert!(left.is_empty(), "left {left:?}");
}
