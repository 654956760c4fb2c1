//! HNSW in Rust, with faiss's conventions so LEANN's fork searches the graph as its own: levels
//! drawn from faiss's default probabilities, `2M` neighbours at level 0 and `M` above, distances
//! `-a·b` (inner product, also used for cosine on normalised vectors) or `‖a−b‖²`, and
//! neighbours chosen with the HNSW heuristic (faiss `shrink_neighbor_list`): a candidate is kept
//! only if it is closer to the base than to every neighbour already kept. A plain k-NN graph is not
//! enough: on clustered data it falls apart into islands that a search from the entry point never
//! reaches.
//!
//! The build is single-threaded and deterministic: the same vectors, parameters and seed give the
//! same graph, byte for byte.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::convert::Infallible;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::index_file::default_probas;

/// How two vectors are compared; smaller is closer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Space {
    /// `-a·b`.
    InnerProduct,
    /// `‖a−b‖²`.
    L2,
}

impl Space {
    pub fn distance(self, a: &[f32], b: &[f32]) -> f32 {
        match self {
            Space::InnerProduct => -dot(a, b),
            Space::L2 => l2_squared(a, b),
        }
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight independent sums let the compiler vectorise the loop.
    let mut sums = [0.0f32; 8];
    let (chunks_a, rest_a) = a.split_at(a.len() - a.len() % 8);
    let (chunks_b, rest_b) = b.split_at(chunks_a.len());
    for (x, y) in chunks_a.chunks_exact(8).zip(chunks_b.chunks_exact(8)) {
        for i in 0..8 {
            sums[i] += x[i] * y[i];
        }
    }
    let mut total: f32 = sums.iter().sum();
    for (x, y) in rest_a.iter().zip(rest_b) {
        total += x * y;
    }
    total
}

fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    let mut sums = [0.0f32; 8];
    let (chunks_a, rest_a) = a.split_at(a.len() - a.len() % 8);
    let (chunks_b, rest_b) = b.split_at(chunks_a.len());
    for (x, y) in chunks_a.chunks_exact(8).zip(chunks_b.chunks_exact(8)) {
        for i in 0..8 {
            let d = x[i] - y[i];
            sums[i] += d * d;
        }
    }
    let mut total: f32 = sums.iter().sum();
    for (x, y) in rest_a.iter().zip(rest_b) {
        let d = x - y;
        total += d * d;
    }
    total
}

/// Neighbour lists by node and level.
pub(crate) trait Adjacency {
    /// The neighbours of `node` at `level` (empty above the node's top level).
    fn neighbors(&self, node: u32, level: usize) -> &[u32];
}

/// Construction parameters (LEANN's defaults: `M` = 32, `efConstruction` = 200).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BuildParams {
    pub m: usize,
    pub ef_construction: usize,
    pub seed: u64,
}

/// A built graph: `links[node][level]`, the entry point and the top level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Built {
    pub links: Vec<Vec<Vec<u32>>>,
    pub entry_point: Option<u32>,
    pub max_level: i32,
}

struct Links<'a>(&'a [Vec<Vec<u32>>]);

impl Adjacency for Links<'_> {
    fn neighbors(&self, node: u32, level: usize) -> &[u32] {
        self.0[node as usize].get(level).map_or(&[], Vec::as_slice)
    }
}

/// A (distance, node) pair ordered by distance, then node, so ties break the same way every time.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Scored(f32, u32);

impl Eq for Scored {}

impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0).then(self.1.cmp(&other.1))
    }
}

/// Marks visited nodes without clearing a whole array per search.
struct Visited {
    marks: Vec<u32>,
    generation: u32,
}

impl Visited {
    fn new(n: usize) -> Visited {
        Visited {
            marks: vec![0; n],
            generation: 0,
        }
    }

