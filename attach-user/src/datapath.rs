//! The eBPF datapath of one node: loading the programs, attaching them with
//! pinned links (so they outlive this process), and the maps they share.
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

use std::net::IpAddr;

pub(crate) mod devmap;
mod redirect;
mod unowned;

pub use unowned::{Owned, Unowned};

use attach_common::{
    CG_COUNTER_GLOBAL, CgroupStats, Direction, Endpoint, EndpointKey, EndpointStats, EpIpKey,
    FLOOD_TABLE_SIZE, FdbEntry, FdbKey, Ip4Key, Ip6Key, IpvlanParent, MAP_CG_STATS, MAP_DEVS,
    MAP_ENDPOINTS, MAP_EP_CACHE, MAP_EP_IPS, MAP_EP_STATS, MAP_FLOOD, MAP_IP4_EPS, MAP_IP6_EPS,
    MAP_IPVL_PARENTS, MAP_NEST_IDS, MAP_NEST_PORTS, MAP_NEST_VLANS, MAP_PARENTS, MAP_PORTS,
    MAP_RT_PORTS, MAP_SW_FDB, MAP_SW_FLOOD, MAP_SW_PORTS, MAP_SWITCHES, MAP_VERDICTS, MAX_PARENTS,
    MAX_PORTS_PER_PARENT, MAX_PORTS_PER_SWITCH, NestKey, NestedEp, ParentCfg, RouterPort, SwPort,
    Switch, Verdict,
};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, Map, MapData, MapError, PerCpuArray, PerCpuValues},
    programs::{
        CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, LinkOrder, Program, ProgramError,
        SchedClassifier, TcAttach, TcAttachType, Xdp, XdpMode,
        links::{FdLink, PinnedLink},
    },
};

use crate::ep_cache::EpCache;
use crate::error::{Error, Result};
use crate::features::{TcHooks, tc_hooks};
use crate::tc_filter::Filter;

/// The compiled programs (built from attach-ebpf by build.rs).
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/attach"));
/// The same programs for kernels without `bpf_loop` (before 5.17), which
/// refuse a program that so much as names a loop callback.
pub static EBPF_OBJECT_COMPAT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/attach-compat"));

/// Chooses the build of the programs: `compat` (the one for kernels
/// without `bpf_loop`) or `loop`; unset: by the kernel. For tests of the
/// compat build on a newer kernel, and as a way out should a kernel's
/// helper misbehave.
pub const EBPF_BUILD_ENV: &str = "ATTACH_EBPF_BUILD";

/// Whether this process uses the build for kernels without `bpf_loop`.
pub fn compat_build() -> bool {
    static COMPAT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *COMPAT.get_or_init(|| match std::env::var(EBPF_BUILD_ENV).as_deref() {
        Ok("compat") => true,
        Ok("loop") => false,
        _ => !crate::features::Feature::BpfLoop.present(),
    })
}

/// The build of the programs for this kernel.
pub fn ebpf_object() -> &'static [u8] {
    if compat_build() {
        EBPF_OBJECT_COMPAT
    } else {
        EBPF_OBJECT
    }
}

pub const PROG_RX: &str = "attach_rx";
pub const PROG_TX: &str = "attach_tx";
pub const PROG_HOST: &str = "attach_host";
pub const PROG_RX_XDP: &str = "attach_rx_xdp";
pub const PROG_IPVL_RX: &str = "attach_ipvl_rx";
pub const PROG_IPVL_TX: &str = "attach_ipvl_tx";
pub const PROG_SW: &str = "attach_sw";
pub const PROG_BR_GUARD: &str = "attach_br_guard";
pub const PROG_RT_TX: &str = "attach_rt_tx";
pub const PROG_RT_IN: &str = "attach_rt_in";
pub const PROG_NEST_TX: &str = "attach_nest_tx";
pub const PROG_NEST_RX: &str = "attach_nest_rx";
pub const PROG_NEST_TAP: &str = "attach_nest_tap";
pub const PROG_CG_IN: &str = "attach_cg_in";
pub const PROG_CG_EG: &str = "attach_cg_eg";

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Pin of the programs' aya-log buffer (kernel name `AYA_LOGS`), shared by
/// every program instance of the node so the agent reads them all.
pub const LOG_PIN: &str = "attach_logs";

/// Pin names of the links of a parent and of an endpoint port.
pub fn parent_links(ifindex: u32) -> [String; 3] {
    [
        format!("parent-{ifindex}-rx"),
        format!("parent-{ifindex}-host"),
        format!("parent-{ifindex}-xdp"),
    ]
}

/// Pin name of the ipvlan receive program's link on a parent.
pub fn ipvlan_parent_link(ifindex: u32) -> String {
    format!("parent-{ifindex}-ipvl")
}

/// Pin name of the switch program's link on an uplink.
pub fn uplink_link(ifindex: u32) -> String {
    format!("uplink-{ifindex}-sw")
}

/// Name of an endpoint port's transmit hook. It is not a pin: ports are
/// hooked with a filter (see [`crate::tc_filter`]), found by the ifindex this
/// name carries; it names the hook in records, checks and upgrades.
pub fn port_link(host_ifindex: u32) -> String {
    format!("port-{host_ifindex}-tx")
}

/// The place of the tc hook named `pin` as a cls_bpf filter: its device,
/// direction and priority. The priorities keep the order the tcx links have
/// (nested and ipvlan receive first, as they pass on what is not theirs).
/// None for names of other hooks (XDP, cgroup).
pub fn tc_place(pin: &str) -> Option<Filter> {
    let (prefix, rest) = pin.split_once('-')?;
    let (index, role) = rest.split_once('-')?;
    let ifindex = index.parse().ok()?;
    let (at, priority) = match (prefix, role) {
        ("port", "tx") => (TcAttachType::Ingress, PORT_PRIORITY),
        ("parent" | "tap", "nest") => (TcAttachType::Ingress, 2),
        ("parent", "ipvl") => (TcAttachType::Ingress, 3),
        ("parent", "rx") => (TcAttachType::Ingress, 4),
        ("parent", "rt") => (TcAttachType::Ingress, 5),
        ("uplink", "sw") => (TcAttachType::Ingress, 6),
        ("parent", "host") => (TcAttachType::Egress, 4),
        _ => return None,
    };
    Some(Filter {
        ifindex,
        at,
        priority,
    })
}

/// The priority of a port's filter (every port is hooked by a filter).
const PORT_PRIORITY: u16 = 1;

/// Where a hook is: a pinned link, or a filter found by its place.
enum Hook {
    Link(PathBuf),
    Filter(Filter),
}

/// Directory whose presence in a node's pin directory says the node hooks
/// its tc programs with clsact filters. Decided when the node's first hook
/// is made and kept until `reset`, so one node never mixes the two ways,
/// whatever a later process's environment says.
const CLSACT_MARK: &str = "tc-clsact";

