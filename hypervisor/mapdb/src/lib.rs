//! The mapping database: who holds which resources, and where each came from.
//!
//! Owns: the record of every resource a protection domain holds in one kind
//! of resource space (the kernel keeps three instances: memory pages, I/O
//! ports, object capabilities), the delegation tree linking each derived
//! node to the node it came from, and revocation of derived nodes.
//!
//! Must not touch: page tables, I/O bitmaps or capability tables. The
//! database only answers "what does space S hold at unit U" and reports which
//! mappings a revocation or removal took away; the kernel applies those
//! changes to the hardware structures.
//!
//! # Model
//!
//! A *node* is `(space, base, order, rights, payload)`: the naturally aligned
//! range `[base, base + 2^order)` of units in `space`. Nodes of one space
//! never overlap. A *root* node is granted by the kernel
//! ([`MapDb::insert_root`]); a *derived* node is created by
//! [`MapDb::delegate`] from a part of exactly one node (its parent) and
//! records which part (its source offset inside the parent).
//!
//! Removing a node always removes its whole subtree (all nodes derived from
//! it, transitively, in every space). So a derived node can never outlive its
//! parent: there are no orphans, and a sibling subtree survives only while
//! its own parent does. All tree walks use explicit work lists, never
//! recursion, so arbitrarily deep delegation chains cannot overflow a kernel
//! stack.
//!
//! Because every node and every source range is naturally aligned, two such
//! ranges are either nested or disjoint. [`MapDb::revoke`] uses this to find
//! the children overlapping a range without scanning all children.

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(test)]
extern crate std;

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;
use core::fmt;

/// What a node maps to (a frame number, a port number, an object handle).
pub trait Payload: Clone {
    /// The payload of the unit `units` after the first one of a node; for
    /// objects (order 0 only) a plain clone.
    fn offset(&self, units: u64) -> Self;
}

/// Plain numbers (frame numbers, port numbers) offset by addition. Saturates
/// instead of wrapping; kernel-granted roots never come near `u64::MAX`.
impl Payload for u64 {
    fn offset(&self, units: u64) -> Self {
        self.saturating_add(units)
    }
}

/// One node as seen from outside.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping<S, P> {
    pub space: S,
    pub base: u64,
    pub order: u8,
    pub rights: u8,
    pub payload: P,
}

impl<S, P> Mapping<S, P> {
    /// Number of units covered: `2^order`.
    pub fn size(&self) -> u64 {
        1u64.checked_shl(u32::from(self.order)).unwrap_or(0)
    }
}

/// Why an insertion or delegation was refused. The database is unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// A base is not aligned to `2^order`.
    Misaligned,
    /// The destination range is already (partly) occupied.
    Overlap,
    /// The source range does not lie inside one node of the source space.
    NotMapped,
    /// The resulting rights would be empty (`rights & mask == 0`).
    NoRights,
    /// `order > 63`, or `base + 2^order` overflows or exceeds the limit.
    BadOrder,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::Misaligned => "base is not aligned to the size 2^order (align both bases)",
            Error::Overlap => {
                "destination range is already (partly) occupied (revoke or pick a free range)"
            }
            Error::NotMapped => {
                "source range is not inside one mapping of the source space \
                 (delegate a range the source actually holds, at most one mapping at a time)"
            }
            Error::NoRights => {
                "resulting rights are empty (the rights mask removes every right the source has)"
            }
            Error::BadOrder => {
                "order too large: 2^order units from base overflow or exceed the space's limit"
            }
        })
    }
}

type NodeId = usize;

struct Node<S, P> {
    space: S,
    base: u64,
    order: u8,
    rights: u8,
    payload: P,
    parent: Option<NodeId>,
    /// Offset of this node's source range inside its parent (0 for roots).
    src_offset: u64,
    /// Children as `(src_offset, order, id)`, ordered by source offset.
    children: BTreeSet<(u64, u8, NodeId)>,
}

