//! The CNI identity of an attachment, recorded with it: which network and
//! container made it, and for Kubernetes which pod.

use serde::{Deserialize, Serialize};

/// The CNI identity of an attachment: (network name, container id); the
/// interface name is the attachment's own. The pod is a note beside it.
#[derive(Clone, Debug, Eq, Serialize, Deserialize)]
pub struct CniRef {
    pub network: String,
    pub container_id: String,
    /// Kubernetes: the pod's namespace and name (CNI_ARGS
    /// `K8S_POD_NAMESPACE`, `K8S_POD_NAME`), when the runtime gave them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
}

/// Equal by identity alone: a DEL or GC names the attachment by network and
/// container id, with or without the pod's CNI_ARGS.
impl PartialEq for CniRef {
    fn eq(&self, other: &Self) -> bool {
        self.network == other.network && self.container_id == other.container_id
    }
}

impl CniRef {
    /// `namespace/name` of the pod, when both are known.
    pub fn pod(&self) -> Option<String> {
        Some(format!(
            "{}/{}",
            self.pod_namespace.as_deref()?,
            self.pod_name.as_deref()?
        ))
    }
}