    fn reset(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.marks.fill(0);
            self.generation = 1;
        }
    }

    /// Marks `node`; returns whether it was new.
    fn insert(&mut self, node: u32) -> bool {
        let mark = &mut self.marks[node as usize];
        if *mark == self.generation {
            false
        } else {
            *mark = self.generation;
            true
        }
    }
}

/// How a search learns the distances from a query to the nodes it visits: a neighbour list at a
/// time, so that vectors recomputed from passages are embedded in batches, as LEANN's embedding
/// server does.
pub(crate) trait Distances {
    type Error;
    /// Replaces `out` with the distances from `query` to each of `nodes`, in order.
    fn distances(&self, query: &[f32], nodes: &[u32], out: &mut Vec<f32>) -> Result<(), Self::Error>;
}

/// Vectors in memory (row `i` is node `i`'s) and how to compare them.
pub(crate) struct Points<'a> {
    pub vectors: &'a [f32],
    pub dimension: usize,
    pub space: Space,
}

impl Points<'_> {
    fn row(&self, node: u32) -> &[f32] {
        let start = node as usize * self.dimension;
        &self.vectors[start..start + self.dimension]
    }

    fn to(&self, query: &[f32], node: u32) -> f32 {
        self.space.distance(query, self.row(node))
    }

    fn between(&self, a: u32, b: u32) -> f32 {
        self.space.distance(self.row(a), self.row(b))
    }
}

impl Distances for Points<'_> {
    type Error = Infallible;

    fn distances(&self, query: &[f32], nodes: &[u32], out: &mut Vec<f32>) -> Result<(), Infallible> {
        out.clear();
        out.extend(nodes.iter().map(|node| self.to(query, *node)));
        Ok(())
    }
}

/// Moves greedily towards `query` at `level` until no neighbour is closer.
fn greedy<D: Distances>(
    graph: &impl Adjacency,
    points: &D,
    query: &[f32],
    mut best: Scored,
    level: usize,
) -> Result<Scored, D::Error> {
    let mut distances = Vec::new();
    loop {
        let neighbors = graph.neighbors(best.1, level);
        points.distances(query, neighbors, &mut distances)?;
        let mut improved = false;
        for (&neighbor, &distance) in neighbors.iter().zip(&distances) {
            if Scored(distance, neighbor) < best {
                best = Scored(distance, neighbor);
                improved = true;
            }
        }
        if !improved {
            return Ok(best);
        }
    }
}

/// The `ef` nodes closest to `query` reachable at `level` from `entry`, closest first.
fn search_layer<D: Distances>(
    graph: &impl Adjacency,
    points: &D,
    visited: &mut Visited,
    query: &[f32],
    entry: Scored,
    ef: usize,
    level: usize,
) -> Result<Vec<Scored>, D::Error> {
    visited.reset();
    visited.insert(entry.1);
    let mut candidates = BinaryHeap::from([Reverse(entry)]);
    let mut results = BinaryHeap::from([entry]);
    let (mut fresh, mut distances) = (Vec::new(), Vec::new());
    while let Some(Reverse(current)) = candidates.pop() {
        if results.len() >= ef && results.peek().is_some_and(|worst| current > *worst) {
            break;
        }
        fresh.clear();
        fresh.extend(
            graph
                .neighbors(current.1, level)
                .iter()
                .copied()
                .filter(|neighbor| visited.insert(*neighbor)),
        );
        points.distances(query, &fresh, &mut distances)?;
        for (&neighbor, &distance) in fresh.iter().zip(&distances) {
            let scored = Scored(distance, neighbor);
            if results.len() < ef || results.peek().is_some_and(|worst| scored < *worst) {
                candidates.push(Reverse(scored));
                results.push(scored);
                if results.len() > ef {
                    results.pop();
                }
            }
        }
    }
    Ok(results.into_sorted_vec())
}