impl<S: Copy, P: Clone> Node<S, P> {
    fn end(&self) -> u64 {
        // Checked on insertion: base + 2^order <= limit.
        self.base.saturating_add(1u64 << self.order)
    }

    fn mapping(&self) -> Mapping<S, P> {
        Mapping {
            space: self.space,
            base: self.base,
            order: self.order,
            rights: self.rights,
            payload: self.payload.clone(),
        }
    }
}

/// The mapping database for one kind of resource.
pub struct MapDb<S: Copy + Ord, P: Payload> {
    limit: u64,
    /// Slab of nodes; `None` slots are listed in `free_slots`.
    nodes: Vec<Option<Node<S, P>>>,
    free_slots: Vec<NodeId>,
    live: usize,
    /// Per space: node base -> node.
    spaces: BTreeMap<S, BTreeMap<u64, NodeId>>,
}

impl<S: Copy + Ord, P: Payload> MapDb<S, P> {
    /// An empty database whose ranges must end at or below `limit` units
    /// (e.g. `2^36` pages, `2^16` ports, `2^32` selectors).
    pub fn new(limit: u64) -> Self {
        Self {
            limit,
            nodes: Vec::new(),
            free_slots: Vec::new(),
            live: 0,
            spaces: BTreeMap::new(),
        }
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Adds a node without a parent (granted by the kernel).
    ///
    /// Errors: [`Error::BadOrder`], [`Error::Misaligned`], [`Error::Overlap`],
    /// and [`Error::NoRights`] if `rights == 0`.
    pub fn insert_root(
        &mut self,
        space: S,
        base: u64,
        order: u8,
        rights: u8,
        payload: P,
    ) -> Result<(), Error> {
        let end = self.checked_range(base, order)?;
        if rights == 0 {
            return Err(Error::NoRights);
        }
        if self.occupied(space, base, end) {
            return Err(Error::Overlap);
        }
        self.add_node(Node {
            space,
            base,
            order,
            rights,
            payload,
            parent: None,
            src_offset: 0,
            children: BTreeSet::new(),
        });
        Ok(())
    }

    /// The node of `space` containing `unit`, as stored (payload of its
    /// first unit, not offset to `unit`).
    pub fn lookup(&self, space: S, unit: u64) -> Option<Mapping<S, P>> {
        self.node_containing(space, unit)
            .and_then(|id| self.node(id))
            .map(Node::mapping)
    }

    /// Delegates `[src_base, src_base + 2^order)` of `src_space` to
    /// `[dst_base, ...)` of `dst_space` with `rights = parent.rights &
    /// rights_mask`, and returns the new node.
    ///
    /// The source range must lie inside one node of `src_space` (the
    /// parent); both bases must be aligned to `2^order`; the destination
    /// range must be completely free. The child's payload is the parent's
    /// offset by `src_base - parent.base`. Errors are checked in this order:
    /// [`Error::BadOrder`], [`Error::Misaligned`], [`Error::NotMapped`],
    /// [`Error::NoRights`], [`Error::Overlap`].
    pub fn delegate(
        &mut self,
        src_space: S,
        src_base: u64,
        order: u8,
        dst_space: S,
        dst_base: u64,
        rights_mask: u8,
    ) -> Result<Mapping<S, P>, Error> {
        let src_end = self.checked_range(src_base, order)?;
        let dst_end = self.checked_range(dst_base, order)?;
        let parent_id = self
            .node_containing(src_space, src_base)
            .ok_or(Error::NotMapped)?;
        let parent = self.node(parent_id).ok_or(Error::NotMapped)?;
        if src_end > parent.end() {
            return Err(Error::NotMapped);
        }
        let rights = parent.rights & rights_mask;
        if rights == 0 {
            return Err(Error::NoRights);
        }
        if self.occupied(dst_space, dst_base, dst_end) {
            return Err(Error::Overlap);
        }
        let src_offset = src_base - parent.base;
        let child = Node {
            space: dst_space,
            base: dst_base,
            order,
            rights,
            payload: parent.payload.offset(src_offset),
            parent: Some(parent_id),
            src_offset,
            children: BTreeSet::new(),
        };
        let mapping = child.mapping();
        let id = self.add_node(child);
        if let Some(parent) = self.node_mut(parent_id) {
            parent.children.insert((src_offset, order, id));
        }
        Ok(mapping)
    }

    /// Revokes `[base, base + 2^order)` of `space`.
    ///
    /// For each node N of `space` overlapping the range, removes every child
    /// of N whose source range overlaps the range, with its whole subtree in
    /// all spaces. With `include_self`, also removes N itself (all of N, even
    /// if the range covers only part of it: the unit of revocation is the
    /// delegation) with its subtree. Nodes outside the range stay, and so do
    /// N's children derived only from parts outside the range.
    ///
    /// Returns every removed mapping, each parent before its descendants.
    /// The range is clipped to the limit; it need not be aligned.
    pub fn revoke(
        &mut self,
        space: S,
        base: u64,
        order: u8,
        include_self: bool,
    ) -> Vec<Mapping<S, P>> {
        let end = 1u64
            .checked_shl(u32::from(order))
            .and_then(|size| base.checked_add(size))
            .unwrap_or(u64::MAX)
            .min(self.limit);
        let mut removed = Vec::new();
        if base >= end {
            return removed;
        }
        for id in self.nodes_overlapping(space, base, end) {
            if include_self {
                self.remove_subtree(id, &mut removed);
                continue;
            }
            let Some(node) = self.node(id) else {
                continue;
            };
            let lo = base.max(node.base) - node.base;
            let hi = end.min(node.end()) - node.base;
            for child in children_overlapping(&node.children, lo, hi) {
                self.remove_subtree(child, &mut removed);
            }
        }
        removed
    }

    /// Removes every node of `space` and their subtrees (a protection domain
    /// was destroyed). Returns every removed mapping, parents first.
    pub fn remove_space(&mut self, space: S) -> Vec<Mapping<S, P>> {
        let mut removed = Vec::new();
        let ids: Vec<NodeId> = match self.spaces.get(&space) {
            Some(map) => map.values().copied().collect(),
            None => return removed,
        };
        for id in ids {
            self.remove_subtree(id, &mut removed);
        }
        removed
    }

    /// The nodes of `space` in ascending base order.
    pub fn iter_space(&self, space: S) -> impl Iterator<Item = Mapping<S, P>> + '_ {
        self.spaces
            .get(&space)
            .into_iter()
            .flat_map(BTreeMap::values)
            .filter_map(|&id| self.node(id))
            .map(Node::mapping)
    }

