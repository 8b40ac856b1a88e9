//! The compiled programs and their loading: which build of the object this
//! kernel takes, the programs' names, and loading the object with its maps
//! taken from (or pinned at) the node's pins.

use std::{fs, path::Path};

use attach_common::{CG_COUNTER_GLOBAL, MAP_VERDICTS};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, Map, MapData, MapError},
    programs::{CgroupSkb, Program, ProgramError, SchedClassifier, Xdp},
};

use crate::error::{Error, Result};

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

/// Pin of the programs' aya-log buffer (kernel name `AYA_LOGS`), shared by
/// every program instance of the node so the agent reads them all.
pub const LOG_PIN: &str = "attach_logs";

/// Identifies this build's object: cached programs of another build are
/// never used (`attach upgrade` removes them).
/// (An FNV-1a hash of the object, computed by build.rs.)
pub(super) fn build_id() -> &'static str {
    if compat_build() {
        include_str!(concat!(env!("OUT_DIR"), "/attach-compat.id"))
    } else {
        include_str!(concat!(env!("OUT_DIR"), "/attach.id"))
    }
}

/// The tag (instruction hash) of loaded program `id`.
pub(super) fn program_tag(id: u32) -> Option<u64> {
    aya::programs::loaded_programs()
        .filter_map(|p| p.ok())
        .find(|p| p.id() == id)
        .map(|p| p.tag())
}

/// Refuses a flood row longer than `max`, or than the programs walk on a
/// kernel without `bpf_loop`. Kinds ask before they make anything; writing
/// a row asks again.
pub fn check_row_len(len: usize, max: u32, who: &str, what: &str) -> Result<()> {
    if len > max as usize {
        return Err(Error::conflict(format!(
            "{who} can carry at most {max} {what}"
        )));
    }
    let open = attach_common::OPEN_WALK_MAX;
    if len > open as usize && compat_build() {
        return Err(Error::conflict(format!(
            "{who} can carry at most {open} {what} on this kernel ({}): longer flood \
             rows need the bpf_loop helper (Linux 5.17 and later, {max} there); \
             `--backend native` has no such limit",
            crate::features::kernel_release()
        )));
    }
    Ok(())
}

/// Maps that hold only counters: made anew when a build changes their
/// shape.
const COUNTER_MAPS: [&str; 2] = [MAP_VERDICTS, attach_common::MAP_EVENTS];

/// Pins a program this build just loaded where later engine runs take it
/// from. Best effort: without the pin a later run loads it again.
pub(super) fn cache_program(prog: &mut SchedClassifier, name: &str, pin: &Path) {
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

/// Loads the object for the node pinned in `dir`, its maps taken from the
/// pins there (those missing are made and pinned), the cgroup programs
/// counting into slot `counter`.
pub(super) fn load_object(dir: &Path, counter: Option<u32>) -> Result<Ebpf> {
    let log_pin = dir.join(LOG_PIN);
    let config_pin = dir.join(attach_common::MAP_CONFIG);
    // A load writes the section's initial value into its map, pinned or
    // not: that value is the switches as they are now.
    let config = match open_pinned(dir, attach_common::MAP_CONFIG) {
        Some(map) => Array::<_, u32>::try_from(map)
            .and_then(|a| a.get(&0, 0))
            .unwrap_or(0),
        None => {
            pin_config_map(&config_pin)?;
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
pub(super) fn open_pinned(dir: &Path, name: &str) -> Option<Map> {
    let data = MapData::from_pin(dir.join(name)).ok()?;
    Map::from_map_data(data).ok()
}
