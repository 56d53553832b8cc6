//! A test driver: plays the guest side of virtio-pci over test memory.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_bus::{InterruptLine, MsiMessage, MsiSink};

use crate::device::VirtioDevice;
use crate::pci::PciFunction;
use crate::transport::{
    VirtioPci, COMMON_OFFSET, DEVICE_OFFSET, ISR_OFFSET, MSIX_TABLE_OFFSET, NOTIFY_MULTIPLIER,
    NOTIFY_OFFSET,
};

pub const MEM_SIZE: usize = 0x40_0000;
const RINGS_BASE: u64 = 0x1_0000;
const RINGS_STRIDE: u64 = 0x4000;
pub const DATA_BASE: u64 = 0x10_0000;

pub const F_VERSION_1: u64 = 1 << 32;
pub const F_EVENT_IDX: u64 = 1 << 29;

#[derive(Default)]
pub struct MsiRecorder(pub Mutex<Vec<MsiMessage>>);
impl MsiSink for MsiRecorder {
    fn send(&self, msg: MsiMessage) {
        self.0.lock().unwrap().push(msg);
    }
}
impl MsiRecorder {
    pub fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

#[derive(Default)]
pub struct Level(pub AtomicBool, pub AtomicUsize);
impl InterruptLine for Level {
    fn set_level(&self, asserted: bool) {
        self.0.store(asserted, Ordering::SeqCst);
        self.1.fetch_add(1, Ordering::SeqCst);
    }
}
impl Level {
    pub fn asserted(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

pub fn memory() -> Arc<GuestMemoryMmap> {
    Arc::new(GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap())
}

/// Guest-side state of one split virtqueue.
pub struct TestQueue {
    pub size: u16,
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
    next_desc: u16,
    avail_idx: u16,
    used_seen: u16,
}

/// A descriptor: address, length, device-writable.
pub type Desc = (u64, u32, bool);

pub struct Driver {
    pub mem: Arc<GuestMemoryMmap>,
    pub msi: Arc<MsiRecorder>,
    pub queues: Vec<TestQueue>,
    /// Offered features `init` does not accept (EVENT_IDX by default, so
    /// every completion interrupts).
    pub refuse: u64,
    next_data: u64,
}

pub fn bar_read<F: PciFunction + ?Sized>(f: &mut F, offset: u64, len: usize) -> u64 {
    let mut b = [0u8; 8];
    f.bar_read(0, offset, &mut b[..len]);
    u64::from_le_bytes(b)
}

pub fn bar_write<F: PciFunction + ?Sized>(f: &mut F, offset: u64, len: usize, value: u64) {
    f.bar_write(0, offset, &value.to_le_bytes()[..len]);
}

impl Driver {
    pub fn new() -> Self {
        Driver {
            mem: memory(),
            msi: Arc::new(MsiRecorder::default()),
            queues: Vec::new(),
            refuse: F_EVENT_IDX,
            next_data: DATA_BASE,
        }
    }

    pub fn wrap<D: VirtioDevice>(&self, device: D) -> VirtioPci<D> {
        VirtioPci::new(device, self.mem.clone(), self.msi.clone()).unwrap()
    }

    pub fn common_read<D: VirtioDevice>(pci: &mut VirtioPci<D>, off: u64, len: usize) -> u64 {
        bar_read(pci, COMMON_OFFSET + off, len)
    }

    pub fn common_write<D: VirtioDevice>(pci: &mut VirtioPci<D>, off: u64, len: usize, v: u64) {
        bar_write(pci, COMMON_OFFSET + off, len, v);
    }

    pub fn device_features<D: VirtioDevice>(pci: &mut VirtioPci<D>) -> u64 {
        Self::common_write(pci, 0, 4, 0);
        let lo = Self::common_read(pci, 4, 4);
        Self::common_write(pci, 0, 4, 1);
        let hi = Self::common_read(pci, 4, 4);
        hi << 32 | lo
    }

    /// Negotiates `features` (intersected with the offer) and sets up every
    /// queue with `size` entries; MSI-X on if `msix`. Returns status.
    pub fn init<D: VirtioDevice>(&mut self, pci: &mut VirtioPci<D>, size: u16, msix: bool) -> u8 {
        Self::common_write(pci, 20, 1, 0);
        Self::common_write(pci, 20, 1, 1 | 2);
        let offered = Self::device_features(pci);
        self.negotiate(pci, offered & !self.refuse);
        let status = Self::common_read(pci, 20, 1) as u8;
        if status & 8 == 0 {
            return status;
        }
        if msix {
            self.enable_msix(pci);
        }
        let n = Self::common_read(pci, 18, 2) as u16;
        self.queues.clear();
        for i in 0..n {
            let q = self.setup_queue(pci, i, size, if msix { i + 1 } else { 0xffff });
            self.queues.push(q);
        }
        if msix {
            Self::common_write(pci, 16, 2, 0);
        }
        Self::common_write(pci, 20, 1, 1 | 2 | 8 | 4);
        Self::common_read(pci, 20, 1) as u8
    }

    pub fn negotiate<D: VirtioDevice>(&mut self, pci: &mut VirtioPci<D>, features: u64) {
        Self::common_write(pci, 8, 4, 0);
        Self::common_write(pci, 12, 4, features & 0xffff_ffff);
        Self::common_write(pci, 8, 4, 1);
        Self::common_write(pci, 12, 4, features >> 32);
        Self::common_write(pci, 20, 1, 1 | 2 | 8);
    }

    /// Programs MSI-X vector v with address 0xfee0_0000 and data 0x20+v,
    /// unmasked, and enables MSI-X.
    pub fn enable_msix<D: VirtioDevice>(&mut self, pci: &mut VirtioPci<D>) {
        let cap = find_cap(pci.config(), 0x11).unwrap();
        let vectors = (pci.config().get16(cap + 2) & 0x7ff) + 1;
        for v in 0..vectors as u64 {
            let base = MSIX_TABLE_OFFSET as u64 + v * 16;
            bar_write(pci, base, 8, 0xfee0_0000);
            bar_write(pci, base + 8, 4, 0x20 + v);
            bar_write(pci, base + 12, 4, 0);
        }
        pci.config_write(cap + 3, &[0x80]);
    }

    pub fn setup_queue<D: VirtioDevice>(
        &mut self,
        pci: &mut VirtioPci<D>,
        index: u16,
        size: u16,
        vector: u16,
    ) -> TestQueue {
        let desc = RINGS_BASE + index as u64 * RINGS_STRIDE;
        let q = TestQueue {
            size,
            desc,
            avail: desc + 0x1000,
            used: desc + 0x2000,
            next_desc: 0,
            avail_idx: 0,
            used_seen: 0,
        };
        self.write(desc, &[0; RINGS_STRIDE as usize]);
        Self::common_write(pci, 22, 2, index as u64);
        Self::common_write(pci, 24, 2, size as u64);
        Self::common_write(pci, 26, 2, vector as u64);
        Self::common_write(pci, 32, 8, q.desc);
        Self::common_write(pci, 40, 4, q.avail);
        Self::common_write(pci, 44, 4, 0);
        Self::common_write(pci, 48, 8, q.used);
        Self::common_write(pci, 28, 2, 1);
        q
    }

    /// Reserves `len` bytes of guest memory for buffers.
    pub fn alloc(&mut self, len: u64) -> u64 {
        let at = self.next_data;
        self.next_data = (at + len).next_multiple_of(16);
        assert!(self.next_data <= MEM_SIZE as u64);
        at
    }

    pub fn write(&self, addr: u64, data: &[u8]) {
        self.mem.write_slice(data, GuestAddress(addr)).unwrap();
    }

    pub fn read(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.mem.read_slice(&mut v, GuestAddress(addr)).unwrap();
        v
    }

    /// Writes raw descriptor `i` of queue `q`.
    pub fn put_desc(&self, q: usize, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let at = self.queues[q].desc + 16 * i as u64;
        let mut d = [0u8; 16];
        d[0..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[12..14].copy_from_slice(&flags.to_le_bytes());
        d[14..16].copy_from_slice(&next.to_le_bytes());
        self.write(at, &d);
    }

    /// Publishes `head` in the available ring (without notifying).
    pub fn publish(&mut self, q: usize, head: u16) {
        let tq = &mut self.queues[q];
        let slot = tq.avail + 4 + 2 * (tq.avail_idx % tq.size) as u64;
        let idx_at = tq.avail + 2;
        tq.avail_idx = tq.avail_idx.wrapping_add(1);
        let idx = tq.avail_idx;
        self.write(slot, &head.to_le_bytes());
        self.write(idx_at, &idx.to_le_bytes());
    }

    /// Asks for an interrupt once the used index passes `idx` (EVENT_IDX).
    pub fn set_used_event(&mut self, q: usize, idx: u16) {
        let tq = &self.queues[q];
        let at = tq.avail + 4 + 2 * tq.size as u64;
        self.write(at, &idx.to_le_bytes());
    }

    /// The device's avail_event: the avail index it wants a kick at.
    pub fn avail_event(&self, q: usize) -> u16 {
        let tq = &self.queues[q];
        let b = self.read(tq.used + 4 + 8 * tq.size as u64, 2);
        u16::from_le_bytes([b[0], b[1]])
    }

    /// Sets the available ring's index directly (hostile tests).
    pub fn set_avail_idx(&mut self, q: usize, idx: u16) {
        self.queues[q].avail_idx = idx;
        let at = self.queues[q].avail + 2;
        self.write(at, &idx.to_le_bytes());
    }

    /// Adds a chain of descriptors and publishes it; returns its head.
    pub fn add_chain(&mut self, q: usize, descs: &[Desc]) -> u16 {
        let size = self.queues[q].size;
        let head = self.queues[q].next_desc;
        for (k, &(addr, len, writable)) in descs.iter().enumerate() {
            let i = (head + k as u16) % size;
            let more = k + 1 < descs.len();
            let flags = (more as u16) | if writable { 2 } else { 0 };
            self.put_desc(q, i, addr, len, flags, (i + 1) % size);
        }
        self.queues[q].next_desc = (head + descs.len() as u16) % size;
        self.publish(q, head);
        head
    }

    pub fn notify<D: VirtioDevice>(&self, pci: &mut VirtioPci<D>, q: u16) {
        bar_write(
            pci,
            NOTIFY_OFFSET + q as u64 * NOTIFY_MULTIPLIER as u64,
            2,
            q as u64,
        );
    }

    /// Used-ring entries (id, len) the device added since the last call.
    pub fn used(&mut self, q: usize) -> Vec<(u32, u32)> {
        let (used, size, seen) = {
            let tq = &self.queues[q];
            (tq.used, tq.size, tq.used_seen)
        };
        let idx = u16::from_le_bytes(self.read(used + 2, 2).try_into().unwrap());
        let mut out = Vec::new();
        let mut i = seen;
        while i != idx {
            let e = self.read(used + 4 + 8 * (i % size) as u64, 8);
            out.push((
                u32::from_le_bytes(e[0..4].try_into().unwrap()),
                u32::from_le_bytes(e[4..8].try_into().unwrap()),
            ));
            i = i.wrapping_add(1);
        }
        self.queues[q].used_seen = idx;
        out
    }

    pub fn isr<D: VirtioDevice>(pci: &mut VirtioPci<D>) -> u8 {
        bar_read(pci, ISR_OFFSET, 1) as u8
    }

    pub fn device_config<D: VirtioDevice>(pci: &mut VirtioPci<D>, off: u64, len: usize) -> u64 {
        bar_read(pci, DEVICE_OFFSET + off, len)
    }
}

/// Offset of the first capability with `id`.
pub fn find_cap(cs: &crate::pci::ConfigSpace, id: u8) -> Option<usize> {
    let mut at = cs.get8(0x34) as usize;
    let mut hops = 0;
    while at != 0 && hops < 48 {
        if cs.get8(at) == id {
            return Some(at);
        }
        at = cs.get8(at + 1) as usize;
        hops += 1;
    }
    None
}

/// A temporary file removed on drop.
pub struct TempFile(pub std::path::PathBuf);

impl TempFile {
    pub fn with(contents: &[u8]) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "vmm-virtio-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::write(&path, contents).unwrap();
        TempFile(path)
    }

    pub fn open(&self) -> std::fs::File {
        std::fs::File::open(&self.0).unwrap()
    }

    pub fn contents(&self) -> Vec<u8> {
        std::fs::read(&self.0).unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The byte at `offset` of the test disk image.
pub fn image_byte(offset: usize) -> u8 {
    (offset / 512 * 31 + offset % 251) as u8
}

/// A disk image of 10 whole sectors plus 100 bytes of a partial one.
pub fn disk_image() -> TempFile {
    TempFile::with(&(0..10 * 512 + 100).map(image_byte).collect::<Vec<_>>())
}
