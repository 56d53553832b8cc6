use super::*;
use std::format;
use std::vec;
use std::vec::Vec;

type Space = u32;
const A: Space = 1;
const B: Space = 2;
const C: Space = 3;
const RWX: u8 = 0b111;

fn m(space: Space, base: u64, order: u8, rights: u8, payload: u64) -> Mapping<Space, u64> {
    Mapping {
        space,
        base,
        order,
        rights,
        payload,
    }
}

fn sorted(mut v: Vec<Mapping<Space, u64>>) -> Vec<Mapping<Space, u64>> {
    v.sort_by_key(|x| (x.space, x.base));
    v
}

fn all(db: &MapDb<Space, u64>, spaces: &[Space]) -> Vec<Mapping<Space, u64>> {
    spaces.iter().flat_map(|&s| db.iter_space(s)).collect()
}

#[test]
fn insert_root_and_lookup() {
    let mut db = MapDb::new(1 << 36);
    db.insert_root(A, 0x100, 8, RWX, 0x5000).unwrap();
    assert_eq!(db.len(), 1);
    assert_eq!(db.lookup(A, 0x100), Some(m(A, 0x100, 8, RWX, 0x5000)));
    // The payload is the node's, not offset to the unit.
    assert_eq!(db.lookup(A, 0x1ff), Some(m(A, 0x100, 8, RWX, 0x5000)));
    assert_eq!(db.lookup(A, 0xff), None);
    assert_eq!(db.lookup(A, 0x200), None);
    assert_eq!(db.lookup(B, 0x100), None);
    assert_eq!(db.parent_of(A, 0x100), None);
}

#[test]
fn insert_root_errors() {
    let mut db: MapDb<Space, u64> = MapDb::new(1 << 16);
    assert_eq!(db.insert_root(A, 1, 1, RWX, 0), Err(Error::Misaligned));
    assert_eq!(db.insert_root(A, 0, 64, RWX, 0), Err(Error::BadOrder));
    assert_eq!(db.insert_root(A, 0, 255, RWX, 0), Err(Error::BadOrder));
    assert_eq!(db.insert_root(A, 0, 17, RWX, 0), Err(Error::BadOrder));
    assert_eq!(db.insert_root(A, 0xffff, 0, RWX, 0), Ok(()));
    assert_eq!(db.insert_root(A, 0x1_0000, 0, RWX, 0), Err(Error::BadOrder));
    assert_eq!(db.insert_root(A, 0, 4, 0, 0), Err(Error::NoRights));
    db.insert_root(A, 0x100, 4, RWX, 0).unwrap();
    assert_eq!(db.insert_root(A, 0x108, 0, RWX, 0), Err(Error::Overlap));
    assert_eq!(db.insert_root(A, 0, 12, RWX, 0), Err(Error::Overlap));
    assert_eq!(db.insert_root(A, 0x100, 4, RWX, 0), Err(Error::Overlap));
    assert_eq!(db.len(), 2);

    // Overflow of base + size at the top of u64.
    let mut big: MapDb<Space, u64> = MapDb::new(u64::MAX);
    assert_eq!(
        big.insert_root(A, 1 << 63, 63, RWX, 0),
        Err(Error::BadOrder)
    );
    assert_eq!(big.insert_root(A, 0, 63, RWX, 0), Ok(()));
}

#[test]
fn delegation_chain_offsets_payload_and_masks_rights() {
    let mut db = MapDb::new(1 << 36);
    db.insert_root(A, 0x1000, 12, RWX, 0x80_000).unwrap();
    // A -> B: pages 0x1400.. of A (offset 0x400) at 0x0 of B, read+write.
    let b = db.delegate(A, 0x1400, 10, B, 0, 0b011).unwrap();
    assert_eq!(b, m(B, 0, 10, 0b011, 0x80_400));
    // B -> C: page 0x10 of B, asking for rwx, gets only rw & mask.
    let c = db.delegate(B, 0x10, 0, C, 0x777, 0b110).unwrap();
    assert_eq!(c, m(C, 0x777, 0, 0b010, 0x80_410));
    assert_eq!(db.lookup(C, 0x777), Some(c));
    let (parent, offset) = db.parent_of(C, 0x777).unwrap();
    assert_eq!((parent, offset), (b, 0x10));
    assert_eq!(db.len(), 3);
}