/// faiss `shrink_neighbor_list`: from candidates sorted closest first, keeps each one that is
/// closer to the base than to every one already kept, up to `max` of them.
fn select_heuristic(points: &Points<'_>, candidates: &[Scored], max: usize) -> Vec<u32> {
    let mut kept: Vec<Scored> = Vec::with_capacity(max);
    for candidate in candidates {
        if kept.len() >= max {
            break;
        }
        let diverse = kept
            .iter()
            .all(|other| points.between(candidate.1, other.1) >= candidate.0);
        if diverse {
            kept.push(*candidate);
        }
    }
    kept.iter().map(|s| s.1).collect()
}

/// faiss `random_level`: draws a level from the per-level probabilities.
fn random_level(assign_probas: &[f64], rng: &mut ChaCha8Rng) -> usize {
    let mut f: f64 = rng.random();
    for (level, p) in assign_probas.iter().enumerate() {
        if f < *p {
            return level;
        }
        f -= p;
    }
    assign_probas.len().saturating_sub(1)
}

/// Builds the graph over `vectors` (row `i` is node `i`).
pub(crate) fn build(vectors: &[f32], dimension: usize, space: Space, params: BuildParams) -> Built {
    extend(
        vectors,
        dimension,
        space,
        params,
        Built {
            links: Vec::new(),
            entry_point: None,
            max_level: -1,
        },
    )
}

/// The level of node `node`: drawn at a fixed place of the seeded stream, so a graph extended
/// load by load draws the same levels as one built at once.
fn level_of(base: &ChaCha8Rng, assign_probas: &[f64], node: usize) -> usize {
    let mut rng = base.clone();
    // One f64 draw takes one u64, two 32-bit words of the stream.
    rng.set_word_pos(2 * node as u128);
    random_level(assign_probas, &mut rng)
}

/// Inserts nodes `graph.links.len() ..` of `vectors` into `graph` (built with the same
/// parameters): how an append grows an index without rebuilding what it has.
pub(crate) fn extend(vectors: &[f32], dimension: usize, space: Space, params: BuildParams, graph: Built) -> Built {
    let n = vectors.len().checked_div(dimension).unwrap_or(0);
    let points = Points {
        vectors,
        dimension,
        space,
    };
    let (assign_probas, _) = default_probas(params.m);
    let base = ChaCha8Rng::seed_from_u64(params.seed);
    let first_new = graph.links.len();
    let mut links = graph.links;
    let mut top: Vec<usize> = links.iter().map(|l| l.len().saturating_sub(1)).collect();
    for node in first_new..n {
        let level = level_of(&base, &assign_probas, node);
        top.push(level);
        links.push(vec![Vec::new(); level + 1]);
    }
    let max_degree = |level: usize| if level == 0 { 2 * params.m } else { params.m };
    // Like faiss, insert the nodes of the highest levels first (stable within a level).
    let mut order: Vec<u32> = (first_new as u32..n as u32).collect();
    order.sort_by_key(|node| Reverse(top[*node as usize]));
    let mut visited = Visited::new(n);
    let mut entry: Option<u32> = graph.entry_point;
    let mut max_level = graph.max_level;
    for node in order {
        let level = top[node as usize];
        let Some(entry_point) = entry else {
            entry = Some(node);
            max_level = level as i32;
            continue;
        };
        let query = points.row(node).to_vec();
        let mut nearest = Scored(points.to(&query, entry_point), entry_point);
        for upper in (level + 1..=max_level as usize).rev() {
            let Ok(closer) = greedy(&Links(&links), &points, &query, nearest, upper);
            nearest = closer;
        }
        for current in (0..=level.min(max_level as usize)).rev() {
            let Ok(found) = search_layer(
                &Links(&links),
                &points,
                &mut visited,
                &query,
                nearest,
                params.ef_construction.max(1),
                current,
            );
            let selected = select_heuristic(&points, &found, max_degree(current));
            for &neighbor in &selected {
                add_link(&points, &mut links, neighbor, node, current, max_degree(current));
            }
            links[node as usize][current] = selected;
            nearest = found[0];
        }
        if level as i32 > max_level {
            entry = Some(node);
            max_level = level as i32;
        }
    }
    Built {
        links,
        entry_point: entry,
        max_level,
    }
}

