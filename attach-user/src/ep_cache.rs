//! The receive paths' endpoint cache (`attach_ep_cache`): a direct-mapped
//! array in front of the endpoint hash table, so the hot path finds an
//! endpoint with an inlined array lookup instead of a hash table's call, hash
//! and key compare.
//!
//! The hash table stays the authority: the programs fall back to it on any
//! slot that does not hold the frame's key, so a slot left empty only costs
//! speed. A slot must never hold what the table does not: every write to the
//! table's entries goes through here too ([`crate::datapath::Datapath`]),
//! `attach check` compares the two, and `reconcile`/`upgrade` rewrite the
//! cache from the table ([`EpCache::sync`]).
//!
//! Each slot is a seqlock written through a shared mapping of the map (it is
//! `BPF_F_MMAPABLE`) by one writer at a time (the node's lock): `seq` set to
//! [`EP_CACHE_WRITING`], the endpoint written, `seq` set to a new number. A
//! program reads `seq`, the endpoint, `seq` again and takes the endpoint only
//! if both reads are the same number and not `EP_CACHE_WRITING` — on x86,
//! which keeps stores in order with stores and loads with loads. Elsewhere
//! the cache is left empty (every lookup falls back), since the programs have
//! no load barriers.

use std::{
    collections::HashMap as StdHashMap,
    os::fd::{AsFd, AsRawFd},
    ptr::{self, NonNull},
    sync::atomic::{AtomicU32, Ordering, fence},
    time::{Duration, Instant},
};

use attach_common::{
    EP_CACHE_SLOTS, EP_CACHE_WRITING, Endpoint, EndpointKey, EpCacheSlot, ep_cache_slot,
};
use aya::maps::MapData;

use crate::error::{Error, Result};

/// Whether this machine may fill the cache (see the module's comment).
pub const ENABLED: bool = cfg!(any(target_arch = "x86_64", target_arch = "x86"));

const LEN: usize = EP_CACHE_SLOTS as usize * size_of::<EpCacheSlot>();

/// How long a slot may be seen being written before it is taken for one a
/// writer left half written (it died between its stores; nobody will finish
/// it). A live writer holds a slot for a few stores, unless it is preempted
/// in between: far less than this.
const WRITE_PATIENCE: Duration = Duration::from_millis(50);

/// The cache, mapped into this process.
pub struct EpCache {
    slots: NonNull<EpCacheSlot>,
}

// SAFETY: the mapping is shared memory the kernel keeps valid until
// `munmap`; readers go through the seqlock, and writing takes `&mut self`.
unsafe impl Send for EpCache {}
unsafe impl Sync for EpCache {}

/// What [`EpCache::sync`] changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Slots that held what the table did not (or no longer did).
    pub stale: usize,
    /// Table entries entered in a free slot.
    pub filled: usize,
}

