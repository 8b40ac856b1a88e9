//! What each kernel's guest runs: test targets and their libtest
//! arguments.

/// What each guest runs: (test target, libtest arguments), each with
/// `--test-threads=1`. `vm-test -- TARGET[:PATTERN]` picks from these (or
/// any other test target). Chosen to fit CI: under TCG on 2 cores, three
/// kernels at once, a test takes 15-25 times its native time where it
/// computes and less where it waits, so every kind gets its main
/// reachability test, macvlan and ipvlan their differentials against the
/// kernel's drivers (every mode, both datapaths), and the programs their
/// whole PROG_TEST_RUN suite.
pub const GUEST_SUITES: &[(&str, &[&str])] = &[
    // What the kernel offers, and every program past its verifier.
    ("features", &[]),
    // attach-user/tests/prog_test_run.rs and its modules: the programs under
    // BPF_PROG_TEST_RUN, but for the fuzz cases: their models are checked
    // on the development kernel, and emulated they cost minutes.
    ("prog_test_run", &["--skip", "fuzz_"]),
    // Our macvlan ≡ the kernel's: bridge, vepa and private on one parent;
    // native, tc and xdp each (passthru: `vm-test -- macvlan`).
    (
        "macvlan",
        &["--exact", "mixed_modes_on_one_parent_match_native"],
    ),
    // Our ipvlan ≡ the kernel's driver, but for the documented deviations:
    // each mode (every flag: `vm-test -- kernels`), and the driver is real.
    (
        "kernels",
        &[
            "--exact",
            "l2_bridge_matches_the_driver",
            "l3_bridge_matches_the_driver",
            "l3s_bridge_matches_the_driver",
            "the_native_backend_is_the_kernels_ipvlan",
        ],
    ),
    // Kinds sharing a parent reach each other locally, nothing twice.
    (
        "ipvlan",
        &[
            "--exact",
            "ipvlan_and_macvlan_share_a_parent_without_the_wire",
            "ipvlan_and_macvlan_share_a_parent_without_duplicates",
        ],
    ),
    (
        "bridge",
        &[
            "--exact",
            "ports::ports_of_one_bridge_reach_each_other",
            // A switch's uplink shared with macvlan endpoints.
            "shared_uplink::switch_ports_and_macvlan_endpoints_share_the_uplink",
        ],
    ),
    (
        "router",
        &["--exact", "ebpf_routes_without_the_nodes_forwarding"],
    ),
    (
        "nested",
        &[
            "--exact",
            "vm_container_reaches_the_wire_and_a_host_container",
        ],
    ),
    (
        "host",
        &["--exact", "host_counts_its_cgroup_traffic_on_v4_and_v6"],
    ),
    (
        "container",
        &[
            "--exact",
            "joiner_keeps_its_network_when_the_first_container_exits",
        ],
    ),
    (
        "sriov",
        &["--exact", "a_device_moves_in_works_and_comes_back_restored"],
    ),
    ("cni", &["--exact", "add_check_del_with_host_local"]),
    // A taken address refused from the wire: ARP probe and DAD (packet
    // sockets, promiscuous) on this kernel.
    (
        "conflict",
        &[
            "--exact",
            "an_address_of_another_host_is_refused_before_anything_is_made",
        ],
    ),
];

/// What a kernel without `bpf_loop` (5.10) runs instead. It gets the build
/// whose flood walk is unrolled, which its verifier takes tens of seconds
/// over per program under emulation (a second or so on hardware, once per
/// node), and every test that makes a node verifies again. So: the verdict
/// on every program, ipvlan against the driver, our macvlan against the
/// kernel's (tc and xdp: here the xdp endpoints get their own XDP program),
/// and each other kind once.
pub const COMPAT_SUITES: &[(&str, &[&str])] = &[
    ("features", &[]),
    // ipvlan's programs under BPF_PROG_TEST_RUN where their decisions
    // lean on what differs by kernel: `bpf_fib_lookup`'s flags (an
    // endpoint up or down, routing), `bpf_redirect_neigh`, the port's
    // flags. The whole suite of this build runs on the development kernel,
    // and the programs for real here in the differentials; XDP test runs
    // need a `struct xdp_md` context, which 5.15 brought.
    (
        "prog_test_run",
        &[
            "ipvlan::rx_a_down_endpoints_address_goes_to_the_node",
            "ipvlan::rx_unicast_is_demuxed_by_destination_ip",
            "ipvlan::rx_l3_neighbour_solicitations_are_answered",
            "ipvlan::rx_l3s_goes_through_the_nodes_stack",
            "ipvlan::tx_l2_to_another_endpoints_address",
            "ipvlan::tx_l3_local_delivery",
            "ipvlan::tx_l3_routes_through_the_node",
        ],
    ),
    (
        "macvlan",
        &["--exact", "mixed_modes_on_one_parent_match_native"],
    ),
    ("cni", &["--exact", "add_check_del_with_host_local"]),
    (
        "host",
        &["--exact", "host_counts_its_cgroup_traffic_on_v4_and_v6"],
    ),
    (
        "container",
        &[
            "--exact",
            "joiner_keeps_its_network_when_the_first_container_exits",
        ],
    ),
    (
        "sriov",
        &["--exact", "a_device_moves_in_works_and_comes_back_restored"],
    ),
    (
        "nested",
        &[
            "--exact",
            "vm_container_reaches_the_wire_and_a_host_container",
        ],
    ),
    (
        "kernels",
        &[
            "--exact",
            "l2_bridge_matches_the_driver",
            "l3_bridge_matches_the_driver",
        ],
    ),
    (
        "bridge",
        &["--exact", "ports::ports_of_one_bridge_reach_each_other"],
    ),
    (
        "router",
        &["--exact", "ebpf_routes_without_the_nodes_forwarding"],
    ),
    (
        "conflict",
        &[
            "--exact",
            "an_address_of_another_host_is_refused_before_anything_is_made",
        ],
    ),
];

/// The ipvlan l3s differential, which 6.12 runs for 6.1 (the longest line).
const KERNELS_L3S: &[&str] = &["--exact", "l3s_bridge_matches_the_driver"];

/// The suites a kernel line runs by default, shared out for CI's time (the
/// matrix lasts as long as its longest line; `vm-test --kernel K -- TARGET`
/// runs any target's whole list anywhere). 6.12 takes the ways of the
/// development kernel (tcx, the `bpf_loop` build), where the PROG_TEST_RUN
/// suite runs natively: it leaves that to 6.1 (the clsact path) and takes
/// the l3s differential from it; 6.1 leaves the kinds' sharing of a parent
/// (the same programs as on 6.12) to 6.12.
pub(super) fn suites_of(line: &str) -> Vec<(&'static str, &'static [&'static str])> {
    match line {
        "5.10" => COMPAT_SUITES.to_vec(),
        "6.12" => GUEST_SUITES
            .iter()
            .filter(|(target, _)| *target != "prog_test_run")
            .map(|&(target, args)| match target {
                "kernels" => (target, KERNELS_L3S),
                _ => (target, args),
            })
            .collect(),
        _ => GUEST_SUITES
            .iter()
            .filter(|(target, _)| *target != "ipvlan")
            .map(|&(target, args)| match target {
                "kernels" => (target, KERNELS_EXCEPT_L3S),
                _ => (target, args),
            })
            .collect(),
    }
}

/// The ipvlan differentials 6.1 runs.
const KERNELS_EXCEPT_L3S: &[&str] = &[
    "--exact",
    "l2_bridge_matches_the_driver",
    "l3_bridge_matches_the_driver",
    "the_native_backend_is_the_kernels_ipvlan",
];
