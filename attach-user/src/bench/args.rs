//! The benchmark's options (`attach bench`).

use clap::Args;

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// M1, M2 and M6 only, short runs (under two minutes; what CI runs).
    #[arg(long)]
    pub quick: bool,
    /// Rounds of every contender, interleaved (default 5, --quick 3; at
    /// least 3). Verdicts use the middle half of the rounds.
    #[arg(long, value_name = "N")]
    pub rounds: Option<u32>,
    /// Seconds of one measured run (default 5; --quick 1).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Also write an SVG chart of the results to FILE.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<std::path::PathBuf>,
    /// Run only these metrics (comma-separated, e.g. m1,m3).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub metrics: Vec<String>,
    /// M1-M5 with only these contenders (comma-separated, e.g.
    /// host,native,ours-tc; default all six).
    ///
    /// A ratio needs its reference (host, native, redirect-peer) among
    /// them; a target whose contender or reference did not run is shown as
    /// not measured.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub contenders: Vec<String>,
    /// M7 with only these numbers of endpoints (comma-separated, of 1, 10
    /// and 100; default all three). Its target is the 100 endpoints' case.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub m7_endpoints: Vec<usize>,
    /// Endpoints on one parent for M7's scale row, which times one add
    /// (and its del) with 10 endpoints already on the parent and with this
    /// many (default 1000; at most 4000), in wall clock and in CPU time;
    /// 0 leaves the row out.
    #[arg(long, value_name = "N")]
    pub m7_scale: Option<usize>,
    /// Turn on fraglist GRO (rx-gro-list) on every parent, the NIC stand-in.
    ///
    /// Off by default, as on most NICs. With it the parent chains a UDP
    /// flow's datagrams before anything else sees them, so host, native and
    /// ours-tc pass the IP layer once per chain too; ours-xdp chains in the
    /// container either way (XDP runs before the parent's GRO).
    #[arg(long)]
    pub parent_gro_list: bool,
    /// With M6: write each path's program as the kernel runs it (bpftool's
    /// translated dump) to DIR/<path>.txt, the instructions counted for the
    /// path with tracing off marked `>`.
    ///
    /// The instruction counts are an upper bound found by a search of the
    /// program's control-flow graph; the listing shows the path that bound
    /// was found on, so it can be checked by eye.
    #[arg(long, value_name = "DIR")]
    pub listing: Option<std::path::PathBuf>,
}
