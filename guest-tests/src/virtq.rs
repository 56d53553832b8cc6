//! One split virtqueue (queue 0) of a virtio device, in the guest image, for the
//! hostile guests: the rings, raw descriptors (any address, length, flags), offering
//! heads, and one honest virtio-blk read of sector 0.
//!
//! Owns: the queue's memory (identity-mapped statics). Must not touch: the device's
//! registers beyond queue 0's setup (`pci::Virtio`).

use core::sync::atomic::{compiler_fence, Ordering};

use crate::check;
use crate::pci::{common, Virtio, DRIVER_OK};

pub const QUEUE_SIZE: u16 = 16;
/// Descriptor flags.
pub const NEXT: u16 = 1;
pub const WRITE: u16 = 2;
pub const INDIRECT: u16 = 4;

/// The rings and buffers of queue 0.
#[repr(C, align(4096))]
struct Memory {
    desc: [[u8; 16]; QUEUE_SIZE as usize],
    avail: [u16; 3 + QUEUE_SIZE as usize],
    used: [u32; 2 + 2 * QUEUE_SIZE as usize],
    indirect: [[u8; 16]; 4],
    header: [u8; 16],
    data: [u8; 512],
    status: u8,
}

static mut MEMORY: Memory = Memory {
    desc: [[0; 16]; QUEUE_SIZE as usize],
    avail: [0; 3 + QUEUE_SIZE as usize],
    used: [0; 2 + 2 * QUEUE_SIZE as usize],
    indirect: [[0; 16]; 4],
    header: [0; 16],
    data: [0; 512],
    status: 0,
};

fn memory() -> *mut Memory {
    core::ptr::addr_of_mut!(MEMORY)
}

/// Guest-physical addresses of the request buffers and the indirect table.
pub struct Buffers {
    pub header: u64,
    pub data: u64,
    pub status: u64,
    pub indirect: u64,
}

pub fn buffers() -> Buffers {
    let m = memory();
    // SAFETY: only addresses are taken (the image is identity-mapped).
    unsafe {
        Buffers {
            header: core::ptr::addr_of!((*m).header) as u64,
            data: core::ptr::addr_of!((*m).data) as u64,
            status: core::ptr::addr_of!((*m).status) as u64,
            indirect: core::ptr::addr_of!((*m).indirect) as u64,
        }
    }
}

fn encode(addr: u64, len: u32, flags: u16, next: u16) -> [u8; 16] {
    let mut bytes = [0u8; 16];
    bytes[0..8].copy_from_slice(&addr.to_le_bytes());
    bytes[8..12].copy_from_slice(&len.to_le_bytes());
    bytes[12..14].copy_from_slice(&flags.to_le_bytes());
    bytes[14..16].copy_from_slice(&next.to_le_bytes());
    bytes
}

/// Writes descriptor `index` of the table.
pub fn descriptor(index: u16, addr: u64, len: u32, flags: u16, next: u16) {
    let slot = (index % QUEUE_SIZE) as usize;
    // SAFETY: one vCPU; the device reads the table only during our notifies.
    unsafe {
        core::ptr::addr_of_mut!((*memory()).desc[slot])
            .write_volatile(encode(addr, len, flags, next))
    };
}

/// Writes entry `index` (< 4) of the indirect table.
pub fn indirect(index: usize, addr: u64, len: u32, flags: u16, next: u16) {
    // SAFETY: as in `descriptor`.
    unsafe {
        core::ptr::addr_of_mut!((*memory()).indirect[index & 3])
            .write_volatile(encode(addr, len, flags, next))
    };
}

/// Offers `head` in the available ring and moves its index by `step` (1 is honest).
pub fn offer(head: u16, step: u16) {
    let m = memory();
    // SAFETY: as in `descriptor`.
    unsafe {
        let idx = core::ptr::addr_of!((*m).avail[1]).read_volatile();
        core::ptr::addr_of_mut!((*m).avail[2 + (idx % QUEUE_SIZE) as usize]).write_volatile(head);
        compiler_fence(Ordering::SeqCst);
        core::ptr::addr_of_mut!((*m).avail[1]).write_volatile(idx.wrapping_add(step));
    }
    compiler_fence(Ordering::SeqCst);
}

/// The used ring's index.
pub fn used_idx() -> u16 {
    // SAFETY: as in `descriptor`; the device writes the used ring. Its first word is
    // `flags` (low half) and `idx` (high half).
    unsafe { (core::ptr::addr_of!((*memory()).used[0]).read_volatile() >> 16) as u16 }
}

/// Resets `dev`, sets queue 0 up on these rings (MSI-X vector `msix`, 0xffff: none)
/// and starts the device.
pub fn start(dev: &Virtio, msix: u16) {
    check!(dev.reset_and_negotiate(), "the device refused VERSION_1");
    // SAFETY: the device is reset: it does not touch the rings.
    unsafe { memory().write_bytes(0, 1) };
    let m = memory();
    // SAFETY: only addresses are taken.
    let (desc, avail, used) = unsafe {
        (
            core::ptr::addr_of!((*m).desc) as u64,
            core::ptr::addr_of!((*m).avail) as u64,
            core::ptr::addr_of!((*m).used) as u64,
        )
    };
    dev.set_queue(0, QUEUE_SIZE, desc, avail, used);
    dev.write16(common::QUEUE_MSIX_VECTOR, msix);
    dev.write8(
        common::DEVICE_STATUS,
        dev.read8(common::DEVICE_STATUS) | DRIVER_OK,
    );
}

/// Reads sector 0 of a virtio-blk device with a proper three-descriptor chain;
/// returns the status byte and the sector.
pub fn read_sector0(dev: &Virtio) -> (u8, [u8; 512]) {
    let m = memory();
    let b = buffers();
    // SAFETY: one vCPU; the buffers are ours until the device uses the chain.
    unsafe {
        (*m).header = [0; 16]; // VIRTIO_BLK_T_IN, sector 0
        (*m).data = [0; 512];
        core::ptr::addr_of_mut!((*m).status).write_volatile(0xff);
    }
    descriptor(0, b.header, 16, NEXT, 1);
    descriptor(1, b.data, 512, NEXT | WRITE, 2);
    descriptor(2, b.status, 1, WRITE, 0);
    let before = used_idx();
    offer(0, 1);
    dev.notify(0);
    check!(
        used_idx() == before.wrapping_add(1),
        "the device did not use a valid request"
    );
    // SAFETY: the device has used the chain.
    unsafe {
        (
            core::ptr::addr_of!((*m).status).read_volatile(),
            core::ptr::addr_of!((*m).data).read_volatile(),
        )
    }
}