impl EpCache {
    /// Maps the cache map `map` (pinned by the datapath).
    pub fn map(map: &MapData) -> Result<Self> {
        let fd = map.fd().as_fd().as_raw_fd();
        // SAFETY: a shared mapping of the map's whole value area; the kernel
        // checks the size and the map's mmapable flag.
        let addr = unsafe {
            libc::mmap(
                ptr::null_mut(),
                LEN,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(Error::system(format!(
                "cannot map the endpoint cache ({}): {}",
                attach_common::MAP_EP_CACHE,
                std::io::Error::last_os_error()
            )));
        }
        Ok(Self {
            slots: NonNull::new(addr.cast()).expect("mmap returned a non-null address"),
        })
    }

    fn slot(&self, index: u32) -> *mut EpCacheSlot {
        assert!(index < EP_CACHE_SLOTS);
        // SAFETY: in bounds (above) of the LEN-byte mapping.
        unsafe { self.slots.as_ptr().add(index as usize) }
    }

    fn seq(&self, index: u32) -> &AtomicU32 {
        // SAFETY: `seq` is a 4-aligned u32 at the start of a slot in the
        // mapping, which lives as long as `self`.
        unsafe { AtomicU32::from_ptr(ptr::addr_of_mut!((*self.slot(index)).seq)) }
    }

    /// Slot `index` as it is now (a consistent read, retried while written),
    /// or `None` for a slot left half written.
    pub fn read(&self, index: u32) -> Option<Endpoint> {
        let mut deadline = None;
        loop {
            let seq = self.seq(index).load(Ordering::Acquire);
            // SAFETY: inside the mapping; a torn read is detected by `seq`.
            let ep = unsafe { ptr::read_volatile(ptr::addr_of!((*self.slot(index)).ep)) };
            fence(Ordering::Acquire);
            if seq != EP_CACHE_WRITING && self.seq(index).load(Ordering::Relaxed) == seq {
                return Some(ep);
            }
            let deadline = *deadline.get_or_insert_with(|| Instant::now() + WRITE_PATIENCE);
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::yield_now();
        }
    }

    fn write(&mut self, index: u32, ep: &Endpoint) {
        let seq = self.seq(index);
        let mut next = seq.load(Ordering::Relaxed).wrapping_add(1);
        if next == EP_CACHE_WRITING {
            next = next.wrapping_add(1);
        }
        seq.store(EP_CACHE_WRITING, Ordering::Relaxed);
        fence(Ordering::Release);
        // SAFETY: inside the mapping; readers check `seq`.
        unsafe { ptr::write_volatile(ptr::addr_of_mut!((*self.slot(index)).ep), *ep) };
        fence(Ordering::Release);
        seq.store(next, Ordering::Release);
    }

    fn holds(ep: &Endpoint, parent_ifindex: u32, mac: &[u8; 6]) -> bool {
        ep.parent_ifindex == parent_ifindex && ep.mac == *mac
    }

    /// Enters `ep` (just entered in the table) in its slot, unless another
    /// key holds the slot: that endpoint keeps it, and `ep` is found in the
    /// table.
    pub fn put(&mut self, ep: &Endpoint) {
        if !ENABLED {
            return;
        }
        let index = ep_cache_slot(ep.parent_ifindex, &ep.mac);
        // A half-written slot holds nothing anyone may keep.
        let free = self.read(index).is_none_or(|now| {
            now.parent_ifindex == 0 || Self::holds(&now, ep.parent_ifindex, &ep.mac)
        });
        if free {
            self.write(index, ep);
        }
    }

    /// Empties the slot of `(parent_ifindex, mac)` if it holds that key, or
    /// was left half written (called before the key leaves the table).
    pub fn remove(&mut self, parent_ifindex: u32, mac: &[u8; 6]) {
        let index = ep_cache_slot(parent_ifindex, mac);
        let mine = self
            .read(index)
            .is_none_or(|now| Self::holds(&now, parent_ifindex, mac));
        if mine {
            self.write(index, &Endpoint::default());
        }
    }

    /// Makes every slot agree with `table` (the endpoint hash table's
    /// entries): slots holding an entry the table lacks or has otherwise are
    /// emptied, free slots take an entry of theirs.
    pub fn sync(&mut self, table: &[(EndpointKey, Endpoint)]) -> SyncReport {
        let mut report = SyncReport::default();
        for (index, _) in self.stale(table) {
            self.write(index, &Endpoint::default());
            report.stale += 1;
        }
        if ENABLED {
            for (key, ep) in table {
                let index = ep_cache_slot(key.parent_ifindex, &key.mac);
                if self.read(index).is_some_and(|now| now.parent_ifindex == 0) {
                    self.write(index, ep);
                    report.filled += 1;
                }
            }
        }
        report
    }

    /// The slots that disagree with `table`, as `(slot, what it holds)`: an
    /// entry the table lacks or has otherwise, in a slot not its own, any
    /// entry where the cache must stay empty (see [`ENABLED`]), or a slot
    /// left half written (`None`).
    pub fn stale(&self, table: &[(EndpointKey, Endpoint)]) -> Vec<(u32, Option<Endpoint>)> {
        let want: StdHashMap<(u32, [u8; 6]), &Endpoint> = table
            .iter()
            .map(|(k, e)| ((k.parent_ifindex, k.mac), e))
            .collect();
        // A filled slot agrees if the cache may be filled here, it is its
        // key's own slot, and the table has that key with this entry.
        let agrees = |i: u32, now: &Endpoint| {
            ENABLED
                && ep_cache_slot(now.parent_ifindex, &now.mac) == i
                && want.get(&(now.parent_ifindex, now.mac)) == Some(&now)
        };
        (0..EP_CACHE_SLOTS)
            .map(|i| (i, self.read(i)))
            .filter(|(i, now)| now.is_none_or(|now| now.parent_ifindex != 0 && !agrees(*i, &now)))
            .collect()
    }
}

impl Drop for EpCache {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, used by nothing after this.
        unsafe { libc::munmap(self.slots.as_ptr().cast(), LEN) };
    }
}

