//! The kinds that are not macvlan: host, container, sriov.

use anyhow::{Context as _, Result};
use attach_tests::{
    cgroup::Cgroup,
    kinds::{STANDIN, listen_in, ping_from, standin, wait_link_gone},
    lab::{EXT_V4, EXT_V6, Lab, NETNS_PREFIX, NODE_IF, Netns, ping},
    reach::mac_of,
};

use crate::check::{expect, yes};

/// The kinds that are not macvlan: host, container, sriov.
pub(crate) fn other_kinds(shows: &dyn Fn(&str) -> bool) -> Result<()> {
    let lab = Lab::new()?;
    if shows("host") {
        println!("\n== host: the container shares the node's namespace");
        host(&lab)?;
    }
    if shows("container") {
        println!("\n== container: b joins a's namespace, held by the engine");
        container(&lab)?;
    }
    if shows("sriov") {
        println!(
            "\n== sriov: a device of the node moves into the container (veth stand-in: no SR-IOV here)"
        );
        sriov(&lab)?;
    }
    Ok(())
}

fn host(lab: &Lab) -> Result<()> {
    let cg = Cgroup::new(lab.tag(), "web")?;
    let cgroup = cg.path().display().to_string();
    let node = lab.node().name().to_owned();
    // A service of the node already has tcp/18080.
    let _busy = listen_in(lab.node(), 18080, 15353)?;
    println!("$ attach add host --netns <node> --cgroup {cgroup} --ports tcp/18080,tcp/19090");
    let out = lab.attach().run(&[
        "add",
        "host",
        "--netns",
        &node,
        "--cgroup",
        &cgroup,
        "--ports",
        "tcp/18080,tcp/19090",
    ])?;
    anyhow::ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    print!("{}", String::from_utf8_lossy(&out.stderr));
    let v4 = cg.run(
        lab.node(),
        &["ping", "-4", "-c", "3", "-i", "0.2", "-W", "1", EXT_V4],
    );
    let v6 = cg.run(
        lab.node(),
        &["ping", "-6", "-c", "3", "-i", "0.2", "-W", "1", EXT_V6],
    );
    let stats = lab.attach().json(&["stats"])?;
    let c = &stats["attachments"][0]["counters"];
    expect("host: its cgroup's process pings ext v4", v4, true);
    expect("host: its cgroup's process pings ext v6", v6, true);
    // Six echo requests out and six replies in, at least.
    for key in ["tx_packets", "rx_packets"] {
        expect(
            &format!("host: attach stats counts {key} >= 6"),
            c[key].as_u64().is_some_and(|n| n >= 6),
            true,
        );
    }
    println!(
        "a process of its cgroup pings ext: v4 {}, v6 {}; attach stats counts {} packets out, {} in ({} bytes out)",
        yes(v4),
        yes(v6),
        c["tx_packets"],
        c["rx_packets"],
        c["tx_bytes"]
    );
    lab.attach().ok(&["del", "--netns", &node])?;
    Ok(())
}

fn container(lab: &Lab) -> Result<()> {
    let a = Netns::named(&format!("{NETNS_PREFIX}-{}-a", lab.tag()))?;
    let a_name = a.name().to_owned();
    let (v4, v6) = Lab::container_ip(1);
    let rec = lab.attach().json(&[
        "add",
        "macvlan",
        "--parent",
        NODE_IF,
        "--netns",
        &a_name,
        "--ip",
        &v4,
        "--ip",
        &v6,
        "--mac",
        &mac_of(1),
    ])?;
    let veth = rec["host_ifname"]
        .as_str()
        .context("host_ifname")?
        .to_owned();
    let b_name = format!("{NETNS_PREFIX}-{}-b", lab.tag());
    let b = std::path::PathBuf::from(format!("/run/netns/{b_name}"));
    println!("$ attach add container --netns b --join a   (a has an eBPF macvlan endpoint)");
    lab.attach()
        .ok(&["add", "container", "--netns", &b_name, "--join", &a_name])?;
    let reach = |when: &str, dst: &str| {
        yes(expect(
            &format!("container: b -> ext {dst} {when}"),
            ping_from(&b, dst),
            true,
        ))
    };
    println!(
        "b -> ext through a's eth0: v4 {}, v6 {}",
        reach("through a's eth0", EXT_V4),
        reach("through a's eth0", EXT_V6)
    );
    drop(a);
    println!(
        "a exits (its namespace file is deleted); b -> ext still: v4 {}, v6 {}",
        reach("after a exited", EXT_V4),
        reach("after a exited", EXT_V6)
    );
    lab.attach().ok(&["del", "--netns", &b_name])?;
    println!(
        "b detaches, the last user: the namespace is freed (a's veth {veth} leaves the node): {}",
        yes(expect(
            "container: a's veth left the node after the last detach",
            wait_link_gone(lab, &veth),
            true
        ))
    );
    lab.attach().ok(&["del", "--netns", &a_name])?;
    Ok(())
}

fn sriov(lab: &Lab) -> Result<()> {
    standin(lab)?;
    let c1 = lab.container("c1")?;
    let (v4, v6) = Lab::container_ip(21);
    println!("$ attach add sriov --device {STANDIN} --netns c1 --ip {v4} --ip {v6} --mtu 1400");
    lab.attach().ok(&[
        "add",
        "sriov",
        "--device",
        STANDIN,
        "--netns",
        c1.name(),
        "--ip",
        &v4,
        "--ip",
        &v6,
        "--mtu",
        "1400",
    ])?;
    let node_has = lab
        .node()
        .exec(&["ip", "link", "show", STANDIN])?
        .status
        .success();
    println!(
        "c1 -> ext through it: v4 {}, v6 {}; the node still has {STANDIN}: {}",
        yes(expect("sriov: c1 -> ext v4", ping(&c1, EXT_V4), true)),
        yes(expect("sriov: c1 -> ext v6", ping(&c1, EXT_V6), true)),
        yes(expect(
            "sriov: the node still has the device",
            node_has,
            false
        ))
    );
    lab.attach().ok(&["del", "--netns", c1.name()])?;
    let back = lab.node().ok(&["ip", "-o", "link", "show", STANDIN])?;
    println!(
        "detached: {STANDIN} is back in the node with MTU 1500: {}",
        yes(expect(
            "sriov: the device is back with MTU 1500",
            back.contains("mtu 1500"),
            true
        ))
    );
    let c2 = lab.container("c2")?;
    let refused = lab.attach().run(&[
        "add",
        "sriov",
        "--device",
        STANDIN,
        "--netns",
        c2.name(),
        "--vlan",
        "100",
    ])?;
    let said = String::from_utf8_lossy(&refused.stderr);
    // Refused as invalid input (exit 2): only a VF takes a VLAN.
    expect(
        "sriov: --vlan on a non-VF is refused, exit 2, saying it needs a VF",
        (refused.status.code(), said.contains("--vlan needs a VF")),
        (Some(2), true),
    );
    println!(
        "$ attach add sriov --device {STANDIN} --netns c2 --vlan 100\n{} (exit {})",
        said.trim(),
        refused.status.code().unwrap_or(-1)
    );
    Ok(())
}