#[test]
fn delegate_errors() {
    let mut db: MapDb<Space, u64> = MapDb::new(1 << 20);
    db.insert_root(A, 0, 8, 0b01, 0).unwrap();
    db.insert_root(A, 0x100, 8, RWX, 0).unwrap();
    db.insert_root(B, 0x40, 6, RWX, 0).unwrap();
    // Misaligned source or destination.
    assert_eq!(db.delegate(A, 2, 2, B, 0, RWX), Err(Error::Misaligned));
    assert_eq!(db.delegate(A, 0, 2, B, 1, RWX), Err(Error::Misaligned));
    // Bad orders and limit.
    assert_eq!(db.delegate(A, 0, 64, B, 0, RWX), Err(Error::BadOrder));
    assert_eq!(db.delegate(A, 0, 0, B, 1 << 20, RWX), Err(Error::BadOrder));
    assert_eq!(db.delegate(A, 0, 0, B, u64::MAX, RWX), Err(Error::BadOrder));
    // Source not held, or spanning two nodes.
    assert_eq!(db.delegate(A, 0x200, 0, B, 0, RWX), Err(Error::NotMapped));
    assert_eq!(db.delegate(A, 0, 9, B, 0x200, RWX), Err(Error::NotMapped));
    assert_eq!(db.delegate(C, 0, 0, B, 0, RWX), Err(Error::NotMapped));
    // Rights mask removes everything the source has.
    assert_eq!(db.delegate(A, 0, 0, B, 0, 0b110), Err(Error::NoRights));
    assert_eq!(db.delegate(A, 0x100, 0, B, 0, 0), Err(Error::NoRights));
    // Destination (partly) occupied.
    assert_eq!(db.delegate(A, 0, 7, B, 0, RWX), Err(Error::Overlap));
    assert_eq!(db.delegate(A, 0, 0, B, 0x7f, RWX), Err(Error::Overlap));
    assert_eq!(db.delegate(A, 0x100, 7, B, 0, RWX), Err(Error::Overlap));
    // Same space: the source range itself is occupied.
    assert_eq!(db.delegate(A, 0, 0, A, 0, RWX), Err(Error::Overlap));
    assert_eq!(db.len(), 3);
    // Same space, free destination: fine.
    let x = db.delegate(A, 0x104, 2, A, 0x400, RWX).unwrap();
    assert_eq!(x, m(A, 0x400, 2, RWX, 4));
}

#[test]
fn error_display_is_helpful() {
    for e in [
        Error::Misaligned,
        Error::Overlap,
        Error::NotMapped,
        Error::NoRights,
        Error::BadOrder,
    ] {
        let text = format!("{e}");
        assert!(text.len() > 20, "{e:?}: {text}");
    }
    assert!(format!("{}", Error::Overlap).contains("occupied"));
}

#[test]
fn revoke_children_only_keeps_node() {
    let mut db = MapDb::new(1 << 36);
    db.insert_root(A, 0, 4, RWX, 100).unwrap();
    db.delegate(A, 0, 4, B, 0, RWX).unwrap();
    db.delegate(B, 0, 2, C, 0, RWX).unwrap();
    let removed = db.revoke(A, 0, 4, false);
    assert_eq!(removed, [m(B, 0, 4, RWX, 100), m(C, 0, 2, RWX, 100)]);
    assert_eq!(all(&db, &[A, B, C]), [m(A, 0, 4, RWX, 100)]);
}

#[test]
fn revoke_include_self_takes_whole_node_and_subtree() {
    let mut db = MapDb::new(1 << 36);
    db.insert_root(A, 0, 4, RWX, 100).unwrap();
    db.delegate(A, 0, 4, B, 0x10, RWX).unwrap();
    db.delegate(B, 0x18, 0, C, 0, RWX).unwrap();
    // Revoking one unit of B's node with include_self takes all of it.
    let removed = db.revoke(B, 0x1f, 0, true);
    assert_eq!(removed, [m(B, 0x10, 4, RWX, 100), m(C, 0, 0, RWX, 108)]);
    assert_eq!(db.len(), 1);
    // A's child set is updated: a new delegation of the same range works.
    db.delegate(A, 0, 4, B, 0x10, RWX).unwrap();
    assert_eq!(db.revoke(A, 0, 4, false).len(), 1);
}