/// Adds `to` to the list of `from` at `level`, re-selecting with the heuristic when it is full.
fn add_link(points: &Points<'_>, links: &mut [Vec<Vec<u32>>], from: u32, to: u32, level: usize, max: usize) {
    let list = &mut links[from as usize][level];
    if list.contains(&to) {
        return;
    }
    if list.len() < max {
        list.push(to);
        return;
    }
    let mut candidates: Vec<Scored> = list
        .iter()
        .chain(std::iter::once(&to))
        .map(|other| Scored(points.between(from, *other), *other))
        .collect();
    candidates.sort();
    *list = select_heuristic(points, &candidates, max);
}

/// A graph ready to answer queries.
pub(crate) struct Searchable<'a, G: Adjacency> {
    pub graph: &'a G,
    pub entry_point: Option<u32>,
    pub max_level: i32,
    /// The number of nodes.
    pub nodes: usize,
}

impl<G: Adjacency> Searchable<'_, G> {
    /// The `k` nodes nearest to `query`: greedy descent through the upper levels, then a beam
    /// search of width `ef` on level 0. Returns (distance, node), closest first.
    pub fn search<D: Distances>(
        &self,
        points: &D,
        query: &[f32],
        k: usize,
        ef: usize,
    ) -> Result<Vec<(f32, u32)>, D::Error> {
        let Some(entry_point) = self.entry_point else {
            return Ok(Vec::new());
        };
        let mut distance = Vec::new();
        points.distances(query, &[entry_point], &mut distance)?;
        let mut nearest = Scored(distance[0], entry_point);
        for level in (1..=self.max_level.max(0) as usize).rev() {
            nearest = greedy(self.graph, points, query, nearest, level)?;
        }
        let mut visited = Visited::new(self.nodes);
        let found = search_layer(self.graph, points, &mut visited, query, nearest, ef.max(k), 0)?;
        Ok(found.into_iter().take(k).map(|s| (s.0, s.1)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Clustered points: the case where a plain k-NN graph falls apart.
    fn clustered(n: usize, dimension: usize, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let centers: Vec<f32> = (0..8 * dimension).map(|_| rng.random_range(-10.0..10.0)).collect();
        let mut out = Vec::with_capacity(n * dimension);
        for i in 0..n {
            let c = i % 8;
            for j in 0..dimension {
                out.push(centers[c * dimension + j] + rng.random_range(-0.5..0.5));
            }
        }
        out
    }

    fn search(
        built: &Built,
        vectors: &[f32],
        dimension: usize,
        space: Space,
        query: &[f32],
        k: usize,
        ef: usize,
    ) -> Vec<(f32, u32)> {
        let searchable = Searchable {
            graph: &Links(&built.links),
            entry_point: built.entry_point,
            max_level: built.max_level,
            nodes: built.links.len(),
        };
        let points = Points {
            vectors,
            dimension,
            space,
        };
        let Ok(hits) = searchable.search(&points, query, k, ef);
        hits
    }

    fn brute_force(vectors: &[f32], dimension: usize, space: Space, query: &[f32], k: usize) -> Vec<u32> {
        let mut all: Vec<Scored> = vectors
            .chunks_exact(dimension)
            .enumerate()
            .map(|(i, row)| Scored(space.distance(query, row), i as u32))
            .collect();
        all.sort();
        all.into_iter().take(k).map(|s| s.1).collect()
    }

    fn check_recall(space: Space) {
        let (n, dimension) = (600, 12);
        let vectors = clustered(n, dimension, 5);
        let params = BuildParams {
            m: 8,
            ef_construction: 64,
            seed: 1,
        };
        let built = build(&vectors, dimension, space, params);
        assert_eq!(built, build(&vectors, dimension, space, params), "deterministic");
        // Degrees respect the slot widths and every level-l neighbour lives on level l.
        for (node, levels) in built.links.iter().enumerate() {
            for (level, list) in levels.iter().enumerate() {
                assert!(list.len() <= if level == 0 { 16 } else { 8 });
                assert!(!list.contains(&(node as u32)));
                assert!(list.iter().all(|other| built.links[*other as usize].len() > level));
            }
        }
        let mut found = 0;
        for query_node in (0..n).step_by(7) {
            let query = &vectors[query_node * dimension..(query_node + 1) * dimension];
            let want = brute_force(&vectors, dimension, space, query, 10);
            let got = search(&built, &vectors, dimension, space, query, 10, 64);
            found += got.iter().filter(|(_, node)| want.contains(node)).count();
        }
        let recall = found as f64 / (n.div_ceil(7) * 10) as f64;
        assert!(recall > 0.95, "recall@10 = {recall}");
    }

    #[test]
    fn the_graph_finds_true_neighbours_in_l2() {
        check_recall(Space::L2);
    }

    #[test]
    fn the_graph_finds_true_neighbours_in_inner_product() {
        check_recall(Space::InnerProduct);
    }

    #[test]
    fn the_heuristic_prefers_diverse_neighbours() {
        // Base at 0; b sits right behind a, c is on the other side: a and c are kept, not b.
        let vectors = [0.0f32, 1.0, 1.1, -2.0];
        let points = Points {
            vectors: &vectors,
            dimension: 1,
            space: Space::L2,
        };
        let candidates: Vec<Scored> = [1u32, 2, 3].iter().map(|i| Scored(points.between(0, *i), *i)).collect();
        assert_eq!(select_heuristic(&points, &candidates, 3), vec![1, 3]);
    }

    #[test]
    fn a_graph_grown_load_by_load_finds_neighbours_like_one_built_at_once() {
        let (n, dimension) = (500, 8);
        let vectors = clustered(n, dimension, 9);
        let params = BuildParams {
            m: 8,
            ef_construction: 64,
            seed: 4,
        };
        let whole = build(&vectors, dimension, Space::L2, params);
        let mut grown = build(&vectors[..100 * dimension], dimension, Space::L2, params);
        for end in [230, 231, 500] {
            grown = extend(&vectors[..end * dimension], dimension, Space::L2, params, grown);
        }
        // The same levels, drawn by node number.
        let levels = |b: &Built| b.links.iter().map(Vec::len).collect::<Vec<_>>();
        assert_eq!(levels(&grown), levels(&whole));
        let mut found = 0;
        for query_node in (0..n).step_by(5) {
            let query = &vectors[query_node * dimension..(query_node + 1) * dimension];
            let want = brute_force(&vectors, dimension, Space::L2, query, 10);
            let got = search(&grown, &vectors, dimension, Space::L2, query, 10, 64);
            found += got.iter().filter(|(_, node)| want.contains(node)).count();
        }
        let recall = found as f64 / (n.div_ceil(5) * 10) as f64;
        assert!(recall > 0.95, "recall@10 = {recall}");
    }

    #[test]
    fn tiny_graphs_work() {
        for n in 0..4 {
            let vectors: Vec<f32> = (0..n * 2).map(|i| i as f32).collect();
            let built = build(
                &vectors,
                2,
                Space::L2,
                BuildParams {
                    m: 32,
                    ef_construction: 200,
                    seed: 0,
                },
            );
            assert_eq!(built.entry_point.is_some(), n > 0);
            for node in 0..n {
                let query = &vectors[node * 2..node * 2 + 2];
                let hits = search(&built, &vectors, 2, Space::L2, query, 1, 16);
                assert_eq!(hits[0].1, node as u32);
            }
        }
    }
}
