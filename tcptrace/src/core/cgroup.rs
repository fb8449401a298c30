//! Which Kubernetes pod and which container a process belongs to, from its cgroup path (the
//! text of `/proc/PID/cgroup`): what the exporter's namespace info series carries, so that no
//! other series needs a pod or container label. Pure: text in, names out.
//!
//! The paths differ by cgroup driver and runtime (kubelet's `pkg/kubelet/cm` names the pod
//! cgroups; each runtime names its container's):
//! - systemd driver: `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<UID>.slice/`
//!   with the UID's dashes written as underscores (systemd reserves `-` as its separator), then
//!   `cri-containerd-<ID>.scope` (containerd), `crio-<ID>.scope` (CRI-O) or `docker-<ID>.scope`;
//! - cgroupfs driver: `/kubepods/burstable/pod<UID>/<ID>`;
//! - Docker outside Kubernetes: `/system.slice/docker-<ID>.scope` or `/docker/<ID>`.
//!
//! Container IDs are 64 hexadecimal digits in all of them. CRI-O's monitor process lives in a
//! `crio-conmon-<ID>.scope`: it is not the container, and is not taken for it.

/// What a cgroup path says about a process's place in a container host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Placement {
    /// The Kubernetes pod's UID, with dashes (`0c4a3d0e-…`).
    pub pod_uid: Option<String>,
    /// The container's 64-digit ID.
    pub container_id: Option<String>,
}

/// Reads the placement out of the text of `/proc/PID/cgroup` (v2's single `0::` line, or v1's
/// one line per hierarchy: the first line that names a pod or a container wins).
pub fn placement(cgroup_file: &str) -> Placement {
    let mut best = Placement::default();
    for line in cgroup_file.lines() {
        // `hierarchy-ID:controllers:path`; the path may itself hold colons.
        let Some(path) = line.splitn(3, ':').nth(2) else {
            continue;
        };
        let found = of_path(path);
        if found.pod_uid.is_some() || found.container_id.is_some() {
            let complete = found.pod_uid.is_some() && found.container_id.is_some();
            if best == Placement::default() || complete {
                best = found;
            }
            if complete {
                break;
            }
        }
    }
    best
}

/// The placement one cgroup path names.
pub fn of_path(path: &str) -> Placement {
    let mut placement = Placement::default();
    for component in path.split('/') {
        if let Some(uid) = pod_uid(component) {
            placement.pod_uid = Some(uid);
        } else if let Some(id) = container_id(component) {
            placement.container_id = Some(id);
        }
    }
    placement
}

/// `pod<UID>` (cgroupfs) or `kubepods-<class>-pod<UID_with_underscores>.slice` (systemd).
fn pod_uid(component: &str) -> Option<String> {
    let uid = if component.starts_with("kubepods") {
        &component[component.rfind("-pod")? + 4..]
    } else {
        component.strip_prefix("pod")?
    };
    let uid = uid.strip_suffix(".slice").unwrap_or(uid);
    let uid = uid.replace('_', "-");
    is_uid(&uid).then_some(uid)
}

/// 8-4-4-4-12 hexadecimal digits.
fn is_uid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(group, len)| group.len() == len && is_hex(group))
}

/// `<ID>`, `cri-containerd-<ID>.scope`, `crio-<ID>.scope`, `docker-<ID>.scope`.
fn container_id(component: &str) -> Option<String> {
    let id = component.strip_suffix(".scope").unwrap_or(component);
    let id = ["cri-containerd-", "crio-", "docker-", "containerd-"]
        .iter()
        .find_map(|prefix| id.strip_prefix(prefix))
        .unwrap_or(id);
    (id.len() == 64 && is_hex(id)).then(|| id.to_owned())
}

fn is_hex(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f1c9a0b7d2e4f5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c";
    const UID: &str = "0c4a3d0e-91b2-4c3d-8e5f-6a7b8c9d0e1f";

    fn both() -> Placement {
        Placement {
            pod_uid: Some(UID.into()),
            container_id: Some(ID.into()),
        }
    }

    #[test]
    fn containerd_with_the_systemd_driver() {
        let uid = UID.replace('-', "_");
        let file = format!(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid}.slice/cri-containerd-{ID}.scope\n"
        );
        assert_eq!(placement(&file), both());
    }

    #[test]
    fn crio_with_the_systemd_driver_and_its_monitor() {
        let uid = UID.replace('-', "_");
        let pod =
            format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid}.slice");
        assert_eq!(placement(&format!("0::{pod}/crio-{ID}.scope\n")), both());
        // conmon watches the container from beside it: the pod, not the container.
        assert_eq!(
            placement(&format!("0::{pod}/crio-conmon-{ID}.scope\n")),
            Placement {
                pod_uid: Some(UID.into()),
                container_id: None
            }
        );
    }

    #[test]
    fn guaranteed_pods_sit_right_under_kubepods() {
        let uid = UID.replace('-', "_");
        let file = format!("0::/kubepods.slice/kubepods-pod{uid}.slice/cri-containerd-{ID}.scope");
        assert_eq!(placement(&file), both());
    }

    #[test]
    fn the_cgroupfs_driver_on_cgroup_v1() {
        let file = format!(
            "12:pids:/kubepods/burstable/pod{UID}/{ID}\n\
             11:cpu,cpuacct:/kubepods/burstable/pod{UID}/{ID}\n\
             1:name=systemd:/kubepods/burstable/pod{UID}/{ID}\n"
        );
        assert_eq!(placement(&file), both());
    }

    #[test]
    fn docker_without_kubernetes() {
        let only = Placement {
            pod_uid: None,
            container_id: Some(ID.into()),
        };
        assert_eq!(
            placement(&format!("0::/system.slice/docker-{ID}.scope\n")),
            only
        );
        assert_eq!(placement(&format!("4:memory:/docker/{ID}\n")), only);
    }

    #[test]
    fn a_host_process_is_in_no_container() {
        for file in [
            "0::/user.slice/user-0.slice/session-3.scope\n",
            "0::/system.slice/sshd.service\n",
            "0::/\n",
            "",
            "garbage without colons\n",
            // Looks like a pod, is not a UID.
            "0::/kubepods/burstable/podcast/abc\n",
        ] {
            assert_eq!(placement(file), Placement::default(), "{file:?}");
        }
    }

    #[test]
    fn ids_of_the_wrong_length_are_not_containers() {
        assert_eq!(
            of_path(&format!("/docker/{}", &ID[..63])),
            Placement::default()
        );
        assert_eq!(of_path(&format!("/docker/{ID}0")), Placement::default());
    }
}