/// Pin name of the router's inbound program on an uplink.
pub fn router_uplink_link(ifindex: u32) -> String {
    format!("parent-{ifindex}-rt")
}

/// Pin name of the nested receive program on a VM's uplink (in the VM).
pub fn nested_uplink_link(ifindex: u32) -> String {
    format!("parent-{ifindex}-nest")
}

/// Pin name of the nested program on a VM's tap (on the host).
pub fn tap_link(ifindex: u32) -> String {
    format!("tap-{ifindex}-nest")
}

/// Pin names of the ingress and egress links of a `host` attachment's
/// cgroup counters.
pub fn cgroup_links(counter_id: u32) -> [String; 2] {
    [
        format!("cgroup-{counter_id}-in"),
        format!("cgroup-{counter_id}-eg"),
    ]
}

/// What `attach_tc`/`attach_xdp` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attached {
    /// The pinned link already ran this program.
    Kept,
    /// The pinned link was switched to this build of the program.
    Updated,
    /// Newly attached and pinned.
    New,
}

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
}

/// The cache directory of a node's pins.
const PROGS_DIR: &str = "progs";

/// Identifies this build's object: cached programs of another build are
/// never used (`attach upgrade` removes them).
/// (An FNV-1a hash of the object, computed by build.rs.)
fn build_id() -> &'static str {
    if compat_build() {
        include_str!(concat!(env!("OUT_DIR"), "/attach-compat.id"))
    } else {
        include_str!(concat!(env!("OUT_DIR"), "/attach.id"))
    }
}

/// The tag (instruction hash) of loaded program `id`.
fn program_tag(id: u32) -> Option<u64> {
    aya::programs::loaded_programs()
        .filter_map(|p| p.ok())
        .find(|p| p.id() == id)
        .map(|p| p.tag())
}

/// Refuses a flood row longer than `max`, or than the programs walk on a
/// kernel without `bpf_loop`.
fn check_row_len(len: usize, max: u32, who: &str, what: &str) -> Result<()> {
    if len > max as usize {
        return Err(Error::conflict(format!(
            "{who} can carry at most {max} {what}"
        )));
    }
    let open = attach_common::OPEN_WALK_MAX;
    if len > open as usize && compat_build() {
        return Err(Error::conflict(format!(
            "{who} can carry at most {open} {what} on this kernel ({}): longer flood \
             rows need the bpf_loop helper (Linux 5.17 and later, {max} there)",
            crate::features::kernel_release()
        )));
    }
    Ok(())
}

/// Maps that hold only counters: made anew when a build changes their
/// shape.
const COUNTER_MAPS: [&str; 2] = [MAP_VERDICTS, attach_common::MAP_EVENTS];

/// The id of the program of the link pinned at `path`.
fn link_program_id(path: &Path) -> Option<u32> {
    let link = PinnedLink::from_pin(path).ok()?;
    Some(FdLink::from(link).info().ok()?.program_id())
}

/// Pins a program this build just loaded where later engine runs take it
/// from. Best effort: without the pin a later run loads it again.
fn cache_program(prog: &mut SchedClassifier, name: &str, pin: &Path) {
    if let Err(e) = prog.pin(pin) {
        tracing::debug!("caching {name} at {}: {e}", pin.display());
    }
}

/// A program type of the object that can be loaded on first use.
pub(crate) trait Loadable {
    fn is_loaded(&self) -> bool;
    fn load_now(&mut self) -> std::result::Result<(), ProgramError>;
}

macro_rules! loadable {
    ($($t:ty),*) => {$(
        impl Loadable for $t {
            fn is_loaded(&self) -> bool {
                self.fd().is_ok()
            }
            fn load_now(&mut self) -> std::result::Result<(), ProgramError> {
                self.load()
            }
        }
    )*};
}
loadable!(SchedClassifier, Xdp, CgroupSkb);

/// Program `name` of `ebpf`, loaded into the kernel if it is not yet.
pub(crate) fn load_program<'a, P: Loadable>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut P>
where
    &'a mut P: TryFrom<&'a mut Program, Error = ProgramError>,
{
    let p: &'a mut P = ebpf
        .program_mut(name)
        .ok_or_else(|| Error::system(format!("program {name} missing from the object")))?
        .try_into()?;
    if !p.is_loaded() {
        p.load_now()
            .map_err(|e| Error::from(e).context(format!("loading {name}")))?;
    }
    Ok(p)
}

