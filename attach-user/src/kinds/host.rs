//! `host` attachments: the container uses the node's own network namespace.
//!
//! Nothing is created in the network: the engine records the attachment
//! (named by NETNS as given, e.g. the pid of the container's process, since
//! the namespace is the node's and shared by every `host` container), can
//! count the container's traffic through its cgroup (v2) with cgroup_skb
//! programs, and warns about ports the container declares that sockets of
//! the node, or another `host` attachment, already use.

use std::{
    collections::BTreeMap,
    fs::File,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::{fd::AsRawFd, unix::fs::MetadataExt},
    path::{Path, PathBuf},
};

use attach_common::MAX_CG_COUNTERS;

use crate::{
    datapath::{self, Datapath, PROG_CG_EG, PROG_CG_IN},
    error::{Context as _, Error, Result},
    model::{Attachment, Backend, HostInfo, Kind, NO_IFNAME, Port, Transport},
    netns::Netns,
    node::Node,
    parse::{self, de},
};

// Everything `attach add host` takes (its help is the subcommand's, in cli.rs).
#[derive(Clone, Debug, Default, clap::Args, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct HostRequest {
    /// The node's own network namespace, naming the container: typically the
    /// pid of its process (whose namespace is the node's), or a path. It must
    /// be the namespace attach runs in; it is also how `del` finds it.
    #[arg(long, value_name = "NETNS")]
    pub netns: String,
    /// The container's cgroup (v2) directory: its traffic is counted by
    /// cgroup_skb programs and shown by `attach stats`. A relative path is
    /// taken under the cgroup2 mount.
    #[arg(long, value_name = "PATH")]
    #[serde(default)]
    pub cgroup: Option<PathBuf>,
    /// Ports the container will listen on, like tcp/80,udp/53: a warning
    /// when a socket of the node or another host attachment has one.
    #[arg(long, value_name = "PROTO/PORT,...", value_delimiter = ',', value_parser = parse::port)]
    #[serde(default, deserialize_with = "de::list")]
    pub ports: Vec<Port>,
    /// Does not apply (refused with an explanation).
    #[arg(long, hide = true)]
    #[serde(default)]
    pub ifname: Option<String>,
}

const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

impl HostRequest {
    pub fn validate(&self) -> Result<()> {
        if let Some(i) = &self.ifname {
            return Err(Error::invalid(format!(
                "--ifname {i} does not apply to host: the container uses the node's own interfaces"
            )));
        }
        for (i, p) in self.ports.iter().enumerate() {
            if self.ports[..i].contains(p) {
                return Err(Error::invalid(format!("port {p} is given twice")));
            }
        }
        if let Some(c) = &self.cgroup
            && c.as_os_str().is_empty()
        {
            return Err(Error::invalid("--cgroup is empty"));
        }
        Ok(())
    }
}

/// Opens a cgroup v2 directory; returns it and its cgroup id (its inode).
pub fn open_cgroup(path: &Path) -> Result<(File, u64)> {
    let file = File::open(path).map_err(|e| {
        let msg = format!("cgroup {} cannot be opened: {e}", path.display());
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::not_found(msg)
        } else {
            Error::system(msg)
        }
    })?;
    let meta = file.metadata()?;
    // SAFETY: statfs is plain data, filled by the kernel.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd and out-pointer.
    let ok = unsafe { libc::fstatfs(file.as_raw_fd(), &mut st) } == 0;
    if !meta.is_dir() || !ok || st.f_type as i64 != CGROUP2_SUPER_MAGIC {
        let mounts = cgroup2_mounts();
        return Err(Error::invalid(format!(
            "--cgroup {} is not a cgroup v2 directory ({})",
            path.display(),
            if mounts.is_empty() {
                "no cgroup2 hierarchy is mounted".to_owned()
            } else {
                format!("cgroup2 is mounted at {}", mounts.join(", "))
            }
        )));
    }
    Ok((file, meta.ino()))
}

