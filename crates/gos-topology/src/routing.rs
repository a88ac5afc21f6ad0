//! The routing core: who may receive what. Plain deterministic code, no runtime.
//!
//! [`TopologyManager`](crate::TopologyManager) calls these before touching any mailbox, so a
//! refused publish delivers nothing.

use serde::{Deserialize, Serialize};

use crate::error::TopologyError;
use crate::graph::Topology;
use crate::message::Message;
use crate::node::NodeId;

/// The default body limit: 64 KiB. Weights go through the store; keys through the bus.
pub const DEFAULT_MAX_BODY_SIZE: usize = 64 * 1024;

/// Who a publish is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Targets {
    /// Every out-neighbour of the sender in the current topology.
    Neighbours,
    /// These nodes only; each must be an out-neighbour of the sender.
    Only(Vec<NodeId>),
}

impl Targets {
    /// One target.
    pub fn one(node: NodeId) -> Self {
        Targets::Only(vec![node])
    }
}

/// The nodes a message from `sender` to `targets` goes to, sorted and without duplicates.
///
/// All or nothing: if the sender or any listed target is not in the graph
/// ([`TopologyError::UnknownNode`]) or a listed target is not an out-neighbour of the sender
/// ([`TopologyError::NotNeighbour`]), the whole route is refused. The result is always a
/// subset of `topology.neighbours(sender)`.
pub fn route(
    topology: &Topology,
    sender: NodeId,
    targets: &Targets,
) -> Result<Vec<NodeId>, TopologyError> {
    if !topology.contains(sender) {
        return Err(TopologyError::UnknownNode(sender));
    }
    match targets {
        Targets::Neighbours => Ok(topology.neighbours(sender).to_vec()),
        Targets::Only(list) => {
            let mut list = list.clone();
            list.sort_unstable();
            list.dedup();
            for &to in &list {
                if !topology.contains(to) {
                    return Err(TopologyError::UnknownNode(to));
                }
                if !topology.may_send(sender, to) {
                    return Err(TopologyError::NotNeighbour { from: sender, to });
                }
            }
            Ok(list)
        }
    }
}

/// Refuses a body over `max` bytes ([`TopologyError::BodyTooLarge`]).
pub fn check_body(msg: &Message, max: usize) -> Result<(), TopologyError> {
    if msg.body.len() > max {
        return Err(TopologyError::BodyTooLarge {
            size: msg.body.len(),
            max,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn non_neighbours_and_unknown_nodes_are_refused() {
        let ring = Topology::ring(5).unwrap();
        assert_eq!(
            route(&ring, NodeId(0), &Targets::Neighbours).unwrap(),
            vec![NodeId(1), NodeId(4)]
        );
        assert!(matches!(
            route(&ring, NodeId(0), &Targets::Only(vec![NodeId(1), NodeId(2)])),
            Err(TopologyError::NotNeighbour {
                from: NodeId(0),
                to: NodeId(2)
            })
        ));
        assert!(matches!(
            route(&ring, NodeId(9), &Targets::Neighbours),
            Err(TopologyError::UnknownNode(NodeId(9)))
        ));
        assert!(matches!(
            route(&ring, NodeId(0), &Targets::one(NodeId(7))),
            Err(TopologyError::UnknownNode(NodeId(7)))
        ));
        assert!(matches!(
            route(&ring, NodeId(0), &Targets::one(NodeId(0))),
            Err(TopologyError::NotNeighbour { .. })
        ));
        assert_eq!(
            route(
                &ring,
                NodeId(0),
                &Targets::Only(vec![NodeId(4), NodeId(1), NodeId(4)])
            )
            .unwrap(),
            vec![NodeId(1), NodeId(4)]
        );
    }

    #[test]
    fn bodies_over_the_limit_are_refused() {
        let msg = Message::control("f", NodeId(0), 0).with_body(vec![0u8; 11]);
        assert!(check_body(&msg, 11).is_ok());
        assert!(matches!(
            check_body(&msg, 10),
            Err(TopologyError::BodyTooLarge { size: 11, max: 10 })
        ));
    }

    fn graph_and_targets() -> impl Strategy<Value = (Vec<Vec<u8>>, u32, Vec<u32>)> {
        (1usize..10).prop_flat_map(|n| {
            let matrix = proptest::collection::vec(proptest::collection::vec(0u8..2, n), n)
                .prop_map(|mut m| {
                    for (i, row) in m.iter_mut().enumerate() {
                        row[i] = 0;
                    }
                    m
                });
            let n32 = u32::try_from(n).unwrap();
            (
                matrix,
                0..n32 + 1,
                proptest::collection::vec(0..n32 + 1, 0..6),
            )
        })
    }

    proptest! {
        #[test]
        fn routing_never_reaches_a_non_neighbour((matrix, sender, targets) in graph_and_targets()) {
            let topology = Topology::custom(&matrix).unwrap();
            let sender = NodeId(sender);
            let list: Vec<NodeId> = targets.into_iter().map(NodeId).collect();
            for targets in [Targets::Neighbours, Targets::Only(list.clone())] {
                match route(&topology, sender, &targets) {
                    Ok(route) => {
                        for to in &route {
                            prop_assert!(topology.may_send(sender, *to));
                            prop_assert_eq!(matrix[sender.index()][to.index()], 1);
                        }
                        if let Targets::Only(_) = targets {
                            prop_assert!(list.iter().all(|t| route.contains(t)));
                        }
                    }
                    Err(TopologyError::UnknownNode(node)) => prop_assert!(!topology.contains(node)),
                    Err(TopologyError::NotNeighbour { from, to }) => {
                        prop_assert_eq!(from, sender);
                        prop_assert!(list.contains(&to) && !topology.may_send(from, to));
                    }
                    Err(other) => prop_assert!(false, "unexpected {other}"),
                }
            }
        }
    }
}
