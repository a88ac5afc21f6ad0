//! The servers of the tests: `gos_store_redis::testing`.
#![allow(unused_imports, unreachable_pub)]

pub use gos_store_redis::testing::*;
