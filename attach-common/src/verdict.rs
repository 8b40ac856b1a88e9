//! What the datapath did with a frame: one enum for deliveries and drop
//! reasons, shared by the programs (which count them) and user space (which
//! renders them as metric labels).

/// Where in the datapath a frame was decided.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Received on a parent from the wire.
    Rx = 0,
    /// Sent by an endpoint (host-side veth ingress).
    Tx = 1,
    /// Sent by the node's own stack out of a parent.
    Host = 2,
}

impl Direction {
    pub const ALL: [Direction; 3] = [Direction::Rx, Direction::Tx, Direction::Host];

    pub const fn name(self) -> &'static str {
        match self {
            Direction::Rx => "rx",
            Direction::Tx => "tx",
            Direction::Host => "host",
        }
    }
}

#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Unicast redirected to the endpoint owning the destination.
    ToEndpoint = 0,
    /// Handed to the node's stack (unknown unicast, or not ours).
    ToHost = 1,
    /// Broadcast/multicast cloned to endpoints (the original continues).
    Flood = 2,
    /// Broadcast reflected back to a private/passthru sender, and only to it.
    ToSender = 3,
    /// Sent out of the parent device.
    ToParent = 4,
    /// Passed untouched: not for a parent or port the datapath manages.
    NotOurs = 5,
    /// Passed untouched to the node's stack: too short or malformed to
    /// switch (an Ethernet header cut short; for ipvlan, an IPv4, IPv6 or
    /// ARP header that cannot be read).
    Unparsed = 6,
    /// Dropped: the frame's source MAC is not the sending endpoint's.
    DropSpoofed = 7,
    /// Dropped: the redirect helper failed.
    DropRedirect = 8,
    /// Dropped: malformed frame from an endpoint.
    DropParse = 9,
    /// Dropped: unicast between isolated endpoints.
    DropPrivate = 10,
    /// Dropped: a frame larger than the parent's MTU (and not GSO).
    DropMtu = 11,
    /// ipvlan l3: routed by the node's tables out of the parent.
    Routed = 12,
    /// ipvlan l3: an ARP request or neighbour solicitation for an endpoint
    /// answered with the parent's MAC.
    NeighReply = 13,
    /// Dropped: broadcast/multicast from an l3 endpoint.
    DropMulticast = 14,
    /// Dropped: the node has no route (unreachable, blackhole, prohibit).
    DropNoRoute = 15,
    /// Dropped: a frame outside the VLAN of where it is going: a tagged
    /// frame on a switch access port, a VLAN the switch does not carry, or a
    /// frame for a nested endpoint not in its VLAN.
    DropVlan = 16,
    /// Dropped: the destination MAC is behind the port the frame came in
    /// on (a switch never sends a frame back where it came from).
    DropSamePort = 17,
    /// Dropped: a tagged frame on a VM's tap for a VLAN no nested endpoint
    /// of that tap has.
    DropVlanUnknown = 18,
    /// Dropped: an ARP packet whose sender MAC is not the endpoint's.
    DropSpoofedArp = 19,
    /// Dropped: a neighbour discovery message with a link-layer address
    /// option not the endpoint's, or an advertisement for an address that
    /// is not the endpoint's.
    DropSpoofedNd = 20,
    /// Dropped: a router advertisement or redirect from an endpoint not
    /// allowed to send them.
    DropRogueRouter = 21,
    /// Dropped: a DHCP or DHCPv6 server message from an endpoint not allowed
    /// to send them.
    DropRogueDhcp = 22,
    /// A flood copy the clone helper failed to make (counted per copy).
    DropFloodCopy = 23,
    /// Over the endpoint's rate limit in this direction (its token bucket,
    /// `attach_bw`, is empty).
    DropRateLimit = 24,
}

