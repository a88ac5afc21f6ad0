//! `Limits` a store enforces and the `StoreStats` it reports.

/// What a store accepts. Every limit is checked before a put changes anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Limits {
    /// The largest value accepted, in bytes ([`Error::TooLarge`](crate::Error::TooLarge)).
    pub max_value_size: u64,
    /// The total bytes of all values ([`Error::StoreFull`](crate::Error::StoreFull)).
    pub capacity_bytes: u64,
    /// The most keys held at once ([`Error::TooManyEntries`](crate::Error::TooManyEntries)).
    pub max_entries: u64,
}

impl Limits {
    /// No limits at all (every field `u64::MAX`).
    pub const UNLIMITED: Limits = Limits {
        max_value_size: u64::MAX,
        capacity_bytes: u64::MAX,
        max_entries: u64::MAX,
    };

    /// Limits with the given capacity and a value size and entry count bounded only by it.
    pub fn with_capacity(capacity_bytes: u64) -> Self {
        Limits {
            max_value_size: capacity_bytes,
            capacity_bytes,
            max_entries: u64::MAX,
        }
    }

    /// Sets the maximum value size.
    pub fn max_value_size(mut self, bytes: u64) -> Self {
        self.max_value_size = bytes;
        self
    }

    /// Sets the maximum number of entries.
    pub fn max_entries(mut self, entries: u64) -> Self {
        self.max_entries = entries;
        self
    }

    /// Checks a value size against [`Limits::max_value_size`].
    pub fn check_value_size(&self, size: u64) -> crate::Result<()> {
        if size > self.max_value_size {
            return Err(crate::Error::TooLarge {
                size,
                max: self.max_value_size,
            });
        }
        Ok(())
    }
}

impl Default for Limits {
    /// 4 GiB of capacity, values up to 1 GiB, a million entries.
    fn default() -> Self {
        Limits {
            max_value_size: 1 << 30,
            capacity_bytes: 4 << 30,
            max_entries: 1 << 20,
        }
    }
}

/// A snapshot of a store's occupancy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct StoreStats {
    /// Number of live keys held (a reservation holds none).
    pub entries: u64,
    /// Bytes of all committed, live values held (never live reservations, never expired
    /// objects).
    pub bytes: u64,
    /// Bytes held by live reservations (not yet committed or dropped), each its full length;
    /// they count against the capacity too.
    pub reserved: u64,
    /// The capacity in bytes.
    pub capacity_bytes: u64,
}

impl StoreStats {
    /// Bytes still free: the capacity minus committed values and live reservations.
    pub fn available(&self) -> u64 {
        self.capacity_bytes
            .saturating_sub(self.bytes)
            .saturating_sub(self.reserved)
    }
}