#[test]
fn partial_revocation_removes_only_children_of_that_part() {
    let mut db = MapDb::new(1 << 36);
    db.insert_root(A, 0, 6, RWX, 1000).unwrap(); // 64 units
    db.delegate(A, 0, 3, B, 0, RWX).unwrap(); // src [0, 8)
    db.delegate(A, 8, 3, B, 8, RWX).unwrap(); // src [8, 16)
    db.delegate(A, 16, 4, B, 16, RWX).unwrap(); // src [16, 32)
    db.delegate(A, 32, 5, C, 0, RWX).unwrap(); // src [32, 64)
    db.delegate(A, 9, 0, C, 100, RWX).unwrap(); // src [9, 10)
    db.delegate(B, 20, 0, C, 200, RWX).unwrap(); // grandchild via [16, 32)

    // Revoke [8, 12): touches B@8 and C@100 only.
    let removed = sorted(db.revoke(A, 8, 2, false));
    assert_eq!(removed, [m(B, 8, 3, RWX, 1008), m(C, 100, 0, RWX, 1009)]);
    // Revoke one unit inside [16, 32): the 16-unit child contains it.
    let removed = db.revoke(A, 21, 0, false);
    assert_eq!(removed, [m(B, 16, 4, RWX, 1016), m(C, 200, 0, RWX, 1020)]);
    // Revoke [0, 32) of A: only B@0 is left there.
    let removed = db.revoke(A, 0, 5, false);
    assert_eq!(removed, [m(B, 0, 3, RWX, 1000)]);
    assert_eq!(
        all(&db, &[A, B, C]),
        [m(A, 0, 6, RWX, 1000), m(C, 0, 5, RWX, 1032)]
    );
    assert_eq!(db.len(), 2);
}

#[test]
fn revoke_range_covering_several_nodes_and_nothing() {
    let mut db = MapDb::new(1 << 36);
    for i in 0..4u64 {
        db.insert_root(A, i * 16, 4, RWX, i * 1000).unwrap();
        db.delegate(A, i * 16 + 1, 0, B, i, RWX).unwrap();
    }
    // [8, 40) overlaps roots 0, 1 and 2 (unaligned range is fine).
    let removed = sorted(db.revoke(A, 8, 5, false));
    assert_eq!(
        removed,
        [m(B, 1, 0, RWX, 1001), m(B, 2, 0, RWX, 2001)],
        "only children whose source lies in [8, 40)"
    );
    let removed = sorted(db.revoke(A, 0, 6, true));
    assert_eq!(removed.len(), 6);
    assert!(db.is_empty());
    // Revoking empty spaces, huge orders, ranges beyond the limit: no-ops.
    assert!(db.revoke(A, 0, 255, true).is_empty());
    assert!(db.revoke(A, u64::MAX, 63, true).is_empty());
    assert!(db.revoke(C, 0, 0, false).is_empty());
}

#[test]
fn revoke_in_same_space_delegations() {
    let mut db = MapDb::new(1 << 36);
    db.insert_root(A, 0, 2, RWX, 7).unwrap();
    db.delegate(A, 1, 0, A, 8, 0b001).unwrap();
    db.delegate(A, 8, 0, A, 9, 0b001).unwrap();
    // One revocation covering parent and descendants in one space.
    let removed = db.revoke(A, 0, 4, true);
    assert_eq!(
        removed,
        [m(A, 0, 2, RWX, 7), m(A, 8, 0, 1, 8), m(A, 9, 0, 1, 8)]
    );
    assert!(db.is_empty());
}