/// Number of `Verdict` values.
pub const VERDICT_COUNT: u32 = 25;
/// Counter slots per direction in the verdict table: room for verdicts to
/// come, so the table keeps its size (a pinned map of another size cannot
/// be reused across an upgrade).
pub const VERDICT_STRIDE: u32 = 64;
/// Size of the verdict counter table.
pub const VERDICT_SLOTS: u32 = VERDICT_STRIDE * 3;
const _: () = assert!(VERDICT_COUNT <= EVENTS_LOST_INDEX);
/// The last slot of each direction's stride in the verdict table counts
/// events the ring buffer had no room for (`attach monitor` was not reading
/// fast enough, or nobody was): not a verdict, so no `Verdict` value names it,
/// and the table keeps its shape.
pub const EVENTS_LOST_INDEX: u32 = VERDICT_STRIDE - 1;

/// Index of the lost-events counter of `dir` in the verdict table.
#[inline(always)]
pub const fn events_lost_slot(dir: Direction) -> u32 {
    dir as u32 * VERDICT_STRIDE + EVENTS_LOST_INDEX
}

impl Verdict {
    pub const ALL: [Verdict; VERDICT_COUNT as usize] = [
        Verdict::ToEndpoint,
        Verdict::ToHost,
        Verdict::Flood,
        Verdict::ToSender,
        Verdict::ToParent,
        Verdict::NotOurs,
        Verdict::Unparsed,
        Verdict::DropSpoofed,
        Verdict::DropRedirect,
        Verdict::DropParse,
        Verdict::DropPrivate,
        Verdict::DropMtu,
        Verdict::Routed,
        Verdict::NeighReply,
        Verdict::DropMulticast,
        Verdict::DropNoRoute,
        Verdict::DropVlan,
        Verdict::DropSamePort,
        Verdict::DropVlanUnknown,
        Verdict::DropSpoofedArp,
        Verdict::DropSpoofedNd,
        Verdict::DropRogueRouter,
        Verdict::DropRogueDhcp,
        Verdict::DropFloodCopy,
        Verdict::DropRateLimit,
    ];

    /// Index of this verdict's counter for `dir`.
    #[inline(always)]
    pub const fn slot(self, dir: Direction) -> u32 {
        dir as u32 * VERDICT_STRIDE + self as u32
    }

    pub const fn is_drop(self) -> bool {
        matches!(
            self,
            Verdict::DropSpoofed
                | Verdict::DropRedirect
                | Verdict::DropParse
                | Verdict::DropPrivate
                | Verdict::DropMtu
                | Verdict::DropMulticast
                | Verdict::DropNoRoute
                | Verdict::DropVlan
                | Verdict::DropSamePort
                | Verdict::DropVlanUnknown
                | Verdict::DropSpoofedArp
                | Verdict::DropSpoofedNd
                | Verdict::DropRogueRouter
                | Verdict::DropRogueDhcp
                | Verdict::DropFloodCopy
                | Verdict::DropRateLimit
        )
    }

    /// Stable label used in JSON and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            Verdict::ToEndpoint => "to_endpoint",
            Verdict::ToHost => "to_host",
            Verdict::Flood => "flood",
            Verdict::ToSender => "to_sender",
            Verdict::ToParent => "to_parent",
            Verdict::NotOurs => "not_ours",
            Verdict::Unparsed => "unparsed",
            Verdict::DropSpoofed => "spoofed_source",
            Verdict::DropRedirect => "redirect_failed",
            Verdict::DropParse => "parse_error",
            Verdict::DropPrivate => "private_isolation",
            Verdict::DropMtu => "mtu_exceeded",
            Verdict::Routed => "routed",
            Verdict::NeighReply => "neigh_reply",
            Verdict::DropMulticast => "l3_multicast",
            Verdict::DropNoRoute => "no_route",
            Verdict::DropVlan => "vlan_mismatch",
            Verdict::DropSamePort => "same_port",
            Verdict::DropVlanUnknown => "vlan_unknown",
            Verdict::DropSpoofedArp => "spoofed_arp",
            Verdict::DropSpoofedNd => "spoofed_nd",
            Verdict::DropRogueRouter => "rogue_router",
            Verdict::DropRogueDhcp => "rogue_dhcp_server",
            Verdict::DropFloodCopy => "flood_copy_failed",
            Verdict::DropRateLimit => "rate_limited",
        }
    }
}
