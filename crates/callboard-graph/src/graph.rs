//! The graph and its algorithms.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use callboard_model::{EntityRef, Relation, RelationType};
use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use serde::{Deserialize, Serialize};

/// The relation graph: one node per entity ref (existing or not), one edge per relation.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    graph: DiGraph<EntityRef, RelationType>,
    nodes: HashMap<EntityRef, NodeIndex>,
}

/// An entity reached by a traversal, with its distance from the start.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Reached {
    /// The entity.
    pub entity_ref: EntityRef,
    /// Hops from the start.
    pub depth: usize,
}

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hop {
    /// Where the step starts.
    pub from: EntityRef,
    /// The relation followed.
    pub relation_type: RelationType,
    /// Where it ends.
    pub to: EntityRef,
}

impl Graph {
    /// Builds the graph from relations.
    pub fn from_relations(relations: impl IntoIterator<Item = Relation>) -> Self {
        let mut graph = Graph::default();
        let mut seen: HashSet<(NodeIndex, NodeIndex, RelationType)> = HashSet::new();
        for Relation { kind, source, target } in relations {
            let a = graph.node(source);
            let b = graph.node(target);
            if seen.insert((a, b, kind.clone())) {
                graph.graph.add_edge(a, b, kind);
            }
        }
        graph
    }

    fn node(&mut self, entity_ref: EntityRef) -> NodeIndex {
        if let Some(index) = self.nodes.get(&entity_ref) {
            return *index;
        }
        let index = self.graph.add_node(entity_ref.clone());
        self.nodes.insert(entity_ref, index);
        index
    }

    /// Number of nodes and edges.
    pub fn size(&self) -> (usize, usize) {
        (self.graph.node_count(), self.graph.edge_count())
    }