#[test]
fn remove_space_takes_subtrees_in_other_spaces() {
    let mut db = MapDb::new(1 << 36);
    db.insert_root(A, 0, 4, RWX, 0).unwrap();
    db.delegate(A, 0, 2, B, 0, RWX).unwrap();
    db.delegate(B, 0, 1, C, 0, RWX).unwrap();
    db.insert_root(B, 0x100, 0, RWX, 55).unwrap();
    db.delegate(A, 8, 3, C, 8, RWX).unwrap();
    let removed = sorted(db.remove_space(B));
    assert_eq!(
        removed,
        [
            m(B, 0, 2, RWX, 0),
            m(B, 0x100, 0, RWX, 55),
            m(C, 0, 1, RWX, 0)
        ]
    );
    assert_eq!(
        all(&db, &[A, B, C]),
        [m(A, 0, 4, RWX, 0), m(C, 8, 3, RWX, 8)]
    );
    assert!(db.remove_space(B).is_empty());
    assert_eq!(db.iter_space(B).count(), 0);
    // Remove the root space: everything goes.
    assert_eq!(db.remove_space(A).len(), 2);
    assert!(db.is_empty());
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Obj(u32);
impl Payload for Obj {
    fn offset(&self, _units: u64) -> Self {
        self.clone()
    }
}

#[test]
fn object_capabilities_clone_payload() {
    let mut db: MapDb<Space, Obj> = MapDb::new(1 << 32);
    db.insert_root(A, 5, 0, 0b1111, Obj(42)).unwrap();
    let c = db.delegate(A, 5, 0, B, 9, 0b0101).unwrap();
    assert_eq!(c.payload, Obj(42));
    assert_eq!(c.rights, 0b0101);
    assert_eq!(db.lookup(B, 9).map(|x| x.payload), Some(Obj(42)));
}

#[test]
fn slots_are_reused() {
    let mut db = MapDb::new(1 << 36);
    db.insert_root(A, 0, 10, RWX, 0).unwrap();
    for round in 0..50u64 {
        for i in 0..20u64 {
            db.delegate(A, i, 0, B, round * 100 + i, RWX).unwrap();
        }
        assert_eq!(db.revoke(A, 0, 10, false).len(), 20);
    }
    assert_eq!(db.len(), 1);
    assert!(db.nodes.len() <= 21, "slab grew to {}", db.nodes.len());
}

#[test]
fn deep_chain_is_revoked_iteratively() {
    const DEPTH: u64 = 100_000;
    let mut db = MapDb::new(1 << 36);
    db.insert_root(0u64, 0, 0, RWX, 9).unwrap();
    for i in 1..=DEPTH {
        db.delegate(i - 1, 0, 0, i, 0, RWX).unwrap();
    }
    assert_eq!(db.len() as u64, DEPTH + 1);
    // Run on a thread with a deliberately small stack, like a kernel's.
    let removed = std::thread::Builder::new()
        .stack_size(64 * 1024)
        .spawn(move || {
            let removed = db.revoke(0, 0, 0, false);
            assert!(db.iter_space(1).next().is_none());
            assert_eq!(db.len(), 1);
            // Dropping the database must not recurse either.
            for i in 1..=1000 {
                db.delegate(i - 1, 0, 0, i, 0, RWX).unwrap();
            }
            drop(db);
            removed
        })
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(removed.len() as u64, DEPTH);
    // Parents before descendants: spaces come out in chain order.
    assert!(removed
        .iter()
        .enumerate()
        .all(|(i, x)| x.space == i as u64 + 1));
    assert!(removed.iter().all(|x| x.payload == 9));
}

#[test]
fn wide_fanout_partial_revoke() {
    let mut db = MapDb::new(1 << 36);
    db.insert_root(A, 0, 20, RWX, 0).unwrap();
    for i in 0..(1u64 << 14) {
        db.delegate(A, i, 0, B, i, RWX).unwrap();
    }
    // One big child containing the revoked unit (found by the alignment
    // lookup, not a scan).
    db.delegate(A, 1 << 19, 19, C, 0, RWX).unwrap();
    assert_eq!(
        db.revoke(A, (1 << 19) + 12345, 0, false),
        [m(C, 0, 19, RWX, 1 << 19)]
    );
    assert_eq!(db.revoke(A, 100, 2, false).len(), 4);
    assert_eq!(db.len(), 1 + (1 << 14) - 4);
}

// ---- randomized comparison against a trivially correct model ---------------

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Clone)]
struct ModelNode {
    map: Mapping<Space, u64>,
    parent: Option<usize>,
    src: (u64, u64), // source range in the parent's space
    alive: bool,
}

/// Every node in a flat list; every query is a linear scan.
struct Model {
    limit: u64,
    nodes: Vec<ModelNode>,
}