/// `--cgroup` as an absolute path: a relative one is taken under the
/// cgroup2 mount (`web` is `/sys/fs/cgroup/unified/web` here), so it means
/// the same to the CLI and to the agent, whatever their directories.
pub fn absolute_cgroup(given: &Path) -> Result<PathBuf> {
    if given.is_absolute() {
        return Ok(given.to_owned());
    }
    let root = cgroup2_mounts().into_iter().next().ok_or_else(|| {
        Error::not_found(format!(
            "--cgroup {}: no cgroup2 hierarchy is mounted to find it under",
            given.display()
        ))
    })?;
    Ok(Path::new(&root).join(given))
}

/// Where cgroup2 is mounted in this mount namespace.
pub fn cgroup2_mounts() -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            (post.split_whitespace().next() == Some("cgroup2"))
                .then(|| pre.split_whitespace().nth(4).map(str::to_owned))?
        })
        .collect()
}

pub async fn plan(
    _node: &Node,
    req: &HostRequest,
    ns: &Netns,
    records: &[Attachment],
) -> Result<Attachment> {
    let node = Netns::current()?;
    if !ns.same_as(&node) {
        return Err(Error::invalid(format!(
            "network namespace {:?} is not the node's: `host` means the container shares the \
             node's own namespace (the one attach runs in), so --netns must name that one \
             (e.g. the pid of the container's process); for a namespace of its own use another kind",
            req.netns
        )));
    }
    let hosts: Vec<(&Attachment, &HostInfo)> = records
        .iter()
        .filter_map(|r| Some((r, r.host.as_ref()?)))
        .collect();
    let (cgroup, cgroup_id) = match &req.cgroup {
        Some(given) => {
            let path = &absolute_cgroup(given)?;
            let (_, id) = open_cgroup(path)?;
            if let Some((r, _)) = hosts.iter().find(|(_, h)| h.cgroup_id == Some(id)) {
                return Err(Error::conflict(format!(
                    "cgroup {} is already counted for the host attachment of {:?}",
                    path.display(),
                    r.netns
                )));
            }
            (Some(path.clone()), Some(id))
        }
        None => (None, None),
    };
    let mut warnings = Vec::new();
    let busy = listening_sockets(&req.ports);
    for p in &req.ports {
        if let Some(addrs) = busy.get(p) {
            warnings.push(format!(
                "{p}: a socket in the node already listens on {}",
                addrs.join(", ")
            ));
        }
        for (r, _) in hosts.iter().filter(|(_, h)| h.ports.contains(p)) {
            warnings.push(format!(
                "{p} is also declared by the host attachment of {:?}",
                r.netns
            ));
        }
    }
    let mut rec = Attachment::new(Kind::Host, NO_IFNAME).in_netns(&req.netns, ns);
    rec.backend = Backend::Native;
    rec.warnings = warnings;
    rec.host = Some(HostInfo {
        cgroup,
        cgroup_id,
        counter_id: None,
        ports: req.ports.clone(),
    });
    Ok(rec)
}

pub async fn create(node: &Node, rec: &mut Attachment, records: &[Attachment]) -> Result<()> {
    let Some(host) = rec.host.as_mut() else {
        return Err(Error::system("a host record without its host part"));
    };
    let Some(path) = host.cgroup.clone() else {
        return Ok(());
    };
    let used: Vec<u32> = records
        .iter()
        .filter_map(|r| r.host.as_ref()?.counter_id)
        .collect();
    let id = (0..MAX_CG_COUNTERS)
        .find(|i| !used.contains(i))
        .ok_or_else(|| {
            Error::conflict(format!("the node already counts {MAX_CG_COUNTERS} cgroups"))
        })?;
    host.counter_id = Some(id);
    let (file, cgroup_id) = open_cgroup(&path)?;
    if host.cgroup_id != Some(cgroup_id) {
        return Err(Error::conflict(format!(
            "cgroup {} was replaced while attaching",
            path.display()
        )));
    }
    let mut dp = Datapath::open_counting(node.pin_dir(), id)?;
    dp.zero_cgroup_stats(id)?;
    let [inp, eg] = datapath::cgroup_links(id);
    dp.attach_cgroup(PROG_CG_IN, &file, &inp)
        .with_context(|| format!("counting the ingress of cgroup {}", path.display()))?;
    dp.attach_cgroup(PROG_CG_EG, &file, &eg)
        .with_context(|| format!("counting the egress of cgroup {}", path.display()))?;
    Ok(())
}

