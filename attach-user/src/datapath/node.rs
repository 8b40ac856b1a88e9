//! [`Datapath`]: one node's datapath as this process holds it: the pinned
//! maps, opened on first use, and the object's programs, loaded (or taken
//! from the node's cache of loaded programs) on first use.
//!
//! Pins live under `<PIN_ROOT>/node-<netns cookie>/`: maps by name, links in
//! `links/`, and this build's loaded tc programs in `progs/` (a cache: see
//! [`Datapath::classifier`]). Every engine run reopens the same pinned maps.

use std::{
    collections::HashMap as StdHashMap,
    fs,
    io::ErrorKind as IoKind,
    path::{Path, PathBuf},
};

use attach_common::{CONFIG, TableDef};
use aya::{
    Ebpf, Pod,
    maps::{Array, Map, MapData, PerCpuArray},
    programs::{CgroupSkb, SchedClassifier, Xdp},
};

use super::object::{
    LOG_PIN, Loadable, build_id, cache_program, load_object, load_program, open_pinned,
};
use super::pins::{self, CLSACT_MARK};
use super::progs::PROG_RX_XDP;
use super::table::Table;
use crate::error::{Error, Result};
use crate::features::{TcHooks, tc_hooks};

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// One node's datapath, held open by this process.
pub struct Datapath {
    /// The object, parsed and relocated on first need: when every map is
    /// pinned and the programs are cached, an engine run never needs it
    /// (parsing it was a third of an `add`).
    ebpf: Option<Ebpf>,
    /// Maps opened from their pins (every map is pinned: loading the
    /// object pins those that are not yet).
    pinned: StdHashMap<String, Map>,
    /// The cgroup counter slot the object is loaded with, if any.
    counter: Option<u32>,
    dir: PathBuf,
    /// Programs taken from the `progs/` cache instead of being loaded.
    cached: StdHashMap<String, SchedClassifier>,
    /// Whether this instance may use the cache: not for the per-attachment
    /// instances of `host` counters (their globals differ).
    caches: bool,
    /// Whether new endpoint ports are hooked by tcx links rather than
    /// clsact filters (see [`Datapath::with_port_links`]).
    port_links: bool,
}

/// The cache directory of a node's pins.
const PROGS_DIR: &str = "progs";

impl Datapath {
    /// Checks bpffs is mounted where pins go.
    pub fn check_bpffs() -> Result<()> {
        // SAFETY: plain data filled by the kernel.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        let path = c"/sys/fs/bpf";
        // SAFETY: valid C string and out-pointer.
        let ok = unsafe { libc::statfs(path.as_ptr(), &mut st) } == 0;
        if !ok || st.f_type as i64 != BPF_FS_MAGIC {
            // Not "mount it" alone: under `ip netns exec` a bpffs mounted
            // on its private /sys would be a new, empty instance.
            return Err(Error::system(
                "bpffs is not mounted on /sys/fs/bpf (mount it: mount -t bpf bpf /sys/fs/bpf; \
                 under `ip netns exec`, which gives the process a /sys of its own, run attach \
                 with `nsenter --net=/run/netns/NAME` instead)",
            ));
        }
        Ok(())
    }

    /// Loads the object, reusing (or creating) the maps pinned in `dir`.
    /// Programs are loaded into the kernel only when first attached.
    pub fn open(dir: &Path) -> Result<Self> {
        Self::open_with(dir, None)
    }

    /// [`Datapath::open`], with the cgroup programs counting into slot
    /// `counter` of `attach_cg_stats` (each `host` attachment loads its own).
    pub fn open_counting(dir: &Path, counter: u32) -> Result<Self> {
        Self::open_with(dir, Some(counter))
    }

    fn open_with(dir: &Path, counter: Option<u32>) -> Result<Self> {
        Self::check_bpffs()?;
        let new_node = !dir.join("links").exists();
        for sub in ["links", PROGS_DIR] {
            fs::create_dir_all(dir.join(sub))
                .map_err(|e| Error::system(format!("cannot create {}: {e}", dir.display())))?;
        }
        if new_node && tc_hooks() == TcHooks::Clsact {
            fs::create_dir_all(dir.join(CLSACT_MARK))
                .map_err(|e| Error::system(format!("cannot create {}: {e}", dir.display())))?;
        }
        let maps_pinned = attach_common::pinned_maps().all(|m| dir.join(m).exists());
        // A cached program holds the maps it was loaded with: if one of
        // them is about to be made anew (its pin was removed), the cache is
        // stale.
        if !maps_pinned {
            Self::clear_program_cache(dir, false);
        }
        let mut dp = Self {
            ebpf: None,
            pinned: StdHashMap::new(),
            counter,
            dir: dir.to_owned(),
            cached: StdHashMap::new(),
            caches: counter.is_none(),
            port_links: false,
        };
        // Creating the maps that are not pinned yet takes the object.
        if counter.is_some() || !maps_pinned || !dir.join(LOG_PIN).exists() {
            dp.ebpf()?;
        }
        Ok(dp)
    }