impl Model {
    fn find(&self, space: Space, unit: u64) -> Option<usize> {
        self.nodes.iter().position(|n| {
            n.alive
                && n.map.space == space
                && n.map.base <= unit
                && unit < n.map.base + n.map.size()
        })
    }
    fn free(&self, space: Space, base: u64, end: u64) -> bool {
        !self.nodes.iter().any(|n| {
            n.alive && n.map.space == space && n.map.base < end && base < n.map.base + n.map.size()
        })
    }
    fn range(&self, base: u64, order: u8) -> Result<u64, Error> {
        if order > 63 {
            return Err(Error::BadOrder);
        }
        if !base.is_multiple_of(1 << order) {
            return Err(Error::Misaligned);
        }
        match base.checked_add(1 << order) {
            Some(e) if e <= self.limit => Ok(e),
            _ => Err(Error::BadOrder),
        }
    }
    fn insert_root(&mut self, map: Mapping<Space, u64>) -> Result<(), Error> {
        let end = self.range(map.base, map.order)?;
        if map.rights == 0 {
            return Err(Error::NoRights);
        }
        if !self.free(map.space, map.base, end) {
            return Err(Error::Overlap);
        }
        self.nodes.push(ModelNode {
            map,
            parent: None,
            src: (0, 0),
            alive: true,
        });
        Ok(())
    }
    fn delegate(
        &mut self,
        ss: Space,
        sb: u64,
        order: u8,
        ds: Space,
        db: u64,
        mask: u8,
    ) -> Result<Mapping<Space, u64>, Error> {
        let se = self.range(sb, order)?;
        let de = self.range(db, order)?;
        let p = self.find(ss, sb).ok_or(Error::NotMapped)?;
        let pm = self.nodes[p].map.clone();
        if se > pm.base + pm.size() {
            return Err(Error::NotMapped);
        }
        if pm.rights & mask == 0 {
            return Err(Error::NoRights);
        }
        if !self.free(ds, db, de) {
            return Err(Error::Overlap);
        }
        let map = m(ds, db, order, pm.rights & mask, pm.payload + (sb - pm.base));
        self.nodes.push(ModelNode {
            map: map.clone(),
            parent: Some(p),
            src: (sb, se),
            alive: true,
        });
        Ok(map)
    }
    fn kill(&mut self, root: usize, out: &mut Vec<Mapping<Space, u64>>) {
        if !self.nodes[root].alive {
            return;
        }
        self.nodes[root].alive = false;
        out.push(self.nodes[root].map.clone());
        // Recursion is fine in the model: random trees stay shallow.
        for i in 0..self.nodes.len() {
            if self.nodes[i].parent == Some(root) {
                self.kill(i, out);
            }
        }
    }
    fn revoke(&mut self, space: Space, base: u64, order: u8, me: bool) -> Vec<Mapping<Space, u64>> {
        let end = 1u64
            .checked_shl(u32::from(order))
            .and_then(|size| base.checked_add(size))
            .unwrap_or(u64::MAX)
            .min(self.limit);
        let mut out = Vec::new();
        let hit: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| {
                let n = &self.nodes[i].map;
                self.nodes[i].alive && n.space == space && n.base < end && base < n.base + n.size()
            })
            .collect();
        for i in hit {
            if me {
                self.kill(i, &mut out);
            } else {
                for c in 0..self.nodes.len() {
                    let (s, e) = self.nodes[c].src;
                    if self.nodes[c].parent == Some(i) && s < end && base < e {
                        self.kill(c, &mut out);
                    }
                }
            }
        }
        out
    }
    fn remove_space(&mut self, space: Space) -> Vec<Mapping<Space, u64>> {
        let mut out = Vec::new();
        for i in 0..self.nodes.len() {
            if self.nodes[i].map.space == space {
                self.kill(i, &mut out);
            }
        }
        out
    }
    fn space(&self, space: Space) -> Vec<Mapping<Space, u64>> {
        sorted(
            self.nodes
                .iter()
                .filter(|n| n.alive && n.map.space == space)
                .map(|n| n.map.clone())
                .collect(),
        )
    }
}

