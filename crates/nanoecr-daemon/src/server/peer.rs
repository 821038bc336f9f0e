//! Who may talk to the daemon. The socket's file mode is the first gate; peer credentials
//! (SO_PEERCRED) are the second, because a socket's permissions can be loosened by accident
//! (a wrong `mode`, a copied directory) while the kernel's word on the peer cannot.
//!
//! The decision is a pure function ([`check_peer`]) so it is unit-tested without switching users.

/// Credentials of a connected peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCred {
    /// Effective user id.
    pub uid: u32,
    /// Effective (primary) group id.
    pub gid: u32,
    /// Process id, when the kernel reports it.
    pub pid: Option<i32>,
    /// Supplementary groups (from `/proc/<pid>/status`), when readable.
    pub groups: Vec<u32>,
}

/// Who is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessPolicy {
    /// The daemon's own uid: its user may always connect.
    pub daemon_uid: u32,
    /// Members of this group (primary or supplementary) may connect.
    pub allowed_gid: Option<u32>,
}

/// Allow the daemon's own user, root, and members of the allowed group; refuse everyone else
/// with a sentence saying why.
pub fn check_peer(peer: &PeerCred, policy: &AccessPolicy) -> Result<(), String> {
    if peer.uid == policy.daemon_uid || peer.uid == 0 {
        return Ok(());
    }
    match policy.allowed_gid {
        Some(g) if peer.gid == g || peer.groups.contains(&g) => Ok(()),
        Some(g) => Err(format!(
            "permission denied: uid {} (gid {}) is neither the daemon's user (uid {}) nor root nor in the allowed group (gid {g})",
            peer.uid, peer.gid, policy.daemon_uid
        )),
        None => Err(format!(
            "permission denied: uid {} is neither the daemon's user (uid {}) nor root, and no group is allowed (socket.group)",
            peer.uid, policy.daemon_uid
        )),
    }
}

/// Credentials of a connected tokio socket, with supplementary groups from procfs.
pub fn peer_of(stream: &tokio::net::UnixStream) -> std::io::Result<PeerCred> {
    let c = stream.peer_cred()?;
    let pid = c.pid();
    Ok(PeerCred { uid: c.uid(), gid: c.gid(), pid, groups: pid.map(supplementary_groups).unwrap_or_default() })
}

/// The `Groups:` line of /proc/<pid>/status. Empty when unreadable (the process may be gone):
/// the peer is then judged on uid and primary gid alone, which can only refuse more, never less.
fn supplementary_groups(pid: i32) -> Vec<u32> {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return Vec::new();
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|g| g.split_whitespace().filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(uid: u32, gid: u32, groups: &[u32]) -> PeerCred {
        PeerCred { uid, gid, pid: None, groups: groups.to_vec() }
    }

    #[test]
    fn own_user_and_root_are_allowed() {
        let p = AccessPolicy { daemon_uid: 1000, allowed_gid: None };
        assert!(check_peer(&peer(1000, 1000, &[]), &p).is_ok());
        assert!(check_peer(&peer(0, 0, &[]), &p).is_ok());
    }

    #[test]
    fn others_need_the_allowed_group_primary_or_supplementary() {
        let p = AccessPolicy { daemon_uid: 1000, allowed_gid: Some(500) };
        assert!(check_peer(&peer(1001, 500, &[]), &p).is_ok());
        assert!(check_peer(&peer(1001, 1001, &[20, 500]), &p).is_ok());
        let e = check_peer(&peer(1001, 1001, &[20]), &p).expect_err("refused");
        assert!(e.contains("uid 1001") && e.contains("gid 500"), "{e}");
        let none = AccessPolicy { daemon_uid: 1000, allowed_gid: None };
        assert!(check_peer(&peer(65534, 65534, &[]), &none).is_err());
    }

    #[test]
    fn this_process_reads_its_own_groups() {
        let me = std::process::id() as i32;
        // Every process has a status file; the list may be empty but must parse.
        let _ = supplementary_groups(me);
        assert!(supplementary_groups(-1).is_empty());
    }
}