    /// New endpoint ports hooked by tcx links (pinned like any other hook)
    /// where the node hooks by tcx, instead of the clsact filter a port
    /// gets otherwise: a port's clsact qdisc takes the device's ingress
    /// qdisc slot, which a chained CNI plugin needs (`bandwidth` adds an
    /// `ingress` qdisc there); tcx sits beside qdiscs. A filter is quicker
    /// to publish (no RCU grace period), which is why it stays the default.
    pub fn with_port_links(mut self, on: bool) -> Self {
        self.port_links = on && pins::tc_hooks_in(&self.dir) == TcHooks::Tcx;
        self
    }

    /// Whether new ports are hooked by links.
    pub(super) fn port_links(&self) -> bool {
        self.port_links
    }

    /// The object, loaded (its maps taken from, or pinned at, the pins).
    pub(super) fn ebpf(&mut self) -> Result<&mut Ebpf> {
        if self.ebpf.is_none() {
            self.ebpf = Some(load_object(&self.dir, self.counter)?);
        }
        Ok(self.ebpf.as_mut().expect("loaded above"))
    }

    /// Map `name`, from its pin; a pin that is missing is made by loading
    /// the object (the same kernel objects either way).
    fn open_map(&mut self, name: &str) -> Result<Map> {
        if let Some(map) = open_pinned(&self.dir, name) {
            return Ok(map);
        }
        self.ebpf()?;
        open_pinned(&self.dir, name).ok_or_else(|| {
            Error::system(format!(
                "map {name} is not pinned in {}",
                self.dir.display()
            ))
        })
    }

    /// A map of the datapath, held open.
    pub(super) fn map_mut(&mut self, name: &str) -> Result<&mut Map> {
        if !self.pinned.contains_key(name) {
            let map = self.open_map(name)?;
            self.pinned.insert(name.to_owned(), map);
        }
        Ok(self.pinned.get_mut(name).expect("inserted above"))
    }

    /// [`Self::map_mut`], owned.
    pub(super) fn take_map(&mut self, name: &str) -> Result<Map> {
        match self.pinned.remove(name) {
            Some(map) => Ok(map),
            None => self.open_map(name),
        }
    }

