//! The graph and its algorithms.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use serde::{Deserialize, Serialize};

/// The relation graph: one node per entity ref (existing or not), one edge per relation row.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    graph: DiGraph<String, String>,
    nodes: HashMap<String, NodeIndex>,
}

/// An entity reached by a traversal, with its distance from the start.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Reached {
    /// The entity.
    pub entity_ref: String,
    /// Hops from the start.
    pub depth: usize,
}

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hop {
    /// Where the step starts.
    pub from: String,
    /// The relation followed.
    pub relation_type: String,
    /// Where it ends.
    pub to: String,
}

impl Graph {
    /// Builds the graph from `(source, type, target)` rows.
    pub fn from_edges(edges: impl IntoIterator<Item = (String, String, String)>) -> Self {
        let mut graph = Graph::default();
        let mut seen: HashSet<(NodeIndex, NodeIndex, String)> = HashSet::new();
        for (source, relation_type, target) in edges {
            let a = graph.node(&source);
            let b = graph.node(&target);
            if seen.insert((a, b, relation_type.clone())) {
                graph.graph.add_edge(a, b, relation_type);
            }
        }
        graph
    }

    fn node(&mut self, entity_ref: &str) -> NodeIndex {
        if let Some(index) = self.nodes.get(entity_ref) {
            return *index;
        }
        let index = self.graph.add_node(entity_ref.to_owned());
        self.nodes.insert(entity_ref.to_owned(), index);
        index
    }

    /// Number of nodes and edges.
    pub fn size(&self) -> (usize, usize) {
        (self.graph.node_count(), self.graph.edge_count())
    }

    /// Everything reachable from `root` along edges of the given types, breadth first, up to
    /// `max_depth` hops; the root itself is not included.
    pub fn reach(&self, root: &str, types: &[&str], max_depth: usize) -> Vec<Reached> {
        let Some(&start) = self.nodes.get(root) else {
            return Vec::new();
        };
        let mut depth_of: HashMap<NodeIndex, usize> = HashMap::from([(start, 0)]);
        let mut queue = VecDeque::from([start]);
        let mut out = Vec::new();
        while let Some(node) = queue.pop_front() {
            let depth = depth_of[&node];
            if depth >= max_depth {
                continue;
            }
            for edge in self.graph.edges(node) {
                if !types.contains(&edge.weight().as_str()) {
                    continue;
                }
                let next = edge.target();
                if depth_of.contains_key(&next) {
                    continue;
                }
                depth_of.insert(next, depth + 1);
                out.push(Reached {
                    entity_ref: self.graph[next].clone(),
                    depth: depth + 1,
                });
                queue.push_back(next);
            }
        }
        out.sort();
        out
    }

    /// What `root` depends on, transitively (`dependsOn`).
    pub fn dependencies(&self, root: &str, max_depth: usize) -> Vec<Reached> {
        self.reach(root, &["dependsOn"], max_depth)
    }

    /// What depends on `root`, transitively (`dependencyOf`, the inverse rows).
    pub fn dependents(&self, root: &str, max_depth: usize) -> Vec<Reached> {
        self.reach(root, &["dependencyOf"], max_depth)
    }

    /// What a change to `root` may affect: its dependents, the APIs it provides and everything
    /// consuming them, and the components of a system or the systems of a domain, transitively.
    pub fn impact(&self, root: &str, max_depth: usize) -> Vec<Reached> {
        self.reach(
            root,
            &["dependencyOf", "providesApi", "apiConsumedBy", "hasPart"],
            max_depth,
        )
    }

    /// Everything owned by `group` or any group below it (`parentOf` down the hierarchy,
    /// `ownerOf` to what each owns), with the owning group's depth in the hierarchy.
    pub fn owned_rollup(&self, group: &str, max_depth: usize) -> Vec<Reached> {
        let mut groups = vec![Reached {
            entity_ref: group.to_owned(),
            depth: 0,
        }];
        groups.extend(self.reach(group, &["parentOf"], max_depth));
        let mut owned: BTreeMap<String, usize> = BTreeMap::new();
        for g in &groups {
            for entity in self.reach(&g.entity_ref, &["ownerOf"], 1) {
                owned.entry(entity.entity_ref).or_insert(g.depth);
            }
        }
        owned
            .into_iter()
            .map(|(entity_ref, depth)| Reached { entity_ref, depth })
            .collect()
    }

