//! Value parsers of command-line options: each error names the value and
//! the rule, in the words `attach` uses everywhere.

use crate::{
    addr::{IpNet, Mac},
    model::Port,
};

/// A VLAN ID as typed: a number (its range is checked with the request,
/// so the error names the option and the rule).
pub fn vlan(s: &str) -> Result<u16, String> {
    s.parse::<u16>()
        .map_err(|_| format!("VLAN ID {s:?} is not a number from 1 to 4094"))
}

pub fn mac(s: &str) -> Result<Mac, String> {
    s.parse().map_err(|e: crate::error::Error| e.message)
}

pub fn cidr(s: &str) -> Result<IpNet, String> {
    s.parse().map_err(|e: crate::error::Error| e.message)
}

pub fn port(s: &str) -> Result<Port, String> {
    s.parse().map_err(|e: crate::error::Error| e.message)
}

use clap::builder::TypedValueParser as _;

type Choice<T> =
    clap::builder::MapValueParser<clap::builder::PossibleValuesParser, fn(String) -> T>;

/// `on` or `off`, as the CLI's switches are written.
pub fn on_off() -> Choice<bool> {
    clap::builder::PossibleValuesParser::new(["on", "off"]).map(|s: String| s == "on")
}

/// Who forwards for a router endpoint.
pub fn forwarder() -> Choice<crate::model::Datapath> {
    use clap::builder::PossibleValue;
    clap::builder::PossibleValuesParser::new([
        PossibleValue::new("ebpf").help("Our programs (bpf_fib_lookup, bpf_redirect_peer/neigh)"),
        PossibleValue::new("kernel").help("The node's own forwarding (the slow path)"),
    ])
    .map(|s: String| match s.as_str() {
        "kernel" => crate::model::Datapath::Kernel,
        _ => crate::model::Datapath::Ebpf,
    })
}

/// How a request's options are read from JSON (the agent's socket, the CNI
/// configuration): as the CLI writes them where a bare JSON value would be
/// ambiguous.
pub mod de {
    use serde::{Deserialize, Deserializer, de::Error as _};

    use crate::model::Datapath;

    /// A list, or one value (or a comma-separated string of them), as a
    /// repeated CLI option takes it.
    pub fn list<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: serde::de::DeserializeOwned,
    {
        use serde_json::Value;
        let items = match Value::deserialize(d)? {
            Value::Array(items) => items,
            Value::String(s) => s
                .split(',')
                .map(|p| Value::String(p.trim().to_owned()))
                .collect(),
            one => vec![one],
        };
        items
            .into_iter()
            .map(|v| serde_json::from_value(v).map_err(D::Error::custom))
            .collect()
    }

    /// `"on"`/`"off"` (or a JSON boolean).
    pub fn on_off<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Switch {
            Bool(bool),
            Word(String),
        }
        match Option::<Switch>::deserialize(d)? {
            None => Ok(None),
            Some(Switch::Bool(b)) => Ok(Some(b)),
            Some(Switch::Word(w)) => match w.as_str() {
                "on" => Ok(Some(true)),
                "off" => Ok(Some(false)),
                _ => Err(D::Error::custom(format!(
                    "invalid value {w:?}: it takes on, off"
                ))),
            },
        }
    }

    /// A macvlan receive path: `tc` or `xdp`.
    pub fn rx_path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Datapath>, D::Error> {
        match Option::<Datapath>::deserialize(d)? {
            Some(p @ (Datapath::Tc | Datapath::Xdp)) => Ok(Some(p)),
            None => Ok(None),
            Some(p) => Err(D::Error::custom(format!(
                "invalid value {:?}: it takes tc, xdp",
                p.name()
            ))),
        }
    }

    /// Who forwards for a router endpoint: `ebpf` or `kernel`.
    pub fn forwarder<'de, D: Deserializer<'de>>(d: D) -> Result<Datapath, D::Error> {
        match Datapath::deserialize(d)? {
            p @ (Datapath::Ebpf | Datapath::Kernel) => Ok(p),
            p => Err(D::Error::custom(format!(
                "invalid value {:?}: it takes ebpf, kernel",
                p.name()
            ))),
        }
    }

    pub fn eth0() -> String {
        "eth0".into()
    }

    pub fn ebpf() -> Datapath {
        Datapath::Ebpf
    }
}