    /// Hash map `def`, open.
    pub fn table<K: Pod, V: Pod>(&mut self, def: TableDef<K, V>) -> Result<Table<'_, K, V>> {
        Table::new(self.map_mut(def.name)?)
    }

    /// Array map `def`, open.
    pub(super) fn array<V: Pod>(
        &mut self,
        def: TableDef<u32, V>,
    ) -> Result<Array<&mut MapData, V>> {
        Ok(Array::try_from(self.map_mut(def.name)?)?)
    }

    /// Per-CPU array map `def`, open.
    pub(super) fn per_cpu<V: Pod>(
        &mut self,
        def: TableDef<u32, V>,
    ) -> Result<PerCpuArray<&mut MapData, V>> {
        Ok(PerCpuArray::try_from(self.map_mut(def.name)?)?)
    }

    /// Every entry of per-CPU array map `def` of counters, summed over the
    /// CPUs, in one `BPF_MAP_LOOKUP_BATCH`; a lookup per entry where the
    /// kernel has no batch lookup for per-CPU arrays (5.10 says ENOTSUPP).
    pub(super) fn sum_per_cpu_u64(&mut self, def: TableDef<u32, u64>) -> Result<Vec<u64>> {
        match self.sum_per_cpu_u64_batched(def) {
            Err(Batch::Unsupported) => {
                let counters = self.per_cpu(def)?;
                let len = counters.len();
                (0..len)
                    .map(|k| {
                        Ok(counters
                            .get(&k, 0)?
                            .iter()
                            .fold(0u64, |a, v| a.wrapping_add(*v)))
                    })
                    .collect()
            }
            Err(Batch::Failed(e)) => Err(e),
            Ok(v) => Ok(v),
        }
    }

    fn sum_per_cpu_u64_batched(
        &mut self,
        def: TableDef<u32, u64>,
    ) -> std::result::Result<Vec<u64>, Batch> {
        use std::os::fd::AsFd;
        let name = def.name;
        let cpus = aya::util::nr_cpus()
            .map(|n| n.get() as usize)
            .map_err(|(_, e)| Error::system(format!("possible CPUs: {e}")))?;
        let map = self.map_mut(name)?;
        // Checks the map's type and value size.
        PerCpuArray::<_, u64>::try_from(&mut *map)?;
        let Map::PerCpuArray(data) = map else {
            return Err(Error::system(format!("map {name} is not a per-CPU array")).into());
        };
        let len = data.info()?.max_entries() as usize;
        let mut keys = vec![0u32; len];
        let mut values = vec![0u8; len * cpus * 8];
        let n = crate::sys::bpf_lookup_batch(data.fd().as_fd(), &mut keys, &mut values, cpus * 8)
            .map_err(|e| match e.raw_os_error() {
            Some(ENOTSUPP | libc::EOPNOTSUPP | libc::EINVAL) => Batch::Unsupported,
            _ => Batch::Failed(Error::system(format!("reading {name}: {e}"))),
        })?;
        let mut out = vec![0u64; len];
        for (k, v) in keys.iter().zip(values.chunks_exact(cpus * 8)).take(n) {
            let sum = v
                .as_chunks::<8>()
                .0
                .iter()
                .map(|c| u64::from_ne_bytes(*c))
                .fold(0u64, u64::wrapping_add);
            if let Some(slot) = out.get_mut(*k as usize) {
                *slot = sum;
            }
        }
        Ok(out)
    }

    /// Writes `values` into array map `def` at `first`, `first + 1`, … in
    /// one `BPF_MAP_UPDATE_BATCH` (a syscall per entry cost a tenth of a
    /// millisecond per add when flood rows were rewritten whole).
    pub(super) fn write_array<V: Pod>(
        &mut self,
        def: TableDef<u32, V>,
        first: u32,
        values: &[V],
    ) -> Result<()> {
        let keys: Vec<u32> = (first..).take(values.len()).collect();
        self.write_array_keys(def, &keys, values)
    }

    /// Writes `values[i]` into array map `def` at `keys[i]`, in one
    /// `BPF_MAP_UPDATE_BATCH`.
    pub(super) fn write_array_keys<V: Pod>(
        &mut self,
        def: TableDef<u32, V>,
        keys: &[u32],
        values: &[V],
    ) -> Result<()> {
        use std::os::fd::AsFd;
        let name = def.name;
        let map = self.map_mut(name)?;
        Array::<_, V>::try_from(&mut *map)?;
        let Map::Array(data) = map else {
            return Err(Error::system(format!("map {name} is not an array")));
        };
        crate::sys::bpf_update_batch(data.fd().as_fd(), keys, values)
            .map_err(|e| Error::system(format!("writing {} entries of {name}: {e}", values.len())))
    }

    fn program_pin(dir: &Path, name: &str) -> PathBuf {
        dir.join(PROGS_DIR).join(format!("{name}-{}", build_id()))
    }

    /// Unpins cached programs: all of them, or (`keep_current`) those of
    /// other builds. Best effort: another build's entry is never used anyway.
    pub fn clear_program_cache(dir: &Path, keep_current: bool) {
        let own = format!("-{}", build_id());
        let Ok(entries) = fs::read_dir(dir.join(PROGS_DIR)) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            if keep_current && name.to_string_lossy().ends_with(&own) {
                continue;
            }
            let _ = fs::remove_file(e.path());
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The event ring buffer (drops, and traces when on).
    pub fn events(&mut self) -> Result<aya::maps::RingBuf<MapData>> {
        let map = self.take_map(attach_common::MAP_EVENTS)?;
        Ok(aya::maps::RingBuf::try_from(map)?)
    }

    /// Switches per-decision tracing on or off (drops are always reported).
    pub fn set_trace(&mut self, on: bool) -> Result<()> {
        let mut cfg = self.array(CONFIG)?;
        let cur = cfg.get(&0, 0)?;
        let next = if on {
            cur | attach_common::CFG_TRACE
        } else {
            cur & !attach_common::CFG_TRACE
        };
        cfg.set(0, &next, 0)?;
        Ok(())
    }

    /// A reader of the programs' log lines, into the `log` crate.
    pub fn logger(&mut self) -> Result<aya_log::EbpfLogger<&'static dyn log::Log>> {
        aya_log::EbpfLogger::init(self.ebpf()?)
            .map_err(|e| Error::system(format!("the programs' log buffer: {e}")))
    }

    /// A program of the object, loaded (for attaching, or BPF_PROG_TEST_RUN).
    ///
    /// Loading means a pass of the verifier, about 13 ms per program on a
    /// small VM, and every `add` needs two or three programs (its own, and
    /// the parent's to compare with what is attached). So the first load of
    /// a program by this build pins it in `progs/`, and later engine runs
    /// take it from there.
    pub fn classifier(&mut self, name: &str) -> Result<&mut SchedClassifier> {
        if self.caches && !self.cached.contains_key(name) {
            let loaded_here = self
                .ebpf
                .as_ref()
                .and_then(|e| e.program(name))
                .and_then(|p| p.fd().ok())
                .is_some();
            if !loaded_here
                && let Ok(p) = SchedClassifier::from_pin(Self::program_pin(&self.dir, name))
            {
                self.cached.insert(name.to_owned(), p);
            }
        }
        if self.cached.contains_key(name) {
            return Ok(self.cached.get_mut(name).expect("checked above"));
        }
        let pin = Self::program_pin(&self.dir, name);
        let caches = self.caches;
        let ebpf = self.ebpf()?;
        let fresh = ebpf.program(name).is_some_and(|p| p.fd().is_err());
        let prog: &mut SchedClassifier = load_program(ebpf, name)?;
        if fresh && caches {
            cache_program(prog, name, &pin);
        }
        Ok(prog)
    }

    /// Loads the classifiers `names` that no cache holds yet, in parallel,
    /// and caches them. Verifying is much of the first attach on an idle
    /// node (here about 12 ms for the parent's receive program, 9 for its
    /// host program, 3 for a port's), and the verifier runs each load on
    /// one CPU.
    pub fn preload_classifiers(&mut self, names: &[&str]) -> Result<()> {
        let dir = self.dir.clone();
        let caches = self.caches;
        let wanted: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| !self.cached.contains_key(*n))
            .filter(|n| !(caches && Self::program_pin(&dir, n).exists()))
            .collect();
        if wanted.len() < 2 {
            return Ok(());
        }
        let progs = self
            .ebpf()?
            .programs_mut()
            .filter(|(n, p)| wanted.contains(n) && p.fd().is_err())
            .map(|(n, p)| Ok((n, <&mut SchedClassifier>::try_from(p)?)))
            .collect::<Result<Vec<_>>>()?;
        let loads = std::thread::scope(|s| {
            let threads: Vec<_> = progs
                .into_iter()
                .map(|(name, p)| {
                    let pin = Self::program_pin(&dir, name);
                    s.spawn(move || -> Result<()> {
                        p.load_now()
                            .map_err(|e| Error::from(e).context(format!("loading {name}")))?;
                        if caches {
                            cache_program(p, name, &pin);
                        }
                        Ok(())
                    })
                })
                .collect();
            threads
                .into_iter()
                .map(|t| {
                    t.join()
                        .unwrap_or_else(|_| Err(Error::system("a loader thread panicked")))
                })
                .collect::<Vec<_>>()
        });
        loads.into_iter().collect()
    }

    pub fn xdp_program(&mut self) -> Result<&mut Xdp> {
        self.xdp(PROG_RX_XDP)
    }

    /// An XDP program of the object, loaded.
    pub fn xdp(&mut self, name: &str) -> Result<&mut Xdp> {
        load_program(self.ebpf()?, name)
    }

    /// How this node hooks tc programs (see [`CLSACT_MARK`]).
    pub fn tc_hooks_in(dir: &Path) -> TcHooks {
        pins::tc_hooks_in(dir)
    }

    /// [`Datapath::unpin`] without loading anything: for teardown.
    pub fn unpin_in(dir: &Path, pin: &str) -> Result<()> {
        pins::unpin_in(dir, pin)
    }

    /// Whether a link pin exists in `dir`.
    pub fn link_pinned_in(dir: &Path, pin: &str) -> bool {
        pins::link_pinned_in(dir, pin)
    }

    /// A cgroup_skb program of the object, loaded (for attaching, or
    /// BPF_PROG_TEST_RUN).
    pub fn cgroup_program(&mut self, name: &str) -> Result<&mut CgroupSkb> {
        load_program(self.ebpf()?, name)
    }

    /// Drops the loaded object and removes every pin under `dir`: detaches
    /// every program and frees the maps once nothing else holds them.
    pub fn remove_pins(dir: &Path) -> Result<()> {
        match fs::remove_dir_all(dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == IoKind::NotFound => Ok(()),
            Err(e) => Err(Error::system(format!(
                "cannot remove {}: {e}",
                dir.display()
            ))),
        }
    }
}

/// Why a batched read gave nothing.
enum Batch {
    /// The kernel has no batch lookup for this map's type.
    Unsupported,
    Failed(Error),
}

impl<E: Into<Error>> From<E> for Batch {
    fn from(e: E) -> Self {
        Batch::Failed(e.into())
    }
}

/// The kernel's internal "operation not supported" (not in libc).
const ENOTSUPP: i32 = 524;
