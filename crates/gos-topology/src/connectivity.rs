//! Vertex connectivity of a directed graph (Even's algorithm over unit-capacity max flows).

use crate::node::NodeId;

/// The vertex connectivity of the directed graph whose sorted out-neighbour lists are `out`.
///
/// `n - 1` for a complete graph, 0 when some node cannot reach another. Even's argument: a
/// minimum separator has `κ` nodes, so one of the first `κ + 1` nodes lies outside it, and
/// the smallest local connectivity from or to that node (over non-adjacent pairs) is `κ`.
pub(crate) fn vertex_connectivity(out: &[Vec<NodeId>]) -> usize {
    let n = out.len();
    if n <= 1 {
        return 0;
    }
    let adjacent = |a: usize, b: usize| out[a].binary_search(&node(b)).is_ok();
    let mut network = FlowNetwork::split(out);
    let mut best = n - 1;
    let mut i = 0;
    while i < n && i <= best {
        for j in 0..n {
            if j == i {
                continue;
            }
            if !adjacent(i, j) {
                best = best.min(network.local_connectivity(i, j, best));
            }
            if !adjacent(j, i) {
                best = best.min(network.local_connectivity(j, i, best));
            }
            if best == 0 {
                return 0;
            }
        }
        i += 1;
    }
    best
}

fn node(i: usize) -> NodeId {
    NodeId(u32::try_from(i).unwrap_or(u32::MAX))
}

/// Each node `v` split into `v_in = 2v` and `v_out = 2v + 1` joined by a unit arc, so that
/// arc-disjoint paths are vertex-disjoint.
struct FlowNetwork {
    /// Arc heads; arc `a ^ 1` is the reverse of arc `a`.
    head: Vec<usize>,
    capacity: Vec<i32>,
    flow: Vec<i32>,
    /// Arcs leaving each split vertex.
    arcs: Vec<Vec<usize>>,
}

impl FlowNetwork {
    fn split(out: &[Vec<NodeId>]) -> Self {
        let n = out.len();
        let mut net = FlowNetwork {
            head: Vec::new(),
            capacity: Vec::new(),
            flow: Vec::new(),
            arcs: vec![Vec::new(); 2 * n],
        };
        for v in 0..n {
            net.add_arc(2 * v, 2 * v + 1);
        }
        for (u, targets) in out.iter().enumerate() {
            for t in targets {
                net.add_arc(2 * u + 1, 2 * t.index());
            }
        }
        net
    }

    fn add_arc(&mut self, from: usize, to: usize) {
        self.arcs[from].push(self.head.len());
        self.head.push(to);
        self.capacity.push(1);
        self.flow.push(0);
        self.arcs[to].push(self.head.len());
        self.head.push(from);
        self.capacity.push(0);
        self.flow.push(0);
    }

    /// Internally vertex-disjoint paths `s -> t`, counted up to `limit`.
    fn local_connectivity(&mut self, s: usize, t: usize, limit: usize) -> usize {
        self.flow.iter_mut().for_each(|f| *f = 0);
        let (source, sink) = (2 * s + 1, 2 * t);
        let mut found = 0;
        let mut parent_arc = vec![usize::MAX; self.arcs.len()];
        while found < limit {
            parent_arc.iter_mut().for_each(|p| *p = usize::MAX);
            let mut queue = std::collections::VecDeque::from([source]);
            let mut reached = false;
            'bfs: while let Some(v) = queue.pop_front() {
                for &arc in &self.arcs[v] {
                    let w = self.head[arc];
                    if w != source
                        && parent_arc[w] == usize::MAX
                        && self.flow[arc] < self.capacity[arc]
                    {
                        parent_arc[w] = arc;
                        if w == sink {
                            reached = true;
                            break 'bfs;
                        }
                        queue.push_back(w);
                    }
                }
            }
            if !reached {
                break;
            }
            let mut v = sink;
            while v != source {
                let arc = parent_arc[v];
                self.flow[arc] += 1;
                self.flow[arc ^ 1] -= 1;
                v = self.head[arc ^ 1];
            }
            found += 1;
        }
        found
    }
}
