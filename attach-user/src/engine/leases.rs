//! The DHCP leases of the node's endpoints over their life: renewed past
//! T1 and rebound with any server past T2 (by `reconcile`, which the agent
//! runs periodically), ended by a server's DHCPNAK, named by
//! `check` once expired, released on `del`, and `add` warning when no
//! agent will renew one. Renewal, rebinding and release speak from inside the
//! container's namespace, from the leased address: that works whatever
//! datapath carries the endpoint.

use super::{Engine, report::Repair};
use crate::{
    dhcp::{
        self, Lease,
        client::Outcome,
        lease::{now, utc},
    },
    error::{Error, Result},
    model::Attachment,
};

/// Runs `f` inside `rec`'s namespace on a blocking thread (never a tokio
/// worker: the thread `setns`es).
async fn in_container<T: Send + 'static>(
    rec: &Attachment,
    f: impl FnOnce(&str) -> Result<T> + Send + 'static,
) -> Result<T> {
    let ns = rec.open_netns()?;
    if ns.inode != rec.netns_inode {
        return Err(Error::not_found(format!(
            "the network namespace of {} is gone",
            rec.ifname
        )));
    }
    let ifname = rec.ifname.clone();
    tokio::task::spawn_blocking(move || ns.run(|| f(&ifname)))
        .await
        .map_err(|e| Error::system(format!("{e}")))??
}

impl Engine {
    /// Renews every lease of `records` past T1 and not expired (past T2:
    /// rebinds it, with any server), saving the records whose lease changed;
    /// what it did, as repairs. A renewal or rebinding nobody answered keeps
    /// the lease as it was (`check` names it once expired); one refused
    /// (DHCPNAK) ends it, and `check` names it then.
    pub(super) async fn renew_leases(&self, records: &mut [Attachment]) -> Result<Vec<Repair>> {
        let mut done = Vec::new();
        let at = now();
        for rec in records.iter_mut() {
            let Some(lease) = rec.dhcp.clone() else {
                continue;
            };
            // A namespace gone is reconcile's to deal with.
            if !lease.renewal_due(at)
                || lease.expired(at)
                || !rec.open_netns().is_ok_and(|ns| ns.inode == rec.netns_inode)
            {
                continue;
            }
            let rebinding = lease.rebinding_due(at);
            let drift = if rebinding {
                format!(
                    "lease of {} from {} not renewed by T2 ({}): rebinding",
                    lease.address,
                    lease.server,
                    utc(lease.renewed_at + lease.t2)
                )
            } else {
                format!(
                    "lease of {} from {} due for renewal since {}",
                    lease.address,
                    lease.server,
                    utc(lease.renewed_at + lease.t1)
                )
            };
            let mut asked = lease.clone();
            let result = in_container(rec, move |ifname| {
                let outcome = if rebinding {
                    dhcp::client::rebind(ifname, &mut asked)
                } else {
                    dhcp::client::renew(ifname, &mut asked)
                };
                Ok((asked, outcome))
            })
            .await;
            let action = match result {
                Ok((after, Ok(outcome))) => {
                    let action = match &outcome {
                        Outcome::Extended if after.server != lease.server => format!(
                            "rebound to {} until {}",
                            after.server,
                            utc(after.expires_at)
                        ),
                        Outcome::Extended => format!("renewed until {}", utc(after.expires_at)),
                        Outcome::Ended(e) => format!("ended: {}", e.message),
                    };
                    rec.dhcp = Some(after);
                    self.state.save(rec)?;
                    action
                }
                Ok((_, Err(e))) | Err(e) => format!("failed: {}; kept", e.message),
            };
            done.push(Repair {
                netns: rec.netns.clone(),
                ifname: rec.ifname.clone(),
                drift,
                action,
            });
        }
        Ok(done)
    }

    /// Gives `rec`'s lease back to its server; a warning when it cannot.
    pub(super) async fn release_lease(&self, rec: &Attachment) -> Option<String> {
        // A lease the server refused is not its to take back.
        let lease = rec.dhcp.clone().filter(|l| l.refused.is_none())?;
        let l = lease.clone();
        match in_container(rec, move |ifname| dhcp::client::release(ifname, &l)).await {
            Ok(()) => None,
            Err(e) => Some(format!(
                "the lease of {} was not released to {} (it runs out at {}): {}",
                lease.address,
                lease.server,
                utc(lease.expires_at),
                e.message
            )),
        }
    }

    /// Names `rec`'s lease once it has run out.
    pub(super) fn check_lease(rec: &Attachment) -> Result<()> {
        match &rec.dhcp {
            Some(l) if l.expired(now()) => Err(Error::system(format!(
                "lease of {} from {} expired at {} ({})",
                l.address,
                l.server,
                utc(l.expires_at),
                match &l.refused {
                    Some(why) => format!("the server refused it: {why}"),
                    None => "not renewed: is `attach agent` running?".to_owned(),
                }
            ))),
            _ => Ok(()),
        }
    }

    /// What `add` warns of when no agent runs to renew `lease`.
    pub(super) fn unrenewed_warning(&self, lease: &Lease) -> Option<String> {
        let socket = crate::node_id::agent_socket(&self.node_id);
        if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
            return None;
        }
        Some(format!(
            "no agent runs on this node to renew the lease of {} from {}: it expires at {} \
             (start `attach agent`, or run `attach reconcile` before then)",
            lease.address,
            lease.server,
            utc(lease.expires_at)
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::{addr::Mac, model::Kind};

    #[test]
    fn check_names_an_expired_lease_only() {
        let mut rec = Attachment::new(Kind::Macvlan, "eth0");
        assert!(Engine::check_lease(&rec).is_ok());
        let mut lease = Lease {
            address: Ipv4Addr::new(10, 0, 0, 5),
            prefix: 24,
            server: Ipv4Addr::new(10, 0, 0, 1),
            server_mac: Mac::default(),
            client_id: "00:61".into(),
            chaddr: Mac::default(),
            acquired_at: 0,
            renewed_at: 0,
            expires_at: 120,
            t1: 60,
            t2: 105,
            router: None,
            dns: Vec::new(),
            search: Vec::new(),
            mtu: None,
            refused: None,
        };
        rec.dhcp = Some(lease.clone());
        let e = Engine::check_lease(&rec).unwrap_err();
        assert!(
            e.message
                .starts_with("lease of 10.0.0.5 from 10.0.0.1 expired at 1970-01-01T00:02:00Z"),
            "{}",
            e.message
        );
        lease.expires_at = now() + 60;
        rec.dhcp = Some(lease.clone());
        assert!(Engine::check_lease(&rec).is_ok());
        // A lease the server refused (DHCPNAK) is over: named, with why.
        lease.end("DHCPNAK: wrong address".into(), now());
        rec.dhcp = Some(lease);
        let e = Engine::check_lease(&rec).unwrap_err();
        assert!(
            e.message
                .starts_with("lease of 10.0.0.5 from 10.0.0.1 expired at ")
                && e.message
                    .ends_with("(the server refused it: DHCPNAK: wrong address)"),
            "{}",
            e.message
        );
    }
}