pub async fn teardown(node: &Node, rec: &Attachment) -> Vec<Error> {
    let Some(id) = rec.host.as_ref().and_then(|h| h.counter_id) else {
        return Vec::new();
    };
    datapath::cgroup_links(id)
        .iter()
        .filter_map(|pin| Datapath::unpin_in(node.pin_dir(), pin).err())
        .collect()
}

/// The counter links (program, pin), when the traffic is counted.
pub fn links(rec: &Attachment) -> Vec<(&'static str, String)> {
    match rec.host.as_ref().and_then(|h| h.counter_id) {
        Some(id) => {
            let [inp, eg] = datapath::cgroup_links(id);
            vec![(PROG_CG_IN, inp), (PROG_CG_EG, eg)]
        }
        None => Vec::new(),
    }
}

/// Re-attaches a missing counter link to the same cgroup, with the same
/// slot (the counts so far are kept). A replaced cgroup is not repaired.
pub async fn repair(node: &Node, rec: &Attachment) -> Result<()> {
    let Some(host) = &rec.host else {
        return Err(Error::system("a host record without its host part"));
    };
    let (Some(path), Some(id)) = (&host.cgroup, host.counter_id) else {
        return Ok(());
    };
    let (file, cgroup_id) = open_cgroup(path)?;
    if host.cgroup_id != Some(cgroup_id) {
        return Err(Error::system(format!(
            "cgroup {} was replaced",
            path.display()
        )));
    }
    let mut dp = None;
    for (prog, pin) in links(rec) {
        if Datapath::link_pinned_in(node.pin_dir(), &pin) {
            continue;
        }
        let dp = match &mut dp {
            Some(d) => d,
            None => dp.insert(Datapath::open_counting(node.pin_dir(), id)?),
        };
        dp.attach_cgroup(prog, &file, &pin)?;
    }
    Ok(())
}

/// NETNS still names the node's namespace; the counters are still attached
/// to the same cgroup.
pub async fn check(node: &Node, rec: &Attachment) -> Result<()> {
    let ns = rec
        .open_netns()
        .map_err(|e| e.context("the host container's NETNS"))?;
    if !ns.same_as(&Netns::current()?) {
        return Err(Error::system(format!(
            "{:?} no longer names the node's network namespace",
            rec.netns
        )));
    }
    let Some(host) = &rec.host else {
        return Err(Error::system("a host record without its host part"));
    };
    if let (Some(path), Some(id)) = (&host.cgroup, host.counter_id) {
        let (_, cgroup_id) = open_cgroup(path)?;
        if host.cgroup_id != Some(cgroup_id) {
            return Err(Error::system(format!(
                "cgroup {} was replaced: its counters are not attached to it",
                path.display()
            )));
        }
        for pin in datapath::cgroup_links(id) {
            if !Datapath::link_pinned_in(node.pin_dir(), &pin) {
                return Err(Error::system(format!(
                    "the cgroup counter {pin} is not attached"
                )));
            }
        }
    }
    Ok(())
}

/// Sockets of the calling thread's namespace (the node's) listening on any
/// of `ports`: TCP in LISTEN, UDP bound and unconnected. By port, the
/// addresses they are bound to.
pub fn listening_sockets(ports: &[Port]) -> BTreeMap<Port, Vec<String>> {
    let mut out: BTreeMap<Port, Vec<String>> = BTreeMap::new();
    if ports.is_empty() {
        return out;
    }
    for (file, proto) in [
        ("tcp", Transport::Tcp),
        ("tcp6", Transport::Tcp),
        ("udp", Transport::Udp),
        ("udp6", Transport::Udp),
    ] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/thread-self/net/{file}")) else {
            continue;
        };
        for (addr, port) in parse_listeners(&text, proto) {
            let p = Port { proto, port };
            if ports.contains(&p) {
                let shown = match addr {
                    IpAddr::V4(a) => format!("{a}:{port}"),
                    IpAddr::V6(a) => format!("[{a}]:{port}"),
                };
                let list = out.entry(p).or_default();
                if !list.contains(&shown) {
                    list.push(shown);
                }
            }
        }
    }
    out
}

