//! A hostile guest against the transport and virtio-blk: garbage chains,
//! loops, addresses outside memory, impossible indices, register fuzzing.
//! Nothing may panic or hang, and good requests must keep working.

use crate::blk::{Block, BlockMode};
use crate::pci::PciFunction;
use crate::testutil::{bar_write, disk_image, Driver, TempFile, DATA_BASE};
use crate::transport::VirtioPci;

fn setup() -> (Driver, VirtioPci<Block>, TempFile) {
    let image = disk_image();
    let mut d = Driver::new();
    let mut pci = d.wrap(Block::new(image.open(), BlockMode::CopyOnWrite).unwrap());
    assert_eq!(d.init(&mut pci, 16, true) & 0xf, 0xf);
    (d, pci, image)
}

/// A well-formed 1-sector read; returns true if it completed with OK.
fn good_read(d: &mut Driver, pci: &mut VirtioPci<Block>) -> bool {
    let header = d.alloc(16);
    d.write(header, &[0; 16]);
    let data = d.alloc(512);
    let status = d.alloc(1);
    d.write(status, &[0xaa]);
    let head = d.add_chain(
        0,
        &[(header, 16, false), (data, 512, true), (status, 1, true)],
    );
    d.notify(pci, 0);
    d.used(0).contains(&(head as u32, 513)) && d.read(status, 1) == [0]
}

/// A raw descriptor: (index, addr, len, flags, next).
type RawDesc = (u16, u64, u32, u16, u16);

/// Publishes raw descriptors with `head`.
fn raw_chain(d: &mut Driver, head: u16, descs: &[RawDesc]) {
    for &(i, addr, len, flags, next) in descs {
        d.put_desc(0, i, addr, len, flags, next);
    }
    d.publish(0, head);
}

#[test]
fn bad_chains_are_answered_and_the_queue_keeps_working() {
    let (mut d, mut pci, _) = setup();
    let header = d.alloc(16);
    let status = d.alloc(1);
    const NEXT: u16 = 1;
    const WRITE: u16 = 2;
    const INDIRECT: u16 = 4;
    let cases: Vec<Vec<RawDesc>> = vec![
        // A loop of readable descriptors (no status byte anywhere).
        vec![(0, header, 16, NEXT, 1), (1, header, 16, NEXT, 0)],
        // A loop through the status byte.
        vec![(0, header, 16, NEXT, 1), (1, status, 1, WRITE | NEXT, 0)],
        // Header outside guest memory.
        vec![(0, 0xffff_ffff_0000, 16, NEXT, 1), (1, status, 1, WRITE, 0)],
        // A 4 GiB data buffer.
        vec![
            (0, header, 16, NEXT, 1),
            (1, DATA_BASE, u32::MAX, WRITE | NEXT, 2),
            (2, status, 1, WRITE, 0),
        ],
        // Next index past the table.
        vec![(0, header, 16, NEXT, 900)],
        // Indirect table of odd length, then one outside memory.
        vec![(0, header, 17, INDIRECT, 0)],
        vec![(0, 0x7fff_0000_0000, 32, INDIRECT, 0)],
        // Empty header.
        vec![(0, header, 0, NEXT, 1), (1, status, 1, WRITE, 0)],
    ];
    for (n, descs) in cases.iter().enumerate() {
        d.write(header, &[0; 16]);
        raw_chain(&mut d, 0, descs);
        d.notify(&mut pci, 0);
        let used = d.used(0);
        assert_eq!(used.len(), 1, "case {n}: the chain comes back");
        assert_eq!(used[0].0, 0);
        assert!(
            used[0].1 <= 1,
            "case {n}: nothing but a status byte written"
        );
        assert!(good_read(&mut d, &mut pci), "case {n}: queue still works");
    }
    // A head index beyond the queue cannot be returned; it is dropped.
    d.publish(0, 200);
    d.notify(&mut pci, 0);
    assert!(d.used(0).is_empty());
    assert!(good_read(&mut d, &mut pci));
}

#[test]
fn impossible_avail_index_stops_the_queue_until_reset() {
    let (mut d, mut pci, _) = setup();
    d.set_avail_idx(0, 1000);
    d.notify(&mut pci, 0);
    d.notify(&mut pci, 0);
    assert!(d.used(0).is_empty());
    assert!(!good_read(&mut d, &mut pci), "queue is dead");
    assert_eq!(d.init(&mut pci, 16, true) & 0xf, 0xf);
    assert!(good_read(&mut d, &mut pci), "reset revives it");
}

#[test]
fn rings_outside_memory_disable_the_queue() {
    let mut d = Driver::new();
    let image = disk_image();
    let mut pci = d.wrap(Block::new(image.open(), BlockMode::ReadOnly).unwrap());
    Driver::common_write(&mut pci, 20, 1, 3);
    d.negotiate(&mut pci, 1 << 32);
    Driver::common_write(&mut pci, 22, 2, 0);
    Driver::common_write(&mut pci, 32, 8, 0x10_0000_0000);
    Driver::common_write(&mut pci, 40, 8, 0x1000);
    Driver::common_write(&mut pci, 48, 8, 0x2001); // misaligned: refused
    Driver::common_write(&mut pci, 24, 2, 3); // not a power of two: refused
    assert_eq!(Driver::common_read(&mut pci, 24, 2), 256);
    Driver::common_write(&mut pci, 28, 2, 1);
    Driver::common_write(&mut pci, 20, 1, 0xf);
    d.notify(&mut pci, 0);
    assert_eq!(Driver::common_read(&mut pci, 20, 1), 0xf);
}

/// A small deterministic generator for fuzzing.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 11
    }
}

#[test]
fn random_rings_and_register_writes_never_panic() {
    let (mut d, mut pci, _) = setup();
    let mut rng = Lcg(42);
    let ring = d.queues[0].desc;
    for round in 0..300 {
        // Scribble over descriptors and the avail ring.
        let garbage: Vec<u8> = (0..0x1100).map(|_| rng.next() as u8).collect();
        d.write(ring, &garbage[..0x100]);
        d.write(ring + 0x1000, &garbage[0x100..0x130]);
        d.notify(&mut pci, 0);
        // Random register traffic, but keep the device alive mostly.
        let offset = rng.next() % 0x8000;
        let len = [1, 2, 4, 8][(rng.next() % 4) as usize];
        if !(0x14..0x18).contains(&offset) || round % 50 == 0 {
            bar_write(&mut pci, offset, len, rng.next());
        }
        let mut buf = [0u8; 8];
        pci.bar_read(0, rng.next() % 0x8000, &mut buf[..len]);
        pci.config_write((rng.next() % 256) as usize, &buf[..len]);
    }
    // Whatever state that left, a reset and a clean start work.
    assert_eq!(d.init(&mut pci, 16, true) & 0xf, 0xf);
    assert!(good_read(&mut d, &mut pci));
}