    /// The shortest path from `from` to `to` along any relation, or along `types` when given.
    pub fn path(&self, from: &str, to: &str, types: Option<&[&str]>, max_depth: usize) -> Option<Vec<Hop>> {
        let (&start, &goal) = (self.nodes.get(from)?, self.nodes.get(to)?);
        if start == goal {
            return Some(Vec::new());
        }
        let mut previous: HashMap<NodeIndex, (NodeIndex, String)> = HashMap::new();
        let mut depth: HashMap<NodeIndex, usize> = HashMap::from([(start, 0)]);
        let mut queue = VecDeque::from([start]);
        while let Some(node) = queue.pop_front() {
            if depth[&node] >= max_depth {
                continue;
            }
            // Deterministic among equally short paths: visit edges in (type, target) order.
            let mut edges: Vec<_> = self.graph.edges(node).collect();
            edges.sort_by(|a, b| (a.weight(), &self.graph[a.target()]).cmp(&(b.weight(), &self.graph[b.target()])));
            for edge in edges {
                if types.is_some_and(|t| !t.contains(&edge.weight().as_str())) {
                    continue;
                }
                let next = edge.target();
                if depth.contains_key(&next) {
                    continue;
                }
                depth.insert(next, depth[&node] + 1);
                previous.insert(next, (node, edge.weight().clone()));
                if next == goal {
                    let mut hops = Vec::new();
                    let mut at = goal;
                    while let Some((before, relation_type)) = previous.get(&at) {
                        hops.push(Hop {
                            from: self.graph[*before].clone(),
                            relation_type: relation_type.clone(),
                            to: self.graph[at].clone(),
                        });
                        at = *before;
                    }
                    hops.reverse();
                    return Some(hops);
                }
                queue.push_back(next);
            }
        }
        None
    }

    /// Dependency cycles (`dependsOn`): each is a sorted list of the entities in it.
    pub fn cycles(&self) -> Vec<Vec<String>> {
        let mut dependencies: DiGraph<String, ()> = DiGraph::new();
        let mut index: HashMap<NodeIndex, NodeIndex> = HashMap::new();
        for node in self.graph.node_indices() {
            index.insert(node, dependencies.add_node(self.graph[node].clone()));
        }
        for edge in self.graph.edge_references() {
            if edge.weight() == "dependsOn" {
                dependencies.add_edge(index[&edge.source()], index[&edge.target()], ());
            }
        }
        let mut out: Vec<Vec<String>> = tarjan_scc(&dependencies)
            .into_iter()
            .filter(|component| component.len() > 1 || dependencies.contains_edge(component[0], component[0]))
            .map(|component| {
                let mut refs: Vec<String> = component.into_iter().map(|n| dependencies[n].clone()).collect();
                refs.sort();
                refs
            })
            .collect();
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge(s: &str, t: &str, d: &str) -> (String, String, String) {
        (s.into(), t.into(), d.into())
    }

    fn sample() -> Graph {
        Graph::from_edges([
            edge("component:default/web", "dependsOn", "component:default/api"),
            edge("component:default/api", "dependencyOf", "component:default/web"),
            edge("component:default/api", "dependsOn", "resource:default/db"),
            edge("resource:default/db", "dependencyOf", "component:default/api"),
            edge("resource:default/db", "dependsOn", "component:default/web"),
            edge("component:default/web", "dependencyOf", "resource:default/db"),
            edge("group:default/org", "parentOf", "group:default/team"),
            edge("group:default/team", "childOf", "group:default/org"),
            edge("group:default/team", "ownerOf", "component:default/api"),
            edge("group:default/org", "ownerOf", "component:default/web"),
        ])
    }

    #[test]
    fn traversals() {
        let g = sample();
        let names = |r: Vec<Reached>| r.into_iter().map(|r| (r.entity_ref, r.depth)).collect::<Vec<_>>();
        assert_eq!(
            names(g.dependencies("component:default/web", 1)),
            [("component:default/api".into(), 1)]
        );
        assert_eq!(
            names(g.dependencies("component:default/web", 5)),
            [("component:default/api".into(), 1), ("resource:default/db".into(), 2)]
        );
        assert_eq!(
            names(g.dependents("resource:default/db", 5)),
            [("component:default/api".into(), 1), ("component:default/web".into(), 2)]
        );
        assert_eq!(
            names(g.owned_rollup("group:default/org", 5)),
            [("component:default/api".into(), 1), ("component:default/web".into(), 0)]
        );
        let path = g.path("group:default/team", "resource:default/db", None, 10).unwrap();
        assert_eq!(path.len(), 2);
        assert_eq!(
            path[1],
            Hop {
                from: "component:default/api".into(),
                relation_type: "dependsOn".into(),
                to: "resource:default/db".into()
            }
        );
        assert_eq!(
            g.cycles(),
            [vec![
                "component:default/api".to_owned(),
                "component:default/web".into(),
                "resource:default/db".into()
            ]]
        );
        assert!(
            g.path("resource:default/db", "group:default/org", Some(&["dependsOn"]), 10)
                .is_none()
        );
    }
}