/// The (address, port) of every listening socket in a `/proc/net/{tcp,udp}`
/// (or `…6`) table.
pub fn parse_listeners(text: &str, proto: Transport) -> Vec<(IpAddr, u16)> {
    const TCP_LISTEN: &str = "0A";
    const UDP_UNCONNECTED: &str = "07";
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_sl, local, _remote, state) = (f.next()?, f.next()?, f.next()?, f.next()?);
            let want = match proto {
                Transport::Tcp => TCP_LISTEN,
                Transport::Udp => UDP_UNCONNECTED,
            };
            if state != want {
                return None;
            }
            let (addr, port) = local.split_once(':')?;
            Some((parse_proc_addr(addr)?, u16::from_str_radix(port, 16).ok()?))
        })
        .collect()
}

/// `/proc/net` addresses are the kernel's 32-bit words printed as native
/// integers (`%08X` each).
fn parse_proc_addr(hex: &str) -> Option<IpAddr> {
    let word = |i: usize| {
        u32::from_str_radix(hex.get(i * 8..i * 8 + 8)?, 16)
            .ok()
            .map(u32::to_ne_bytes)
    };
    match hex.len() {
        8 => Some(IpAddr::V4(Ipv4Addr::from(word(0)?))),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            Some(IpAddr::V6(Ipv6Addr::from(b)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_parse_and_name_the_value() {
        let p: Port = "tcp/80".parse().unwrap();
        assert_eq!(p.to_string(), "tcp/80");
        assert_eq!("UDP/53".parse::<Port>().unwrap().to_string(), "udp/53");
        for bad in ["80", "sctp/80", "tcp/0", "tcp/65536", "tcp/http", "tcp/"] {
            let e = bad.parse::<Port>().unwrap_err();
            assert!(e.message.contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn listeners_from_proc_tables() {
        // Written by the kernel on a little-endian machine.
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0
   1: 0100007F:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0
   2: 0A4D00FE:9C40 0A4D0001:0016 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0 100 0 0 10 0
";
        let got = parse_listeners(tcp, Transport::Tcp);
        if cfg!(target_endian = "little") {
            assert_eq!(
                got,
                vec![
                    ("0.0.0.0".parse().unwrap(), 22),
                    ("127.0.0.1".parse().unwrap(), 80)
                ]
            );
        }
        let tcp6 =
            "  sl  local_address                         remote_address                        st
   0: 00000000000000000000000001000000:0050 00000000000000000000000000000000:0000 0A 0
   1: 0000000000000000FFFF00000100007F:1F90 00000000000000000000000000000000:0000 0A 0
";
        let got = parse_listeners(tcp6, Transport::Tcp);
        if cfg!(target_endian = "little") {
            assert_eq!(
                got,
                vec![
                    ("::1".parse().unwrap(), 80),
                    ("::ffff:127.0.0.1".parse().unwrap(), 8080)
                ]
            );
        }
        let udp = "   sl  local_address rem_address   st
  10: 00000000:0035 00000000:0000 07 0
  11: 0100007F:0036 0200007F:0035 01 0
";
        let got = parse_listeners(udp, Transport::Udp);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1, 53);
    }

    #[test]
    fn duplicate_ports_and_ifname_are_refused() {
        let req = HostRequest {
            netns: "x".into(),
            ports: vec!["tcp/80".parse().unwrap(), "tcp/80".parse().unwrap()],
            ..Default::default()
        };
        assert!(req.validate().unwrap_err().message.contains("tcp/80"));
        let req = HostRequest {
            netns: "x".into(),
            ifname: Some("eth0".into()),
            ..Default::default()
        };
        assert!(req.validate().unwrap_err().message.contains("--ifname"));
    }
}
