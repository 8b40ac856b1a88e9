//! [`Table`]: a hash map of the datapath opened through its
//! [`TableDef`](attach_common::TableDef), read and written with its own key
//! and value types, with the conventions every caller wants: a missing key
//! is `None`, removing an absent key is fine.

use std::io::ErrorKind as IoKind;

use aya::{
    Pod,
    maps::{HashMap, Map, MapData, MapError},
};

use crate::error::Result;

/// An open hash map (or LRU hash map) of `K` to `V`.
pub struct Table<'a, K, V> {
    map: HashMap<&'a mut MapData, K, V>,
}

/// A removal whose key was already gone counts as done.
pub(super) fn not_found_ok(r: std::result::Result<(), MapError>) -> Result<()> {
    match r {
        Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
        Err(MapError::SyscallError(e)) if e.io_error.kind() == IoKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

impl<'a, K: Pod, V: Pod> Table<'a, K, V> {
    /// `map` as a table of `K` to `V`: refused if its type or its key or
    /// value size is not that.
    pub(super) fn new(map: &'a mut Map) -> Result<Self> {
        Ok(Self {
            map: HashMap::try_from(map)?,
        })
    }

    /// The entry of `key`, if there is one.
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        match self.map.get(key, 0) {
            Ok(v) => Ok(Some(v)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether `key` has an entry `want` accepts (a failed lookup is no
    /// entry).
    pub fn holds(&self, key: &K, want: impl FnOnce(&V) -> bool) -> bool {
        self.map.get(key, 0).is_ok_and(|v| want(&v))
    }

    /// Whether `key` has an entry.
    pub fn contains(&self, key: &K) -> bool {
        self.holds(key, |_| true)
    }

    /// Enters (or replaces) the entry of `key`.
    pub fn put(&mut self, key: &K, value: &V) -> Result<()> {
        self.map.insert(key, value, 0)?;
        Ok(())
    }

    /// Removes the entry of `key`; absent is fine.
    pub fn remove(&mut self, key: &K) -> Result<()> {
        not_found_ok(self.map.remove(key))
    }

    /// Removes the entry of `key` if it is still one `owned` accepts (an
    /// entry may have been taken over by a newer owner since).
    pub fn remove_if(&mut self, key: &K, owned: impl FnOnce(&V) -> bool) -> Result<()> {
        if self.holds(key, owned) {
            self.remove(key)?;
        }
        Ok(())
    }

    /// Every entry; fails if one cannot be read.
    pub fn entries(&self) -> Result<Vec<(K, V)>> {
        Ok(self.map.iter().collect::<std::result::Result<_, _>>()?)
    }

    /// Every entry that can be read (one removed while the walk passes is
    /// skipped).
    pub fn iter(&self) -> impl Iterator<Item = (K, V)> + '_ {
        self.map.iter().filter_map(|r| r.ok())
    }

    /// Every key that can be read.
    pub fn keys(&self) -> impl Iterator<Item = K> + '_ {
        self.map.keys().filter_map(|r| r.ok())
    }
}
