//! Addresses from the wire: macvlan and ipvlan endpoints leasing from a
//! DHCP server with no daemon of ours but the engine, and an address
//! another host answers for refused before anything is made.

use anyhow::Result;
use attach_tests::{
    dnsmasq::Dnsmasq,
    lab::{EXT_V4, Lab, NODE_IF, ping},
};

use crate::check::{expect, yes};

pub(crate) fn dhcp() -> Result<()> {
    println!("\n== DHCP: a macvlan and an ipvlan endpoint lease from dnsmasq on the wire");
    println!("   (the engine is the client; the agent would renew; del releases)");
    let lab = Lab::new()?;
    let server = Dnsmasq::start(&lab)?;
    let c1 = lab.container("c1")?;
    let c2 = lab.container("c2")?;
    for (kind, c) in [("macvlan", &c1), ("ipvlan", &c2)] {
        lab.attach().ok(&[
            "add",
            kind,
            "--parent",
            NODE_IF,
            "--netns",
            c.name(),
            "--dhcp",
        ])?;
    }
    println!("{}", lab.attach().ok(&["list"])?);
    let records = lab.attach().json(&["list"])?;
    let leased: Vec<String> = records
        .as_array()
        .map(|rs| {
            rs.iter()
                .filter_map(|r| r["dhcp"]["address"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    expect("two leases", leased.len(), 2);
    expect(
        "each endpoint its own address",
        leased.first() != leased.get(1),
        true,
    );
    for (name, c) in [("c1 (macvlan)", &c1), ("c2 (ipvlan)", &c2)] {
        let reaches = expect(&format!("{name} reaches the server"), ping(c, EXT_V4), true);
        println!("   {name} reaches the server {EXT_V4}: {}", yes(reaches));
    }
    let listed = server.leases().lines().count();
    println!("   dnsmasq's lease file: {listed} lease(s)");
    expect("dnsmasq lists both leases", listed, 2);
    for c in [&c1, &c2] {
        lab.attach().ok(&["del", "--netns", c.name()])?;
    }
    server.wait_for(|| server.leases().trim().is_empty(), "the releases");
    println!("   both detached: the lease file is empty again (DHCPRELEASE)");

    println!("\n== Conflict detection: an address another host answers for");
    let ip = format!("{EXT_V4}/24");
    let out = lab.attach().run(&[
        "add",
        "macvlan",
        "--parent",
        NODE_IF,
        "--netns",
        c1.name(),
        "--ip",
        &ip,
    ])?;
    println!("   $ attach add macvlan --parent {NODE_IF} --netns c1 --ip {ip}");
    println!(
        "   exit {}: {}",
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    expect("a taken address: exit 4", out.status.code(), Some(4));
    expect(
        "nothing attached after the refusal",
        lab.attach().ok(&["list", "-o", "json"])?.trim(),
        "[]",
    );
    Ok(())
}