    /// Everything reachable from `root` along edges of the given types, breadth first, up to
    /// `max_depth` hops; the root itself is not included.
    pub fn reach(&self, root: &EntityRef, types: &[RelationType], max_depth: usize) -> Vec<Reached> {
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
                if !types.contains(edge.weight()) {
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
    pub fn dependencies(&self, root: &EntityRef, max_depth: usize) -> Vec<Reached> {
        self.reach(root, &[RelationType::DependsOn], max_depth)
    }

    /// What depends on `root`, transitively (`dependencyOf`, the inverse rows).
    pub fn dependents(&self, root: &EntityRef, max_depth: usize) -> Vec<Reached> {
        self.reach(root, &[RelationType::DependencyOf], max_depth)
    }

    /// What a change to `root` may affect: its dependents, the APIs it provides and everything
    /// consuming them, and the components of a system or the systems of a domain, transitively.
    pub fn impact(&self, root: &EntityRef, max_depth: usize) -> Vec<Reached> {
        self.reach(
            root,
            &[
                RelationType::DependencyOf,
                RelationType::ProvidesApi,
                RelationType::ApiConsumedBy,
                RelationType::HasPart,
            ],
            max_depth,
        )
    }

    /// Everything owned by `group` or any group below it (`parentOf` down the hierarchy,
    /// `ownerOf` to what each owns), with the owning group's depth in the hierarchy.
    pub fn owned_rollup(&self, group: &EntityRef, max_depth: usize) -> Vec<Reached> {
        let mut groups = vec![Reached {
            entity_ref: group.clone(),
            depth: 0,
        }];
        groups.extend(self.reach(group, &[RelationType::ParentOf], max_depth));
        let mut owned: BTreeMap<EntityRef, usize> = BTreeMap::new();
        for g in &groups {
            for entity in self.reach(&g.entity_ref, &[RelationType::OwnerOf], 1) {
                owned.entry(entity.entity_ref).or_insert(g.depth);
            }
        }
        owned
            .into_iter()
            .map(|(entity_ref, depth)| Reached { entity_ref, depth })
            .collect()
    }

    /// The shortest path from `from` to `to` along any relation, or along `types` when given.
    pub fn path(
        &self,
        from: &EntityRef,
        to: &EntityRef,
        types: Option<&[RelationType]>,
        max_depth: usize,
    ) -> Option<Vec<Hop>> {
        let (&start, &goal) = (self.nodes.get(from)?, self.nodes.get(to)?);
        if start == goal {
            return Some(Vec::new());
        }
        let mut previous: HashMap<NodeIndex, (NodeIndex, RelationType)> = HashMap::new();
        let mut depth: HashMap<NodeIndex, usize> = HashMap::from([(start, 0)]);
        let mut queue = VecDeque::from([start]);
        while let Some(node) = queue.pop_front() {
            if depth[&node] >= max_depth {
                continue;
            }
            // Deterministic among equally short paths: visit edges in (type, target) order.
            let mut edges: Vec<_> = self.graph.edges(node).collect();
            edges.sort_by(|a, b| {
                (a.weight().as_str(), &self.graph[a.target()]).cmp(&(b.weight().as_str(), &self.graph[b.target()]))
            });
            for edge in edges {
                if types.is_some_and(|t| !t.contains(edge.weight())) {
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
    pub fn cycles(&self) -> Vec<Vec<EntityRef>> {
        let mut dependencies: DiGraph<EntityRef, ()> = DiGraph::new();
        let mut index: HashMap<NodeIndex, NodeIndex> = HashMap::new();
        for node in self.graph.node_indices() {
            index.insert(node, dependencies.add_node(self.graph[node].clone()));
        }
        for edge in self.graph.edge_references() {
            if *edge.weight() == RelationType::DependsOn {
                dependencies.add_edge(index[&edge.source()], index[&edge.target()], ());
            }
        }
        let mut out: Vec<Vec<EntityRef>> = tarjan_scc(&dependencies)
            .into_iter()
            .filter(|component| component.len() > 1 || dependencies.contains_edge(component[0], component[0]))
            .map(|component| {
                let mut refs: Vec<EntityRef> = component.into_iter().map(|n| dependencies[n].clone()).collect();
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

    fn r(text: &str) -> EntityRef {
        text.parse().expect("a ref")
    }

    fn edge(s: &str, t: &str, d: &str) -> Relation {
        Relation {
            kind: t.parse().unwrap_or_else(|never| match never {}),
            source: r(s),
            target: r(d),
        }
    }

    fn sample() -> Graph {
        Graph::from_relations([
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
        let names = |reached: Vec<Reached>| {
            reached
                .into_iter()
                .map(|x| (x.entity_ref.into_string(), x.depth))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(g.dependencies(&r("component:default/web"), 1)),
            [("component:default/api".into(), 1)]
        );
        assert_eq!(
            names(g.dependencies(&r("component:default/web"), 5)),
            [("component:default/api".into(), 1), ("resource:default/db".into(), 2)]
        );
        assert_eq!(
            names(g.dependents(&r("resource:default/db"), 5)),
            [("component:default/api".into(), 1), ("component:default/web".into(), 2)]
        );
        assert_eq!(
            names(g.owned_rollup(&r("group:default/org"), 5)),
            [("component:default/api".into(), 1), ("component:default/web".into(), 0)]
        );
        let path = g
            .path(&r("group:default/team"), &r("resource:default/db"), None, 10)
            .unwrap();
        assert_eq!(path.len(), 2);
        assert_eq!(
            path[1],
            Hop {
                from: r("component:default/api"),
                relation_type: RelationType::DependsOn,
                to: r("resource:default/db")
            }
        );
        assert_eq!(
            g.cycles(),
            [vec![
                r("component:default/api"),
                r("component:default/web"),
                r("resource:default/db")
            ]]
        );
        assert!(
            g.path(
                &r("resource:default/db"),
                &r("group:default/org"),
                Some(&[RelationType::DependsOn]),
                10
            )
            .is_none()
        );
    }
}