#[test]
fn randomized_against_model() {
    const LIMIT: u64 = 256;
    const SPACES: Space = 4;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..60 {
        let mut db: MapDb<Space, u64> = MapDb::new(LIMIT);
        let mut model = Model {
            limit: LIMIT,
            nodes: Vec::new(),
        };
        for step in 0..400 {
            let what = format!("round {round} step {step}");
            let space = rng.below(u64::from(SPACES)) as Space;
            let order = match rng.below(10) {
                0 => rng.below(256) as u8,
                _ => rng.below(6) as u8,
            };
            // Mostly aligned, sometimes not; sometimes near or past the limit.
            let mut base = rng.below(LIMIT + 16);
            if rng.below(5) != 0 {
                base &= !((1u64 << order.min(63)) - 1);
            }
            match rng.below(10) {
                0 => {
                    let rights = rng.below(8) as u8;
                    let payload = rng.below(1 << 20);
                    let map = m(space, base, order, rights, payload);
                    let got = db.insert_root(space, base, order, rights, payload);
                    assert_eq!(got, model.insert_root(map), "{what}: insert_root");
                }
                1..=6 => {
                    // Prefer a source range inside an existing node.
                    let (ss, sb) = match model
                        .nodes
                        .iter()
                        .filter(|n| n.alive)
                        .nth(rng.below(model.nodes.len() as u64 + 1) as usize)
                    {
                        Some(n) if rng.below(4) != 0 => {
                            let n = &n.map;
                            let off = rng.below(n.size()) & !((1u64 << order.min(63)) - 1);
                            (n.space, n.base + off)
                        }
                        _ => (space, base),
                    };
                    let ds = rng.below(u64::from(SPACES)) as Space;
                    let db_base = rng.below(LIMIT) & !((1u64 << order.min(63)) - 1);
                    let mask = rng.below(8) as u8;
                    let got = db.delegate(ss, sb, order, ds, db_base, mask);
                    let want = model.delegate(ss, sb, order, ds, db_base, mask);
                    assert_eq!(got, want, "{what}: delegate");
                }
                7 | 8 => {
                    let me = rng.below(3) == 0;
                    // Mostly aim at a unit some node holds.
                    let alive: Vec<_> = model.nodes.iter().filter(|n| n.alive).collect();
                    let (space, base, order) = if !alive.is_empty() && rng.below(4) != 0 {
                        let n = &alive[rng.below(alive.len() as u64) as usize].map;
                        let o = rng.below(u64::from(n.order) + 1) as u8;
                        let unit = n.base + (rng.below(n.size()) & !((1u64 << o) - 1));
                        (n.space, unit, o)
                    } else {
                        (space, base, order)
                    };
                    let got = sorted(db.revoke(space, base, order, me));
                    let want = sorted(model.revoke(space, base, order, me));
                    assert_eq!(got, want, "{what}: revoke");
                }
                _ => {
                    if rng.below(4) == 0 {
                        let got = sorted(db.remove_space(space));
                        let want = sorted(model.remove_space(space));
                        assert_eq!(got, want, "{what}: remove_space");
                    }
                }
            }
            for s in 0..SPACES {
                let got: Vec<_> = db.iter_space(s).collect();
                assert_eq!(got, model.space(s), "{what}: space {s}");
            }
            let alive = model.nodes.iter().filter(|n| n.alive).count();
            assert_eq!(db.len(), alive, "{what}: len");
            let unit = rng.below(LIMIT);
            let want = model.find(space, unit).map(|i| model.nodes[i].map.clone());
            assert_eq!(db.lookup(space, unit), want, "{what}: lookup");
        }
        let alive = db.len();
        let total: usize = (0..SPACES).map(|s| db.remove_space(s).len()).sum();
        assert_eq!(
            total, alive,
            "round {round}: remove_space returns every node"
        );
        assert!(db.is_empty());
    }
}

#[test]
fn revoked_mappings_keep_parent_first_order() {
    let mut db = MapDb::new(1 << 36);
    db.insert_root(A, 0, 3, RWX, 0).unwrap();
    let mut next_space = 10;
    let mut parent_of = std::collections::BTreeMap::new();
    // A binary tree of depth 3: every node delegates both halves.
    let mut frontier = vec![(A, 0u64, 3u8)];
    while let Some((s, b, o)) = frontier.pop() {
        if o == 0 {
            continue;
        }
        for half in 0..2u64 {
            let src = b + half * (1 << (o - 1));
            db.delegate(s, src, o - 1, next_space, 0, RWX).unwrap();
            parent_of.insert(next_space, s);
            frontier.push((next_space, 0, o - 1));
            next_space += 1;
        }
    }
    let removed = db.revoke(A, 0, 3, true);
    assert_eq!(removed.len(), 15);
    let index = |s: Space| removed.iter().position(|x| x.space == s).unwrap();
    assert_eq!(index(A), 0);
    for (&child, &parent) in &parent_of {
        assert!(
            index(parent) < index(child),
            "{parent} after its child {child}"
        );
    }
}
