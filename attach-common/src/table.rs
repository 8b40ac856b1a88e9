//! [`TableDef`]: a map's pinned name bound to its key and value types.
//!
//! Each map is declared once, beside its name (`MAP_PORTS` and [`crate::PORTS`]
//! side by side): user space opens a map through its definition, so the types
//! it reads and writes an entry with cannot drift from the map the name
//! gives. The eBPF side declares the same maps with the same types (its
//! `maps.rs`); both compile against these layouts.

use core::marker::PhantomData;

/// A map of the datapath: its name (the pin's, and the kernel's) with the
/// types of its keys and values. Arrays have `u32` keys (the index).
pub struct TableDef<K, V> {
    pub name: &'static str,
    // `fn() -> ...`: the definition holds no K or V, so it is `Send`,
    // `Sync` and `Copy` whatever they are.
    _entry: PhantomData<fn() -> (K, V)>,
}

impl<K, V> TableDef<K, V> {
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            _entry: PhantomData,
        }
    }
}

// Not derived: a derive would ask `K: Clone, V: Clone` for no reason.
impl<K, V> Clone for TableDef<K, V> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<K, V> Copy for TableDef<K, V> {}

impl<K, V> core::fmt::Debug for TableDef<K, V> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name)
    }
}