fn not_found_ok(r: std::result::Result<(), MapError>) -> Result<()> {
    match r {
        Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
        Err(MapError::SyscallError(e)) if e.io_error.kind() == IoKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

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
        };
        // Creating the maps that are not pinned yet takes the object.
        if counter.is_some() || !maps_pinned || !dir.join(LOG_PIN).exists() {
            dp.ebpf()?;
        }
        Ok(dp)
    }

    /// The object, loaded (its maps taken from, or pinned at, the pins).
    fn ebpf(&mut self) -> Result<&mut Ebpf> {
        if self.ebpf.is_none() {
            self.ebpf = Some(Self::load_object(&self.dir, self.counter)?);
        }
        Ok(self.ebpf.as_mut().expect("loaded above"))
    }

    fn load_object(dir: &Path, counter: Option<u32>) -> Result<Ebpf> {
        let log_pin = dir.join(LOG_PIN);
        let config_pin = dir.join(attach_common::MAP_CONFIG);
        // A load writes the section's initial value into its map, pinned or
        // not: that value is the switches as they are now.
        let config = match Self::open_pinned(dir, attach_common::MAP_CONFIG) {
            Some(map) => Array::<_, u32>::try_from(map)
                .and_then(|a| a.get(&0, 0))
                .unwrap_or(0),
            None => {
                Self::pin_config_map(&config_pin)?;
                0
            }
        };
        let mut loader = EbpfLoader::new();
        loader
            .default_map_pin_directory(dir)
            .map_pin_path("AYA_LOGS", log_pin.as_path())
            .map_pin_path(attach_common::CONFIG_SECTION, config_pin.as_path())
            .override_global(attach_common::CONFIG_GLOBAL, &config, true);
        let value = counter.unwrap_or(0);
        if counter.is_some() {
            loader.override_global(CG_COUNTER_GLOBAL, &value, true);
        }
        // A map whose shape changed between builds cannot be reused: one
        // holding only counters is made anew (its counts restart; the
        // previous build's programs keep the old one until their links are
        // updated), one holding state is refused with the way out.
        let mut replaced = Vec::new();
        loop {
            match loader.load(ebpf_object()) {
                Err(aya::EbpfError::MapError(MapError::IncompatiblePinnedMap { name, .. }))
                    if COUNTER_MAPS.contains(&name.as_str()) && !replaced.contains(&name) =>
                {
                    tracing::warn!("{name}: another build's shape; made anew, its counts restart");
                    let _ = fs::remove_file(dir.join(&name));
                    replaced.push(name);
                }
                Err(aya::EbpfError::MapError(e @ MapError::IncompatiblePinnedMap { .. })) => {
                    return Err(Error::system(format!(
                        "loading the eBPF datapath: {e} (pinned by another build of attach; \
                         `attach reset` detaches everything and removes the pins, then attach \
                         again)"
                    )));
                }
                other => {
                    return other.map_err(|e| Error::from(e).context("loading the eBPF datapath"));
                }
            }
        }
    }

    /// Makes and pins the config map before the loader would: made by the
    /// loader, a data section's map is named after the section
    /// (`.data.attach_co`), and tools find ours by name (`attach_config`).
    /// The loader then takes it as the section's map (same shape).
    fn pin_config_map(pin: &Path) -> Result<()> {
        const BPF_MAP_TYPE_ARRAY: u32 = 2;
        let def = aya_obj::Map::new_from_params(BPF_MAP_TYPE_ARRAY, 4, 4, 1, 0);
        let map = MapData::create(def, attach_common::MAP_CONFIG, None)
            .map_err(|e| Error::from(e).context("creating the config map"))?;
        map.pin(pin).map_err(|e| {
            Error::system(format!(
                "cannot pin the config map at {}: {e}",
                pin.display()
            ))
        })
    }

    /// Map `name` opened from its pin in `dir`, if it is pinned there.
    fn open_pinned(dir: &Path, name: &str) -> Option<Map> {
        let data = MapData::from_pin(dir.join(name)).ok()?;
        Map::from_map_data(data).ok()
    }

    /// Map `name`, from its pin; a pin that is missing is made by loading
    /// the object (the same kernel objects either way).
    fn open_map(&mut self, name: &str) -> Result<Map> {
        if let Some(map) = Self::open_pinned(&self.dir, name) {
            return Ok(map);
        }
        self.ebpf()?;
        Self::open_pinned(&self.dir, name).ok_or_else(|| {
            Error::system(format!(
                "map {name} is not pinned in {}",
                self.dir.display()
            ))
        })
    }

    /// A map of the datapath, held open.
    fn map_mut(&mut self, name: &str) -> Result<&mut Map> {
        if !self.pinned.contains_key(name) {
            let map = self.open_map(name)?;
            self.pinned.insert(name.to_owned(), map);
        }
        Ok(self.pinned.get_mut(name).expect("inserted above"))
    }

    /// [`Self::map_mut`], owned.
    fn take_map(&mut self, name: &str) -> Result<Map> {
        match self.pinned.remove(name) {
            Some(map) => Ok(map),
            None => self.open_map(name),
        }
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
        let map = self.map_mut(attach_common::MAP_CONFIG)?;
        let mut cfg: Array<_, u32> = Array::try_from(map)?;
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

    fn link_path(&self, name: &str) -> PathBuf {
        self.dir.join("links").join(name)
    }

    pub fn has_link(&self, name: &str) -> bool {
        Self::link_pinned_in(&self.dir, name)
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
        if dir.join(CLSACT_MARK).exists() {
            TcHooks::Clsact
        } else {
            TcHooks::Tcx
        }
    }

    /// Where hook `pin` of the node pinned in `dir` is. A link pin that
    /// exists is the hook whatever the node's way.
    fn hook_in(dir: &Path, pin: &str) -> Hook {
        let link = dir.join("links").join(pin);
        match tc_place(pin) {
            Some(f) if f.priority == PORT_PRIORITY => Hook::Filter(f),
            Some(f) if Self::tc_hooks_in(dir) == TcHooks::Clsact && !link.exists() => {
                Hook::Filter(f)
            }
            _ => Hook::Link(link),
        }
    }

    fn hook(&self, pin: &str) -> Hook {
        Self::hook_in(&self.dir, pin)
    }

    /// Whether hook `pin` still has its program on `ifindex` (a link or a
    /// filter dies with its device; a pin can outlive both).
    pub fn tcx_pin_alive(&self, pin: &str, ifindex: u32, at: TcAttachType) -> bool {
        match self.hook(pin) {
            Hook::Filter(f) => f.ifindex == ifindex && f.at == at && f.program_id().is_some(),
            Hook::Link(path) => {
                let Some(id) = link_program_id(&path) else {
                    return false;
                };
                SchedClassifier::query_tcx(ifindex, at)
                    .map(|(_, progs)| progs.iter().any(|p| p.id() == id))
                    .unwrap_or(false)
            }
        }
    }

    /// The id of the program behind hook `pin`: a filter, or a pinned link.
    fn hook_program_id(&self, pin: &str) -> Option<u32> {
        match self.hook(pin) {
            Hook::Filter(f) => f.program_id(),
            Hook::Link(path) => link_program_id(&path),
        }
    }

    /// The tag (instruction hash) of the program behind hook `pin`.
    fn pinned_program_tag(&self, pin: &str) -> Option<u64> {
        program_tag(self.hook_program_id(pin)?)
    }

    /// Whether the link pinned as `pin` runs this build of `prog` (an
    /// upgrade leaves links running the old one until updated).
    pub fn pin_runs_current(&mut self, prog: &str, pin: &str) -> Result<bool> {
        let current = if prog == PROG_RX_XDP {
            self.xdp_program()?.info()?
        } else {
            self.classifier(prog)?.info()?
        };
        let Some(id) = self.hook_program_id(pin) else {
            return Ok(false);
        };
        // The very program (the cached one, usually): no need to look
        // through every program of the system for the pinned one's tag.
        Ok(id == current.id() || program_tag(id) == Some(current.tag()))
    }

    /// Checks that `prog` is attached on `ifindex` by the link pinned as
    /// `pin` and is this build's; `what` names the program in errors.
    pub fn check_tcx(
        &mut self,
        prog: &str,
        pin: &str,
        ifindex: u32,
        at: TcAttachType,
        what: &str,
    ) -> Result<()> {
        if !self.tcx_pin_alive(pin, ifindex, at) {
            return Err(Error::system(format!(
                "the {what} program is not attached ({pin})"
            )));
        }
        if !self.pin_runs_current(prog, pin)? {
            return Err(Error::system(format!(
                "the {what} program ({pin}) is not this build's {prog}"
            )));
        }
        Ok(())
    }

    /// Attaches a tcx program on `ifindex` and pins its link as `pin`. A live
    /// pin running an older build of the program is switched to this one in
    /// place (`bpf_link_update`: atomic, no packet sees no program).
    pub fn attach_tc(
        &mut self,
        prog: &str,
        ifindex: u32,
        at: TcAttachType,
        pin: &str,
    ) -> Result<Attached> {
        self.attach_tc_ordered(prog, ifindex, at, pin, LinkOrder::default())
    }

    /// [`Self::attach_tc`] before every program already on the hook.
    pub fn attach_tc_first(
        &mut self,
        prog: &str,
        ifindex: u32,
        at: TcAttachType,
        pin: &str,
    ) -> Result<Attached> {
        self.attach_tc_ordered(prog, ifindex, at, pin, LinkOrder::first())
    }

    fn attach_tc_ordered(
        &mut self,
        prog: &str,
        ifindex: u32,
        at: TcAttachType,
        pin: &str,
        order: LinkOrder,
    ) -> Result<Attached> {
        if self.tcx_pin_alive(pin, ifindex, at) {
            return self.update_link(prog, pin, false);
        }
        let path = match self.hook(pin) {
            Hook::Filter(f) => {
                // Not alive: no filter is there to remove first.
                f.attach(self.classifier(prog)?)
                    .map_err(|e| e.context(format!("attaching {prog} to ifindex {ifindex}")))?;
                return Ok(Attached::New);
            }
            Hook::Link(path) => path,
        };
        if Self::tc_hooks_in(&self.dir) == TcHooks::Tcx {
            crate::features::Feature::Tcx.require(&format!("attaching {prog} (tcx)"))?;
        }
        self.unpin(pin)?;
        let p = self.classifier(prog)?;
        let id = p
            .attach(
                ifindex,
                TcAttach::Tcx {
                    attach_type: at,
                    order,
                },
            )
            .map_err(|e| {
                Error::from(e).context(format!("attaching {prog} to ifindex {ifindex}"))
            })?;
        let link: FdLink = p.take_link(id)?.try_into()?;
        link.pin(&path)?;
        Ok(Attached::New)
    }

    /// Hooks `prog` on port `ifindex`, a host-side veth this add has just
    /// made: nothing can be on it yet, so no query first.
    pub fn hook_new_port(&mut self, prog: &str, ifindex: u32) -> Result<()> {
        let place = tc_place(&port_link(ifindex)).expect("a port's hook has a place");
        place
            .attach(self.classifier(prog)?)
            .map_err(|e| e.context(format!("attaching {prog} to ifindex {ifindex}")))
    }

    /// Attaches the XDP receive program on a parent: native mode, or generic
    /// when the driver cannot (returned: "native" or "generic").
    pub fn attach_xdp(&mut self, ifindex: u32, pin: &str) -> Result<&'static str> {
        self.unpin(pin)?;
        let path = self.link_path(pin);
        let p = self.xdp_program()?;
        let (id, mode) = match p.attach(ifindex, XdpMode::Driver) {
            Ok(id) => (id, "native"),
            Err(native) => {
                let id = p.attach(ifindex, XdpMode::Skb).map_err(|generic| {
                    Error::from(generic).context(format!(
                        "attaching XDP to ifindex {ifindex} (native mode failed too: {})",
                        crate::error::chain(&native)
                    ))
                })?;
                (id, "generic")
            }
        };
        let link: FdLink = p.take_link(id)?.try_into()?;
        link.pin(&path)?;
        Ok(mode)
    }

    /// A cgroup_skb program of the object, loaded (for attaching, or
    /// BPF_PROG_TEST_RUN).
    pub fn cgroup_program(&mut self, name: &str) -> Result<&mut CgroupSkb> {
        load_program(self.ebpf()?, name)
    }

    /// Attaches a cgroup_skb counter program (`PROG_CG_IN`/`PROG_CG_EG`) to
    /// the cgroup open as `cgroup` with a bpf_link (beside any other program
    /// there), and pins the link as `pin`.
    pub fn attach_cgroup(&mut self, prog: &str, cgroup: &fs::File, pin: &str) -> Result<()> {
        self.unpin(pin)?;
        let path = self.link_path(pin);
        let at = if prog == PROG_CG_IN {
            CgroupSkbAttachType::Ingress
        } else {
            CgroupSkbAttachType::Egress
        };
        let p = self.cgroup_program(prog)?;
        // A bpf_link takes no attach flags (the kernel refuses any with
        // EINVAL) and always sits beside other programs, as multi-attach.
        let id = p
            .attach(cgroup, at, CgroupAttachMode::Single)
            .map_err(|e| Error::from(e).context(format!("attaching {prog} to the cgroup")))?;
        let link: FdLink = p.take_link(id)?.try_into()?;
        link.pin(&path)?;
        Ok(())
    }

    /// [`Self::update_link`] for a cgroup counter link: `bpf_link_update`
    /// to this instance's `prog` (loaded with the attachment's counter slot,
    /// see [`Self::open_counting`]); aya has no `attach_to_link` for
    /// cgroup_skb, so the syscall is made here.
    pub fn update_cgroup_link(&mut self, prog: &str, pin: &str, force: bool) -> Result<Attached> {
        use std::os::fd::{AsFd, AsRawFd};
        let current = self.cgroup_program(prog)?.info()?.tag();
        if !force && self.pinned_program_tag(pin) == Some(current) {
            return Ok(Attached::Kept);
        }
        let path = std::ffi::CString::new(self.link_path(pin).as_os_str().as_encoded_bytes())
            .map_err(|_| Error::system("a pin path with a NUL byte"))?;
        #[repr(C)]
        struct ObjGet {
            pathname: u64,
            bpf_fd: u32,
            file_flags: u32,
        }
        #[repr(C)]
        struct LinkUpdate {
            link_fd: u32,
            new_prog_fd: u32,
            flags: u32,
            old_prog_fd: u32,
        }
        const BPF_OBJ_GET: libc::c_long = 7;
        const BPF_LINK_UPDATE: libc::c_long = 29;
        let get = ObjGet {
            pathname: path.as_ptr() as u64,
            bpf_fd: 0,
            file_flags: 0,
        };
        // SAFETY: a valid bpf_attr prefix for BPF_OBJ_GET; the path lives.
        let link_fd = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_OBJ_GET,
                &get as *const ObjGet,
                std::mem::size_of::<ObjGet>(),
            )
        };
        if link_fd < 0 {
            return Err(Error::system(format!(
                "opening the link pinned as {pin}: {}",
                std::io::Error::last_os_error()
            )));
        }
        // SAFETY: the kernel just gave us this fd; it is closed on drop.
        let link_fd = unsafe {
            <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(link_fd as i32)
        };
        let prog_fd = self.cgroup_program(prog)?.fd()?.as_fd().as_raw_fd();
        let upd = LinkUpdate {
            link_fd: link_fd.as_raw_fd() as u32,
            new_prog_fd: prog_fd as u32,
            flags: 0,
            old_prog_fd: 0,
        };
        // SAFETY: a valid bpf_attr prefix for BPF_LINK_UPDATE; both fds live.
        let r = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_LINK_UPDATE,
                &upd as *const LinkUpdate,
                std::mem::size_of::<LinkUpdate>(),
            )
        };
        if r != 0 {
            return Err(Error::system(format!(
                "updating {prog} ({pin}): {}",
                std::io::Error::last_os_error()
            )));
        }
        Ok(Attached::Updated)
    }

    /// Switches the link pinned as `pin` to this build of `prog` in place
    /// (`bpf_link_update`: atomic, the hook never runs without a program).
    /// Without `force`, a link already running this build is kept.
    pub fn update_link(&mut self, prog: &str, pin: &str, force: bool) -> Result<Attached> {
        if !force && self.pin_runs_current(prog, pin)? {
            return Ok(Attached::Kept);
        }
        let path = match self.hook(pin) {
            Hook::Filter(f) => {
                f.replace(self.classifier(prog)?)
                    .map_err(|e| e.context(format!("updating {prog} ({pin})")))?;
                return Ok(Attached::Updated);
            }
            Hook::Link(path) => path,
        };
        let link = FdLink::from(PinnedLink::from_pin(path)?);
        let updated = if prog == PROG_RX_XDP {
            self.xdp_program()?
                .attach_to_link(link.try_into()?)
                .map(drop)
        } else {
            self.classifier(prog)?
                .attach_to_link(link.try_into()?)
                .map(drop)
        };
        updated.map_err(|e| Error::from(e).context(format!("updating {prog} ({pin})")))?;
        Ok(Attached::Updated)
    }

    /// Removes a link pin, which detaches its program. Absent is fine.
    pub fn unpin(&self, pin: &str) -> Result<()> {
        Self::unpin_in(&self.dir, pin)
    }

    /// [`Datapath::unpin`] without loading anything: for teardown.
    pub fn unpin_in(dir: &Path, pin: &str) -> Result<()> {
        let path = match Self::hook_in(dir, pin) {
            Hook::Filter(f) => {
                f.detach()?;
                // A port's qdisc goes with its veth; a parent's is ours to
                // remove once nothing is on it.
                if f.priority != PORT_PRIORITY {
                    crate::tc_filter::remove_clsact_if_empty(f.ifindex);
                }
                return Ok(());
            }
            Hook::Link(path) => path,
        };
        match fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == IoKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether a link pin exists in `dir`.
    pub fn link_pinned_in(dir: &Path, pin: &str) -> bool {
        match Self::hook_in(dir, pin) {
            Hook::Filter(f) => f.program_id().is_some(),
            Hook::Link(path) => path.exists(),
        }
    }

    fn hash<K: aya::Pod, V: aya::Pod>(
        &mut self,
        name: &str,
    ) -> Result<HashMap<&mut MapData, K, V>> {
        let map = self.map_mut(name)?;
        Ok(HashMap::try_from(map)?)
    }

    /// Enters an endpoint in the receive table, the port table and the devmap.
    pub fn put_endpoint(&mut self, ep: &Endpoint) -> Result<()> {
        self.hash::<u32, Endpoint>(MAP_PORTS)?
            .insert(&ep.host_ifindex, ep, 0)?;
        self.put_rx_entry(ep)?;
        devmap::put(self.map_mut(MAP_DEVS)?, ep.host_ifindex, ep.host_ifindex)
    }

    pub fn remove_endpoint(
        &mut self,
        parent_ifindex: u32,
        mac: [u8; 6],
        host_ifindex: u32,
    ) -> Result<()> {
        let key = EndpointKey::new(parent_ifindex, mac);
        // Only remove the receive entry if it is still this port's (a MAC can
        // be re-added by a newer endpoint).
        self.remove_rx_entry(&key, |e| e.host_ifindex == host_ifindex)?;
        not_found_ok(self.hash::<u32, Endpoint>(MAP_PORTS)?.remove(&host_ifindex))?;
        devmap::remove(self.map_mut(MAP_DEVS)?, host_ifindex)
    }

    fn ip_key(host_ifindex: u32, ip: &IpAddr) -> EpIpKey {
        match ip {
            IpAddr::V4(v4) => EpIpKey::v4(host_ifindex, v4.octets()),
            IpAddr::V6(v6) => EpIpKey::v6(host_ifindex, v6.octets()),
        }
    }

    /// Enters the addresses an endpoint may send from.
    pub fn put_endpoint_ips(&mut self, host_ifindex: u32, ips: &[IpAddr]) -> Result<()> {
        let mut map = self.hash::<EpIpKey, u8>(MAP_EP_IPS)?;
        for ip in ips {
            map.insert(&Self::ip_key(host_ifindex, ip), &1, 0)?;
        }
        Ok(())
    }

    pub fn remove_endpoint_ips(&mut self, host_ifindex: u32, ips: &[IpAddr]) -> Result<()> {
        let mut map = self.hash::<EpIpKey, u8>(MAP_EP_IPS)?;
        for ip in ips {
            not_found_ok(map.remove(&Self::ip_key(host_ifindex, ip)))?;
        }
        Ok(())
    }

    /// Whether every one of `ips` is entered for the endpoint.
    pub fn has_endpoint_ips(&mut self, host_ifindex: u32, ips: &[IpAddr]) -> Result<bool> {
        let map = self.hash::<EpIpKey, u8>(MAP_EP_IPS)?;
        Ok(ips
            .iter()
            .all(|ip| map.get(&Self::ip_key(host_ifindex, ip), 0).is_ok()))
    }

    /// Enters an ipvlan endpoint's port (who sends on its host-side veth).
    pub fn put_port(&mut self, ep: &Endpoint) -> Result<()> {
        self.hash::<u32, Endpoint>(MAP_PORTS)?
            .insert(&ep.host_ifindex, ep, 0)?;
        Ok(())
    }

    pub fn remove_port(&mut self, host_ifindex: u32) -> Result<()> {
        not_found_ok(self.hash::<u32, Endpoint>(MAP_PORTS)?.remove(&host_ifindex))
    }

    /// Makes `ep` the owner of `addr` on its parent's ipvlan port.
    pub fn put_ip(&mut self, addr: IpAddr, ep: &Endpoint) -> Result<()> {
        let parent_ifindex = ep.parent_ifindex;
        match addr {
            IpAddr::V4(a) => self.hash::<Ip4Key, Endpoint>(MAP_IP4_EPS)?.insert(
                &Ip4Key {
                    parent_ifindex,
                    addr: a.octets(),
                },
                ep,
                0,
            )?,
            IpAddr::V6(a) => self.hash::<Ip6Key, Endpoint>(MAP_IP6_EPS)?.insert(
                &Ip6Key {
                    parent_ifindex,
                    addr: a.octets(),
                },
                ep,
                0,
            )?,
        }
        Ok(())
    }

    /// Removes `addr` of `parent_ifindex` if the port on `host_ifindex`
    /// still owns it.
    pub fn remove_ip(
        &mut self,
        parent_ifindex: u32,
        addr: IpAddr,
        host_ifindex: u32,
    ) -> Result<()> {
        match addr {
            IpAddr::V4(a) => {
                let key = Ip4Key {
                    parent_ifindex,
                    addr: a.octets(),
                };
                let mut m = self.hash::<Ip4Key, Endpoint>(MAP_IP4_EPS)?;
                if m.get(&key, 0).is_ok_and(|e| e.host_ifindex == host_ifindex) {
                    not_found_ok(m.remove(&key))?;
                }
            }
            IpAddr::V6(a) => {
                let key = Ip6Key {
                    parent_ifindex,
                    addr: a.octets(),
                };
                let mut m = self.hash::<Ip6Key, Endpoint>(MAP_IP6_EPS)?;
                if m.get(&key, 0).is_ok_and(|e| e.host_ifindex == host_ifindex) {
                    not_found_ok(m.remove(&key))?;
                }
            }
        }
        Ok(())
    }

    /// The ipvlan endpoint owning `addr` on `parent_ifindex`, if any.
    pub fn ip_owner(&mut self, parent_ifindex: u32, addr: IpAddr) -> Result<Option<Endpoint>> {
        let found = match addr {
            IpAddr::V4(a) => self.hash::<Ip4Key, Endpoint>(MAP_IP4_EPS)?.get(
                &Ip4Key {
                    parent_ifindex,
                    addr: a.octets(),
                },
                0,
            ),
            IpAddr::V6(a) => self.hash::<Ip6Key, Endpoint>(MAP_IP6_EPS)?.get(
                &Ip6Key {
                    parent_ifindex,
                    addr: a.octets(),
                },
                0,
            ),
        };
        match found {
            Ok(e) => Ok(Some(e)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub fn ipvlan_parent(&mut self, ifindex: u32) -> Result<Option<IpvlanParent>> {
        match self
            .hash::<u32, IpvlanParent>(MAP_IPVL_PARENTS)?
            .get(&ifindex, 0)
        {
            Ok(c) => Ok(Some(c)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub fn put_ipvlan_parent(&mut self, ifindex: u32, port: &IpvlanParent) -> Result<()> {
        self.hash::<u32, IpvlanParent>(MAP_IPVL_PARENTS)?
            .insert(&ifindex, port, 0)?;
        Ok(())
    }

    pub fn remove_ipvlan_parent(&mut self, ifindex: u32) -> Result<()> {
        not_found_ok(
            self.hash::<u32, IpvlanParent>(MAP_IPVL_PARENTS)?
                .remove(&ifindex),
        )
    }

    /// Enters a router port.
    pub fn put_router_port(&mut self, port: &RouterPort) -> Result<()> {
        self.hash::<u32, RouterPort>(MAP_RT_PORTS)?
            .insert(&port.ep.host_ifindex, port, 0)?;
        Ok(())
    }

    pub fn remove_router_port(&mut self, host_ifindex: u32) -> Result<()> {
        not_found_ok(
            self.hash::<u32, RouterPort>(MAP_RT_PORTS)?
                .remove(&host_ifindex),
        )
    }

    pub fn router_port(&mut self, host_ifindex: u32) -> Result<Option<RouterPort>> {
        match self
            .hash::<u32, RouterPort>(MAP_RT_PORTS)?
            .get(&host_ifindex, 0)
        {
            Ok(p) => Ok(Some(p)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Enters a nested endpoint by its VLAN key (both roles).
    pub fn put_nest_vlan(&mut self, key: &NestKey, n: &NestedEp) -> Result<()> {
        self.hash::<NestKey, NestedEp>(MAP_NEST_VLANS)?
            .insert(key, n, 0)?;
        Ok(())
    }

    /// Removes `key` if it still names the endpoint `id`.
    pub fn remove_nest_vlan(&mut self, key: &NestKey, id: u32) -> Result<()> {
        let mut m = self.hash::<NestKey, NestedEp>(MAP_NEST_VLANS)?;
        if m.get(key, 0).is_ok_and(|n| n.ep.id == id) {
            not_found_ok(m.remove(key))?;
        }
        Ok(())
    }

    pub fn nest_vlan(&mut self, key: &NestKey) -> Result<Option<NestedEp>> {
        match self.hash::<NestKey, NestedEp>(MAP_NEST_VLANS)?.get(key, 0) {
            Ok(n) => Ok(Some(n)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Enters an in-VM nested endpoint's port (its host-side veth).
    pub fn put_nest_port(&mut self, n: &NestedEp) -> Result<()> {
        self.hash::<u32, NestedEp>(MAP_NEST_PORTS)?
            .insert(&n.ep.host_ifindex, n, 0)?;
        Ok(())
    }

    pub fn remove_nest_port(&mut self, host_ifindex: u32) -> Result<()> {
        not_found_ok(
            self.hash::<u32, NestedEp>(MAP_NEST_PORTS)?
                .remove(&host_ifindex),
        )
    }

    pub fn nest_port(&mut self, host_ifindex: u32) -> Result<Option<NestedEp>> {
        match self
            .hash::<u32, NestedEp>(MAP_NEST_PORTS)?
            .get(&host_ifindex, 0)
        {
            Ok(n) => Ok(Some(n)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Enters a host-side nested endpoint's tags by its endpoint id.
    pub fn put_nest_id(&mut self, n: &NestedEp) -> Result<()> {
        self.hash::<u32, NestedEp>(MAP_NEST_IDS)?
            .insert(&n.ep.id, n, 0)?;
        Ok(())
    }

    pub fn remove_nest_id(&mut self, id: u32) -> Result<()> {
        not_found_ok(self.hash::<u32, NestedEp>(MAP_NEST_IDS)?.remove(&id))
    }

    pub fn nest_id(&mut self, id: u32) -> Result<Option<NestedEp>> {
        match self.hash::<u32, NestedEp>(MAP_NEST_IDS)?.get(&id, 0) {
            Ok(n) => Ok(Some(n)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Enters an endpoint in the receive table only: a nested endpoint,
    /// whose `host_ifindex` (the VM's tap) is neither a port nor an XDP
    /// redirect target.
    pub fn put_rx_endpoint(&mut self, ep: &Endpoint) -> Result<()> {
        self.put_rx_entry(ep)?;
        Ok(())
    }

    /// Removes the receive entry of `mac` on `parent_ifindex` if it is
    /// still endpoint `id`'s.
    pub fn remove_rx_endpoint(&mut self, parent_ifindex: u32, mac: [u8; 6], id: u32) -> Result<()> {
        let key = EndpointKey::new(parent_ifindex, mac);
        self.remove_rx_entry(&key, |e| e.id == id)
    }

    /// The endpoint cache, mapped (see [`crate::ep_cache`]).
    pub fn ep_cache(&mut self) -> Result<EpCache> {
        match self.map_mut(MAP_EP_CACHE)? {
            Map::Array(data) => EpCache::map(data),
            _ => Err(Error::system(format!("{MAP_EP_CACHE} is not an array map"))),
        }
    }

    /// Makes the endpoint cache agree with the receive table (see
    /// [`EpCache::sync`]).
    pub fn sync_ep_cache(&mut self) -> Result<crate::ep_cache::SyncReport> {
        let table = self.rx_entries()?;
        Ok(self.ep_cache()?.sync(&table))
    }

    /// Checks the cache slot of `(parent_ifindex, mac)` against the receive
    /// table's entry `want`: the slot must hold `want`, or another key (the
    /// slot was taken first); empty, it should have been filled.
    pub fn check_cached(&mut self, want: &Endpoint) -> Result<()> {
        let cache = self.ep_cache()?;
        let slot = attach_common::ep_cache_slot(want.parent_ifindex, &want.mac);
        let mac = crate::addr::Mac(want.mac);
        let Some(now) = cache.read(slot) else {
            return Err(Error::system(format!(
                "the endpoint cache's slot {slot} (for {mac}) was left half written"
            )));
        };
        let same_key = now.parent_ifindex == want.parent_ifindex && now.mac == want.mac;
        if same_key && now != *want {
            return Err(Error::system(format!(
                "the endpoint cache holds a stale entry for {mac} on parent ifindex {}",
                want.parent_ifindex
            )));
        }
        if crate::ep_cache::ENABLED && now.parent_ifindex == 0 {
            return Err(Error::system(format!(
                "{mac} is missing from the endpoint cache (its slot {slot} is free)"
            )));
        }
        Ok(())
    }

    /// Every entry of the receive table.
    pub fn rx_entries(&mut self) -> Result<Vec<(EndpointKey, Endpoint)>> {
        let eps = self.hash::<EndpointKey, Endpoint>(MAP_ENDPOINTS)?;
        Ok(eps.iter().collect::<std::result::Result<_, _>>()?)
    }

    /// Enters `ep` in the receive table, then in its cache slot.
    fn put_rx_entry(&mut self, ep: &Endpoint) -> Result<()> {
        self.hash::<EndpointKey, Endpoint>(MAP_ENDPOINTS)?.insert(
            &EndpointKey::new(ep.parent_ifindex, ep.mac),
            ep,
            0,
        )?;
        self.ep_cache()?.put(ep);
        Ok(())
    }

    /// Removes `key` from the receive table if its entry is still `owned`,
    /// out of its cache slot first (a slot never holds what the table lacks).
    fn remove_rx_entry(
        &mut self,
        key: &EndpointKey,
        owned: impl Fn(&Endpoint) -> bool,
    ) -> Result<()> {
        let entry = self
            .hash::<EndpointKey, Endpoint>(MAP_ENDPOINTS)?
            .get(key, 0);
        if entry.is_ok_and(|e| owned(&e)) {
            self.ep_cache()?.remove(key.parent_ifindex, &key.mac);
            let mut eps = self.hash::<EndpointKey, Endpoint>(MAP_ENDPOINTS)?;
            not_found_ok(eps.remove(key))?;
        }
        Ok(())
    }

    /// A flood-table row no macvlan parent and no ipvlan port uses.
    pub fn free_flood_slot(&mut self) -> Result<u32> {
        let mut used: Vec<u32> = self.parents()?.iter().map(|(_, c)| c.slot).collect();
        let ipvl = self.hash::<u32, IpvlanParent>(MAP_IPVL_PARENTS)?;
        used.extend(ipvl.iter().filter_map(|r| r.ok()).map(|(_, p)| p.slot));
        (0..MAX_PARENTS)
            .find(|s| !used.contains(s))
            .ok_or_else(|| Error::conflict(format!("the node already uses {MAX_PARENTS} parents")))
    }

    pub fn port(&mut self, host_ifindex: u32) -> Result<Option<Endpoint>> {
        match self.hash::<u32, Endpoint>(MAP_PORTS)?.get(&host_ifindex, 0) {
            Ok(e) => Ok(Some(e)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub fn endpoint(&mut self, parent_ifindex: u32, mac: [u8; 6]) -> Result<Option<Endpoint>> {
        let key = EndpointKey::new(parent_ifindex, mac);
        match self
            .hash::<EndpointKey, Endpoint>(MAP_ENDPOINTS)?
            .get(&key, 0)
        {
            Ok(e) => Ok(Some(e)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub fn parent(&mut self, ifindex: u32) -> Result<Option<ParentCfg>> {
        match self.hash::<u32, ParentCfg>(MAP_PARENTS)?.get(&ifindex, 0) {
            Ok(c) => Ok(Some(c)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub fn parents(&mut self) -> Result<Vec<(u32, ParentCfg)>> {
        let map = self.hash::<u32, ParentCfg>(MAP_PARENTS)?;
        Ok(map.iter().filter_map(|r| r.ok()).collect())
    }

    pub fn put_parent(&mut self, ifindex: u32, cfg: &ParentCfg) -> Result<()> {
        self.hash::<u32, ParentCfg>(MAP_PARENTS)?
            .insert(&ifindex, cfg, 0)?;
        Ok(())
    }

    pub fn remove_parent(&mut self, ifindex: u32) -> Result<()> {
        not_found_ok(self.hash::<u32, ParentCfg>(MAP_PARENTS)?.remove(&ifindex))
    }

    /// Writes a parent's flood row. Callers then publish the new count in
    /// the parent's config, so a flood never reads a half-written row.
    pub fn write_flood_row(&mut self, slot: u32, eps: &[Endpoint]) -> Result<()> {
        check_row_len(
            eps.len(),
            MAX_PORTS_PER_PARENT,
            "a parent",
            "eBPF endpoints",
        )?;
        let base = slot * MAX_PORTS_PER_PARENT;
        debug_assert!(base + MAX_PORTS_PER_PARENT <= FLOOD_TABLE_SIZE);
        self.set_array_range(MAP_FLOOD, base, eps)
    }

    /// Writes `values` into array map `name` at `first`, `first + 1`, … in
    /// one `BPF_MAP_UPDATE_BATCH`: a flood row holds an entry per endpoint,
    /// rewritten whole on every change (a syscall per entry cost a tenth of
    /// a millisecond per add with a hundred endpoints).
    fn set_array_range<V: aya::Pod>(&mut self, name: &str, first: u32, values: &[V]) -> Result<()> {
        use std::os::fd::AsFd;
        let map = self.map_mut(name)?;
        // Checks the map's type and value size against `V`.
        Array::<_, V>::try_from(&mut *map)?;
        let Map::Array(data) = map else {
            return Err(Error::system(format!("map {name} is not an array")));
        };
        let keys: Vec<u32> = (first..).take(values.len()).collect();
        crate::sys::bpf_update_batch(data.fd().as_fd(), &keys, values)
            .map_err(|e| Error::system(format!("writing {} entries of {name}: {e}", values.len())))
    }

    /// A switch port (or uplink, or guarded native bridge port) by ifindex.
    pub fn sw_port(&mut self, ifindex: u32) -> Result<Option<SwPort>> {
        match self.hash::<u32, SwPort>(MAP_SW_PORTS)?.get(&ifindex, 0) {
            Ok(p) => Ok(Some(p)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub fn put_sw_port(&mut self, port: &SwPort) -> Result<()> {
        self.hash::<u32, SwPort>(MAP_SW_PORTS)?
            .insert(&port.ifindex, port, 0)?;
        Ok(())
    }

    pub fn remove_sw_port(&mut self, ifindex: u32) -> Result<()> {
        not_found_ok(self.hash::<u32, SwPort>(MAP_SW_PORTS)?.remove(&ifindex))
    }

    pub fn switch(&mut self, id: u32) -> Result<Option<Switch>> {
        match self.hash::<u32, Switch>(MAP_SWITCHES)?.get(&id, 0) {
            Ok(s) => Ok(Some(s)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub fn put_switch(&mut self, id: u32, sw: &Switch) -> Result<()> {
        self.hash::<u32, Switch>(MAP_SWITCHES)?.insert(&id, sw, 0)?;
        Ok(())
    }

    pub fn remove_switch(&mut self, id: u32) -> Result<()> {
        not_found_ok(self.hash::<u32, Switch>(MAP_SWITCHES)?.remove(&id))
    }

    /// Writes switch `id`'s flood row. Callers then publish the new count
    /// in the switch's entry.
    pub fn write_sw_flood(&mut self, id: u32, ports: &[SwPort]) -> Result<()> {
        check_row_len(ports.len(), MAX_PORTS_PER_SWITCH, "a switch", "ports")?;
        self.set_array_range(MAP_SW_FLOOD, id * MAX_PORTS_PER_SWITCH, ports)
    }

    /// The switch flood row of `id`, its first `n` entries.
    pub fn sw_flood(&mut self, id: u32, n: u32) -> Result<Vec<SwPort>> {
        let map = self.map_mut(MAP_SW_FLOOD)?;
        let row: Array<_, SwPort> = Array::try_from(map)?;
        let base = id * MAX_PORTS_PER_SWITCH;
        (0..n.min(MAX_PORTS_PER_SWITCH))
            .map(|i| Ok(row.get(&(base + i), 0)?))
            .collect()
    }

    pub fn fdb_get(&mut self, key: &FdbKey) -> Result<Option<FdbEntry>> {
        match self.hash::<FdbKey, FdbEntry>(MAP_SW_FDB)?.get(key, 0) {
            Ok(e) => Ok(Some(e)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub fn fdb_put(&mut self, key: &FdbKey, entry: &FdbEntry) -> Result<()> {
        self.hash::<FdbKey, FdbEntry>(MAP_SW_FDB)?
            .insert(key, entry, 0)?;
        Ok(())
    }

    /// Every FDB entry.
    pub fn fdb(&mut self) -> Result<Vec<(FdbKey, FdbEntry)>> {
        let map = self.hash::<FdbKey, FdbEntry>(MAP_SW_FDB)?;
        Ok(map.iter().filter_map(|r| r.ok()).collect())
    }

    /// Removes the FDB entries `doomed` picks; returns how many.
    pub fn fdb_remove_where(
        &mut self,
        doomed: impl Fn(&FdbKey, &FdbEntry) -> bool,
    ) -> Result<usize> {
        let gone: Vec<FdbKey> = self
            .fdb()?
            .into_iter()
            .filter(|(k, e)| doomed(k, e))
            .map(|(k, _)| k)
            .collect();
        let mut map = self.hash::<FdbKey, FdbEntry>(MAP_SW_FDB)?;
        for k in &gone {
            not_found_ok(map.remove(k))?;
        }
        Ok(gone.len())
    }

    pub fn zero_stats(&mut self, id: u32) -> Result<()> {
        let map = self.map_mut(MAP_EP_STATS)?;
        let mut stats: PerCpuArray<_, EndpointStats> = PerCpuArray::try_from(map)?;
        let ncpus = aya::util::nr_cpus().map_err(|(_, e)| Error::from(e))?;
        stats.set(
            id,
            PerCpuValues::try_from(vec![EndpointStats::default(); ncpus.get() as usize])?,
            0,
        )?;
        Ok(())
    }

    /// An endpoint's counters, summed over CPUs.
    pub fn stats(&mut self, id: u32) -> Result<EndpointStats> {
        let map = self.map_mut(MAP_EP_STATS)?;
        let stats: PerCpuArray<_, EndpointStats> = PerCpuArray::try_from(map)?;
        let mut sum = EndpointStats::default();
        for s in stats.get(&id, 0)?.iter() {
            sum.add(s);
        }
        Ok(sum)
    }

    fn cg_stats_map(&mut self) -> Result<PerCpuArray<&mut MapData, CgroupStats>> {
        let map = self.map_mut(MAP_CG_STATS)?;
        Ok(PerCpuArray::try_from(map)?)
    }

    pub fn zero_cgroup_stats(&mut self, id: u32) -> Result<()> {
        let ncpus = aya::util::nr_cpus().map_err(|(_, e)| Error::from(e))?;
        self.cg_stats_map()?.set(
            id,
            PerCpuValues::try_from(vec![CgroupStats::default(); ncpus.get() as usize])?,
            0,
        )?;
        Ok(())
    }

    /// A `host` attachment's cgroup counters, summed over CPUs.
    pub fn cgroup_stats(&mut self, id: u32) -> Result<CgroupStats> {
        let mut sum = CgroupStats::default();
        for s in self.cg_stats_map()?.get(&id, 0)?.iter() {
            sum.add(s);
        }
        Ok(sum)
    }

    /// Every non-zero verdict counter, summed over CPUs.
    pub fn verdicts(&mut self) -> Result<Vec<(Direction, Verdict, u64)>> {
        let map = self.map_mut(MAP_VERDICTS)?;
        let counters: PerCpuArray<_, u64> = PerCpuArray::try_from(map)?;
        let mut out = Vec::new();
        for dir in Direction::ALL {
            for v in Verdict::ALL {
                let n: u64 = counters.get(&v.slot(dir), 0)?.iter().sum();
                if n > 0 {
                    out.push((dir, v, n));
                }
            }
        }
        Ok(out)
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