#[cfg(test)]
mod tests {
    use attach_common::EP_CACHE_FLAGS;

    use super::*;

    /// A cache map of the datapath's shape, not pinned (needs root).
    fn cache_map() -> MapData {
        const BPF_MAP_TYPE_ARRAY: u32 = 2;
        let def = aya_obj::Map::new_from_params(
            BPF_MAP_TYPE_ARRAY,
            4,
            size_of::<EpCacheSlot>() as u32,
            EP_CACHE_SLOTS,
            EP_CACHE_FLAGS as u32,
        );
        MapData::create(def, "test_ep_cache", None).expect("creating a cache map (root?)")
    }

    fn ep(parent: u32, last: u8, host: u32) -> Endpoint {
        Endpoint {
            host_ifindex: host,
            parent_ifindex: parent,
            id: host,
            mac: [2, 0, 0, 0, 0, last],
            mode: 1,
            flags: 0,
        }
    }

    /// A key of another MAC that falls in `e`'s slot.
    fn colliding(e: &Endpoint) -> Endpoint {
        let slot = ep_cache_slot(e.parent_ifindex, &e.mac);
        let other = (0..=255u8)
            .flat_map(|a| (0..=255u8).map(move |b| [2, 0, 1, 0, a, b]))
            .find(|m| *m != e.mac && ep_cache_slot(e.parent_ifindex, m) == slot)
            .expect("a colliding MAC");
        Endpoint {
            mac: other,
            host_ifindex: 99,
            id: 99,
            ..*e
        }
    }

    /// Numbered MACs (in their last two bytes, or in a middle byte, on
    /// several parents) never share a slot; the programs' word-wise slot is
    /// the same as user space's.
    #[test]
    fn numbered_macs_take_distinct_slots() {
        let distinct = |keys: Vec<(u32, [u8; 6])>| {
            let n = keys.len();
            let slots: std::collections::HashSet<u32> =
                keys.iter().map(|(p, m)| ep_cache_slot(*p, m)).collect();
            assert_eq!(slots.len(), n);
        };
        distinct(
            (0..4096u32)
                .map(|i| (5, [2, 0, 0, 0, (i >> 8) as u8, i as u8]))
                .collect(),
        );
        distinct(
            (0..1000u32)
                .map(|i| (10 + i / 250, [2, 0xe6, 0, (i >> 8) as u8, i as u8, 1]))
                .collect(),
        );
        distinct((2..66).map(|p| (p, [2, 0, 0, 0, 0, 1])).collect());
        let mac = [2, 0xa7, 0x10, 0x32, 0x54, 0x76];
        let words = [0, 2, 4].map(|i| u16::from_ne_bytes([mac[i], mac[i + 1]]));
        assert_eq!(
            ep_cache_slot(9, &mac),
            attach_common::ep_cache_slot_words(9, words)
        );
        assert!(ep_cache_slot(u32::MAX, &[0xff; 6]) < EP_CACHE_SLOTS);
    }

    #[test]
    fn the_first_key_keeps_its_slot_and_only_its_owner_empties_it() {
        let map = cache_map();
        let mut cache = EpCache::map(&map).unwrap();
        let a = ep(7, 1, 10);
        let slot = ep_cache_slot(7, &a.mac);
        assert_eq!(
            cache.read(slot),
            Some(Endpoint::default()),
            "a new map is empty"
        );
        cache.put(&a);
        assert_eq!(cache.read(slot), Some(a));
        // Same key, new value (a re-made endpoint): rewritten.
        let a2 = Endpoint {
            host_ifindex: 11,
            ..a
        };
        cache.put(&a2);
        assert_eq!(cache.read(slot), Some(a2));
        // Another key in that slot: left to the table.
        let b = colliding(&a);
        cache.put(&b);
        assert_eq!(cache.read(slot), Some(a2));
        cache.remove(b.parent_ifindex, &b.mac);
        assert_eq!(cache.read(slot), Some(a2), "not b's slot to empty");
        // The same MAC on another parent is another key.
        cache.remove(8, &a.mac);
        assert_eq!(cache.read(slot), Some(a2));
        cache.remove(7, &a.mac);
        assert_eq!(cache.read(slot), Some(Endpoint::default()));
        cache.put(&b);
        assert_eq!(
            cache.read(slot),
            Some(b),
            "free again: the next key takes it"
        );
    }

