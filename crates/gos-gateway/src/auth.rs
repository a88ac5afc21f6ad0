//! Authorization by role: what each allow-listed identity may ask of a gateway.
//!
//! Checked for every request after its header is decoded and before anything else happens
//! (no byte of an object is read, no space reserved). Each refusal is
//! [`Error::PermissionDenied`].

use gos_store::{Error, ObjectKey};
use gos_topology::NodeId;

use crate::deliver::DeliveryTarget;
use crate::frame::Request;
use crate::tls::Role;

/// What a request does, for authorization.
enum Access<'a> {
    /// Reads nothing sensitive or one key: every role.
    Read,
    /// Lists keys under a prefix; the root (every key) is for admins.
    List { root: bool },
    /// Writes, deletes or releases one key.
    Write(&'a ObjectKey),
    /// Removes only expired objects.
    Sweep,
    /// Deletes many keys at once (by prefix, round retention).
    Bulk,
    /// Delivers a message (and its object) to this cluster's nodes.
    Deliver {
        sender: NodeId,
        key: Option<&'a ObjectKey>,
    },
}

fn access(request: &Request) -> Access<'_> {
    match request {
        Request::Ping
        | Request::Limits
        | Request::Len
        | Request::Stats
        | Request::Get { .. }
        | Request::Head { .. } => Access::Read,
        Request::KeysWithPrefix { prefix } => Access::List {
            root: prefix.is_root(),
        },
        Request::Put { key, .. }
        | Request::Resume { key, .. }
        | Request::Delete { key }
        | Request::Release { key } => Access::Write(key),
        Request::Sweep => Access::Sweep,
        Request::DeletePrefix { .. } | Request::DeleteRoundsBefore { .. } => Access::Bulk,
        Request::Deliver(d) => Access::Deliver {
            sender: d.message.sender,
            key: d.object.as_ref().map(|o| &o.key),
        },
    }
}

/// The node a key belongs to: its second segment, `node_{n}` (or `{n}`), as in
/// `{fed}/node_{n}/round_{r}`.
fn node_of(key: &ObjectKey) -> Option<NodeId> {
    key.segments().nth(1)?.parse().ok()
}

fn owns(peer: &str, node: NodeId, target: Option<&dyn DeliveryTarget>) -> bool {
    target
        .and_then(|t| t.cluster_of(node))
        .is_some_and(|cluster| cluster == peer)
}

fn owns_key(peer: &str, key: &ObjectKey, target: Option<&dyn DeliveryTarget>) -> bool {
    node_of(key).is_some_and(|node| owns(peer, node, target))
}