    /// The node that `space`'s node containing `unit` was delegated from:
    /// `(parent mapping, offset of the source range inside the parent)`.
    /// `None` if no node contains `unit` or it is a root.
    pub fn parent_of(&self, space: S, unit: u64) -> Option<(Mapping<S, P>, u64)> {
        let node = self.node(self.node_containing(space, unit)?)?;
        let parent = self.node(node.parent?)?;
        Some((parent.mapping(), node.src_offset))
    }

    // ---- internals -------------------------------------------------------

    fn node(&self, id: NodeId) -> Option<&Node<S, P>> {
        self.nodes.get(id).and_then(Option::as_ref)
    }

    fn node_mut(&mut self, id: NodeId) -> Option<&mut Node<S, P>> {
        self.nodes.get_mut(id).and_then(Option::as_mut)
    }

    /// End of `[base, base + 2^order)` after validating it.
    fn checked_range(&self, base: u64, order: u8) -> Result<u64, Error> {
        let size = 1u64.checked_shl(u32::from(order)).ok_or(Error::BadOrder)?;
        if !base.is_multiple_of(size) {
            return Err(Error::Misaligned);
        }
        match base.checked_add(size) {
            Some(end) if end <= self.limit => Ok(end),
            _ => Err(Error::BadOrder),
        }
    }