    #[test]
    fn sync_empties_what_the_table_lacks_and_fills_free_slots() {
        let map = cache_map();
        let mut cache = EpCache::map(&map).unwrap();
        let (a, b, c) = (ep(7, 1, 10), ep(7, 2, 20), ep(9, 3, 30));
        cache.put(&a); // in the table, as it is
        cache.put(&Endpoint {
            host_ifindex: 21,
            ..b
        }); // in the table, otherwise
        cache.put(&ep(7, 4, 40)); // not in the table
        let table: Vec<_> = [a, b, c]
            .iter()
            .map(|e| (EndpointKey::new(e.parent_ifindex, e.mac), *e))
            .collect();
        assert_eq!(cache.stale(&table).len(), 2);
        let report = cache.sync(&table);
        assert_eq!(
            report,
            SyncReport {
                stale: 2,
                filled: 2
            }
        );
        for e in [a, b, c] {
            assert_eq!(cache.read(ep_cache_slot(e.parent_ifindex, &e.mac)), Some(e));
        }
        assert_eq!(
            cache.read(ep_cache_slot(7, &[2, 0, 0, 0, 0, 4])),
            Some(Endpoint::default())
        );
        assert!(cache.stale(&table).is_empty());
        assert_eq!(
            cache.sync(&table),
            SyncReport::default(),
            "nothing left to do"
        );
    }

    /// A writer that died between its stores leaves `seq` at
    /// `EP_CACHE_WRITING`: reading the slot ends (`None`), `check` names it,
    /// `sync` and `put` rewrite it, and the numbers written never land on
    /// the marker.
    #[test]
    fn a_slot_left_half_written_is_found_and_rewritten() {
        let map = cache_map();
        let mut cache = EpCache::map(&map).unwrap();
        let a = ep(7, 1, 10);
        let slot = ep_cache_slot(7, &a.mac);
        cache.put(&a);
        cache.seq(slot).store(EP_CACHE_WRITING, Ordering::Relaxed);
        let started = std::time::Instant::now();
        assert_eq!(cache.read(slot), None);
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        let table = [(EndpointKey::new(7, a.mac), a)];
        assert_eq!(cache.stale(&table), vec![(slot, None)]);
        assert_eq!(
            cache.sync(&table),
            SyncReport {
                stale: 1,
                filled: 1
            }
        );
        assert_eq!(cache.read(slot), Some(a));
        // Left half written again: `put` takes it back, `remove` empties it.
        cache.seq(slot).store(EP_CACHE_WRITING, Ordering::Relaxed);
        cache.put(&a);
        assert_eq!(cache.read(slot), Some(a));
        cache.seq(slot).store(EP_CACHE_WRITING, Ordering::Relaxed);
        cache.remove(7, &a.mac);
        assert_eq!(cache.read(slot), Some(Endpoint::default()));
        // The number after the one before the marker skips it.
        cache
            .seq(slot)
            .store(EP_CACHE_WRITING - 1, Ordering::Relaxed);
        cache.put(&a);
        assert_eq!(
            cache.seq(slot).load(Ordering::Relaxed),
            EP_CACHE_WRITING + 1
        );
        assert_eq!(cache.read(slot), Some(a));
    }

    /// A reader racing the writer sees one whole endpoint or the other, never
    /// a mix: the two versions differ in every word the programs use.
    #[test]
    fn a_reader_never_sees_half_a_write() {
        let map = cache_map();
        let mut writer = EpCache::map(&map).unwrap();
        let reader = EpCache::map(&map).unwrap();
        let one = ep(7, 1, 1);
        let two = Endpoint {
            host_ifindex: 2,
            id: 2,
            mode: 2,
            flags: 2,
            ..one
        };
        let slot = ep_cache_slot(7, &one.mac);
        writer.put(&one);
        std::thread::scope(|s| {
            let r = s.spawn(|| {
                let mut seen = [0u64; 2];
                for _ in 0..2_000_000 {
                    let e = reader.read(slot).expect("a live writer finishes");
                    assert!(e == one || e == two, "a torn read: {e:?}");
                    seen[usize::from(e == two)] += 1;
                }
                seen
            });
            let mut i = 0u64;
            while !r.is_finished() {
                writer.put(if i.is_multiple_of(2) { &two } else { &one });
                i += 1;
            }
            let seen = r.join().unwrap();
            assert!(seen[0] > 0 && seen[1] > 0, "the reader saw both: {seen:?}");
        });
    }
}