/// Whether `peer`, with `role`, may make `request` at a gateway delivering to `target`.
pub(crate) fn authorize(
    peer: &str,
    role: Role,
    request: &Request,
    target: Option<&dyn DeliveryTarget>,
) -> Result<(), Error> {
    let denied = |what: String| Err(Error::PermissionDenied(format!("`{peer}` ({role}) {what}")));
    match (role, access(request)) {
        (Role::Admin, _) | (_, Access::Read) => Ok(()),
        (_, Access::List { root: true }) => {
            denied("may not list every key (admin only; give a prefix)".into())
        }
        (_, Access::List { root: false }) => Ok(()),
        (Role::ReadOnly, _) => denied("may only read".into()),
        (_, Access::Bulk) => denied("may not delete by prefix or by round (admin only)".into()),
        (Role::ReadWrite, Access::Write(_) | Access::Sweep) => Ok(()),
        (Role::ReadWrite, Access::Deliver { .. }) => denied("may not deliver messages".into()),
        (Role::Peer, Access::Sweep) => Ok(()),
        (Role::Peer, Access::Write(key)) => {
            if owns_key(peer, key, target) {
                Ok(())
            } else {
                denied(format!(
                    "may write only under its own nodes' keys, not `{key}`"
                ))
            }
        }
        (Role::Peer, Access::Deliver { sender, key }) => {
            if !owns(peer, sender, target) {
                return denied(format!(
                    "may deliver only from its own nodes, not from {sender}"
                ));
            }
            match key {
                Some(key) if !owns_key(peer, key, target) => denied(format!(
                    "may send objects only under its own nodes' keys, not `{key}`"
                )),
                _ => Ok(()),
            }
        }
        // `Role` is non-exhaustive for other crates only; a new role must be placed above.
        #[allow(unreachable_patterns)]
        (_, _) => denied("has no permission for this".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{Delivery, ObjectHeader, WireOptions};
    use gos_store::{KeyPrefix, PutOptions};
    use gos_topology::{Message, TopologyError};

    /// Nodes 0 and 1 in "east", 2 in "west".
    #[derive(Debug)]
    struct Clusters;

    #[async_trait::async_trait]
    impl DeliveryTarget for Clusters {
        async fn deliver(&self, _: &str, _: NodeId, _: Message) -> Result<(), TopologyError> {
            Ok(())
        }
        fn cluster_of(&self, node: NodeId) -> Option<String> {
            match node.0 {
                0 | 1 => Some("east".into()),
                2 => Some("west".into()),
                _ => None,
            }
        }
    }

    fn key(s: &str) -> ObjectKey {
        ObjectKey::new(s).unwrap()
    }

    fn put(k: &str) -> Request {
        Request::Put {
            key: key(k),
            options: WireOptions::from(&PutOptions::new()),
            len: 1,
            reservation: false,
            transfer: None,
        }
    }

    fn deliver(sender: u32, object: Option<&str>) -> Request {
        let k = key("fed/node_0/round_1");
        Request::Deliver(Box::new(Delivery {
            to: vec![2],
            message: Message::key("fed", NodeId(sender), 1, &k),
            object: object.map(|o| ObjectHeader {
                key: key(o),
                len: 1,
                lease: None,
                transfer: None,
            }),
        }))
    }

    fn check(peer: &str, role: Role, request: &Request) -> bool {
        match authorize(peer, role, request, Some(&Clusters)) {
            Ok(()) => true,
            Err(Error::PermissionDenied(_)) => false,
            Err(other) => panic!("not a permission error: {other}"),
        }
    }

    #[test]
    fn a_peer_writes_and_delivers_only_for_its_own_nodes() {
        assert!(check("east", Role::Peer, &put("fed/node_1/round_3")));
        assert!(!check("east", Role::Peer, &put("fed/node_2/round_3")));
        assert!(!check("east", Role::Peer, &put("fed/node_9/round_3")));
        assert!(!check("east", Role::Peer, &put("loose")));
        assert!(!check(
            "east",
            Role::Peer,
            &Request::Delete {
                key: key("fed/node_2/r")
            }
        ));
        assert!(check(
            "east",
            Role::Peer,
            &deliver(0, Some("fed/node_0/round_1"))
        ));
        assert!(check("east", Role::Peer, &deliver(1, None)));
        // Another cluster's sender, or an object under another cluster's node: refused.
        assert!(!check("east", Role::Peer, &deliver(2, None)));
        assert!(!check(
            "east",
            Role::Peer,
            &deliver(0, Some("fed/node_2/round_1"))
        ));
        // Reads are fine; listing everything and bulk deletes are not.
        assert!(check(
            "east",
            Role::Peer,
            &Request::Get {
                key: key("fed/node_2/r")
            }
        ));
        let root = Request::KeysWithPrefix {
            prefix: KeyPrefix::root(),
        };
        assert!(!check("east", Role::Peer, &root));
        let bulk = Request::DeletePrefix {
            prefix: KeyPrefix::new("fed").unwrap(),
        };
        assert!(!check("east", Role::Peer, &bulk));
        // Without a hybrid topology a peer owns no node.
        assert!(matches!(
            authorize("east", Role::Peer, &put("fed/node_1/round_3"), None),
            Err(Error::PermissionDenied(_))
        ));
    }

    #[test]
    fn clients_by_role() {
        let w = put("fed/node_2/round_3");
        let root = Request::KeysWithPrefix {
            prefix: KeyPrefix::root(),
        };
        let under = Request::KeysWithPrefix {
            prefix: KeyPrefix::new("fed").unwrap(),
        };
        let rounds = Request::DeleteRoundsBefore {
            fed_id: "fed".into(),
            round: 3,
        };
        assert!(check("c", Role::ReadWrite, &w));
        assert!(check("c", Role::ReadWrite, &under));
        assert!(!check("c", Role::ReadWrite, &root));
        assert!(!check("c", Role::ReadWrite, &rounds));
        assert!(!check("c", Role::ReadWrite, &deliver(0, None)));
        assert!(!check("c", Role::ReadOnly, &w));
        assert!(!check(
            "c",
            Role::ReadOnly,
            &Request::Release { key: key("a/b") }
        ));
        assert!(!check("c", Role::ReadOnly, &Request::Sweep));
        assert!(check(
            "c",
            Role::ReadOnly,
            &Request::Head { key: key("a/b") }
        ));
        assert!(check("c", Role::ReadOnly, &under));
        for r in [&w, &root, &rounds, &deliver(2, Some("x/node_2/y"))] {
            assert!(check("c", Role::Admin, r));
        }
    }
}