    fn node_containing(&self, space: S, unit: u64) -> Option<NodeId> {
        let (_, &id) = self.spaces.get(&space)?.range(..=unit).next_back()?;
        (unit < self.node(id)?.end()).then_some(id)
    }

    /// Nodes of `space` overlapping `[base, end)`, ascending.
    fn nodes_overlapping(&self, space: S, base: u64, end: u64) -> Vec<NodeId> {
        let Some(map) = self.spaces.get(&space) else {
            return Vec::new();
        };
        let before = self
            .node_containing(space, base)
            .filter(|&id| self.node(id).is_some_and(|n| n.base < base));
        before
            .into_iter()
            .chain(map.range(base..end).map(|(_, &id)| id))
            .collect()
    }

    fn occupied(&self, space: S, base: u64, end: u64) -> bool {
        self.node_containing(space, base).is_some()
            || self
                .spaces
                .get(&space)
                .is_some_and(|map| map.range(base..end).next().is_some())
    }

    fn add_node(&mut self, node: Node<S, P>) -> NodeId {
        let (space, base) = (node.space, node.base);
        let id = match self.free_slots.pop() {
            Some(id) => {
                if let Some(slot) = self.nodes.get_mut(id) {
                    *slot = Some(node);
                }
                id
            }
            None => {
                self.nodes.push(Some(node));
                self.nodes.len() - 1
            }
        };
        self.spaces.entry(space).or_default().insert(base, id);
        self.live += 1;
        id
    }

    /// Removes `root` and everything derived from it, appending the removed
    /// mappings (preorder). Does nothing if `root` is already gone.
    fn remove_subtree(&mut self, root: NodeId, removed: &mut Vec<Mapping<S, P>>) {
        let Some(node) = self.node(root) else {
            return;
        };
        if let Some(parent_id) = node.parent {
            let key = (node.src_offset, node.order, root);
            if let Some(parent) = self.node_mut(parent_id) {
                parent.children.remove(&key);
            }
        }
        let mut work = Vec::from([root]);
        while let Some(id) = work.pop() {
            let Some(node) = self.nodes.get_mut(id).and_then(Option::take) else {
                continue;
            };
            self.free_slots.push(id);
            self.live -= 1;
            if let Some(map) = self.spaces.get_mut(&node.space) {
                map.remove(&node.base);
                if map.is_empty() {
                    self.spaces.remove(&node.space);
                }
            }
            // Push in reverse so children come out in ascending order.
            work.extend(node.children.iter().rev().map(|&(_, _, child)| child));
            removed.push(Mapping {
                space: node.space,
                base: node.base,
                order: node.order,
                rights: node.rights,
                payload: node.payload,
            });
        }
    }
}

/// Children whose source range `[offset, offset + 2^order)` overlaps
/// `[lo, hi)` (offsets relative to the parent, `lo < hi`).
///
/// Children starting inside the range are a range query. A child starting
/// before `lo` overlaps only if it contains `lo`; being naturally aligned, a
/// child of order `k` containing `lo` starts exactly at `lo` rounded down to
/// `2^k`, so one lookup per order finds them all.
fn children_overlapping(children: &BTreeSet<(u64, u8, NodeId)>, lo: u64, hi: u64) -> Vec<NodeId> {
    let mut out: Vec<NodeId> = children
        .range((lo, 0, 0)..(hi, 0, 0))
        .map(|&(_, _, id)| id)
        .collect();
    for k in 1..64u8 {
        let start = lo & !((1u64 << k) - 1);
        if start == lo {
            continue;
        }
        out.extend(
            children
                .range((start, k, 0)..=(start, k, NodeId::MAX))
                .map(|&(_, _, id)| id),
        );
    }
    out
}

#[cfg(test)]
mod tests;
