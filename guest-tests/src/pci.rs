//! PCI configuration space through CF8/CFC (bus 0) and the registers of a virtio-pci
//! modern device, for the hostile guests that attack the PC machine's devices.
//!
//! Owns: ports 0xCF8/0xCFC, finding a function, its capability list, its BARs and
//! mapping a BAR's 2 MiB page into the guest's window (the BARs of the PC machine may
//! lie above 4 GiB, outside the boot identity map). Must not touch: what the guests
//! do with the device.

use crate::{boot, cpu};

const CONFIG_ADDRESS: u16 = 0xcf8;
const CONFIG_DATA: u16 = 0xcfc;
/// Vendor ID of virtio devices; modern device IDs are 0x1040 + virtio type.
pub const VIRTIO_VENDOR: u16 = 0x1af4;
pub const VIRTIO_BLK: u16 = 0x1042;
const CAP_VENDOR: u8 = 0x09;
const CAP_MSIX: u8 = 0x11;

/// A function on bus 0.
#[derive(Clone, Copy, Debug)]
pub struct Function {
    pub device: u8,
}

impl Function {
    fn address(&self, offset: u8) -> u32 {
        0x8000_0000 | (self.device as u32) << 11 | (offset as u32 & 0xfc)
    }

    pub fn read32(&self, offset: u8) -> u32 {
        cpu::outl(CONFIG_ADDRESS, self.address(offset));
        cpu::inl(CONFIG_DATA)
    }

    pub fn write32(&self, offset: u8, value: u32) {
        cpu::outl(CONFIG_ADDRESS, self.address(offset));
        cpu::outl(CONFIG_DATA, value);
    }

    pub fn read8(&self, offset: u8) -> u8 {
        (self.read32(offset) >> ((offset & 3) * 8)) as u8
    }

    /// The offset of the first capability with `id` after `from` (0: from the start).
    pub fn capability(&self, id: u8, from: u8) -> Option<u8> {
        let mut at = if from == 0 {
            self.read8(0x34)
        } else {
            self.read8(from + 1)
        };
        for _ in 0..48 {
            if at < 0x40 {
                return None;
            }
            if self.read8(at) == id {
                return Some(at);
            }
            at = self.read8(at + 1);
        }
        None
    }

    /// The guest-physical base of memory BAR `index` (32- or 64-bit).
    pub fn bar(&self, index: u8) -> u64 {
        let low = self.read32(0x10 + 4 * index);
        let base = (low & !0xf) as u64;
        if low & 0x6 == 0x4 {
            base | (self.read32(0x14 + 4 * index) as u64) << 32
        } else {
            base
        }
    }

    /// Turns on memory decoding and bus mastering.
    pub fn enable(&self) {
        let command = self.read32(0x04);
        self.write32(0x04, (command & 0xffff) | 0x6);
    }
}

/// The first function on bus 0 with `vendor`:`device`.
pub fn find(vendor: u16, device: u16) -> Option<Function> {
    (0..32)
        .map(|device| Function { device })
        .find(|f| f.read32(0) == (device as u32) << 16 | vendor as u32)
}

/// Maps the 2 MiB page of guest-physical `phys` at virtual `window` (2 MiB aligned,
/// below 4 GiB, unused by the guest) uncached; returns the virtual address of `phys`.
pub fn map(window: u64, phys: u64) -> u64 {
    const PRESENT_WRITABLE_LARGE: u64 = 0x83;
    const CACHE_DISABLE: u64 = 0x18; // PWT | PCD
    let page = phys & !0x1f_ffff;
    // SAFETY: the identity map's entry for `window`, which the caller does not use
    // otherwise, now maps the 2 MiB page containing `phys`.
    unsafe { boot::pd_entry(window).write_volatile(page | PRESENT_WRITABLE_LARGE | CACHE_DISABLE) };
    cpu::invlpg(window);
    window + (phys - page)
}

/// Writes `queue` to the doorbell at `at` (from [`Virtio::doorbell`]).
pub fn ring(at: u64, queue: u16) {
    // SAFETY: `at` is a doorbell in the notify structure of a device (MMIO).
    unsafe { (at as *mut u16).write_volatile(queue) }
}

/// The registers of a virtio-pci modern function (virtio 1.x, section 4.1.4), as
/// virtual addresses in the guest's window.
#[derive(Clone, Copy, Debug)]
pub struct Virtio {
    pub function: Function,
    pub common: u64,
    pub notify: u64,
    pub notify_multiplier: u32,
    /// The MSI-X table and its number of entries.
    pub msix_table: u64,
    pub msix_entries: u16,
}

/// Offsets in the common configuration structure.
pub mod common {
    pub const DEVICE_FEATURE_SELECT: u64 = 0x00;
    pub const DEVICE_FEATURE: u64 = 0x04;
    pub const DRIVER_FEATURE_SELECT: u64 = 0x08;
    pub const DRIVER_FEATURE: u64 = 0x0c;
    pub const MSIX_CONFIG: u64 = 0x10;
    pub const NUM_QUEUES: u64 = 0x12;
    pub const DEVICE_STATUS: u64 = 0x14;
    pub const QUEUE_SELECT: u64 = 0x16;
    pub const QUEUE_SIZE: u64 = 0x18;
    pub const QUEUE_MSIX_VECTOR: u64 = 0x1a;
    pub const QUEUE_ENABLE: u64 = 0x1c;
    pub const QUEUE_NOTIFY_OFF: u64 = 0x1e;
    pub const QUEUE_DESC: u64 = 0x20;
    pub const QUEUE_DRIVER: u64 = 0x28;
    pub const QUEUE_DEVICE: u64 = 0x30;
}

/// Device status bits.
pub const ACKNOWLEDGE: u8 = 1;
pub const DRIVER: u8 = 2;
pub const DRIVER_OK: u8 = 4;
pub const FEATURES_OK: u8 = 8;
pub const NEEDS_RESET: u8 = 0x40;

impl Virtio {
    /// Finds the registers of `function` through its capabilities and maps its BARs
    /// at `window` (one 2 MiB window: every structure must lie in one BAR).
    pub fn new(function: Function, window: u64) -> Option<Virtio> {
        function.enable();
        let (mut common, mut notify, mut multiplier) = (None, None, 0);
        let mut cap = 0;
        while let Some(at) = function.capability(CAP_VENDOR, cap) {
            let kind = function.read8(at + 3);
            let bar = function.read8(at + 4);
            let offset = function.read32(at + 8) as u64;
            let address = map(window, function.bar(bar)) + offset;
            match kind {
                1 => common = Some(address),
                2 => {
                    notify = Some(address);
                    multiplier = function.read32(at + 16);
                }
                _ => {}
            }
            cap = at;
        }
        let msix = function.capability(CAP_MSIX, 0)?;
        let control = function.read32(msix) >> 16;
        let table = function.read32(msix + 4);
        let msix_table = map(window, function.bar((table & 7) as u8)) + (table & !7) as u64;
        // Enable MSI-X (bit 15 of the message control), function not masked.
        function.write32(
            msix,
            (control | 0x8000) << 16 | (function.read32(msix) & 0xffff),
        );
        Some(Virtio {
            function,
            common: common?,
            notify: notify?,
            notify_multiplier: multiplier,
            msix_table,
            msix_entries: (control & 0x7ff) as u16 + 1,
        })
    }

    pub fn read8(&self, offset: u64) -> u8 {
        // SAFETY: `common` maps the device's common configuration (MMIO).
        unsafe { ((self.common + offset) as *const u8).read_volatile() }
    }
    pub fn write8(&self, offset: u64, value: u8) {
        // SAFETY: as in `read8`.
        unsafe { ((self.common + offset) as *mut u8).write_volatile(value) }
    }
    pub fn read16(&self, offset: u64) -> u16 {
        // SAFETY: as in `read8`.
        unsafe { ((self.common + offset) as *const u16).read_volatile() }
    }
    pub fn write16(&self, offset: u64, value: u16) {
        // SAFETY: as in `read8`.
        unsafe { ((self.common + offset) as *mut u16).write_volatile(value) }
    }
    pub fn read32(&self, offset: u64) -> u32 {
        // SAFETY: as in `read8`.
        unsafe { ((self.common + offset) as *const u32).read_volatile() }
    }
    pub fn write32(&self, offset: u64, value: u32) {
        // SAFETY: as in `read8`.
        unsafe { ((self.common + offset) as *mut u32).write_volatile(value) }
    }
    pub fn write64(&self, offset: u64, value: u64) {
        self.write32(offset, value as u32);
        self.write32(offset + 4, (value >> 32) as u32);
    }

    /// Resets the device and negotiates VERSION_1 (and indirect descriptors); returns
    /// whether the device accepted the features.
    pub fn reset_and_negotiate(&self) -> bool {
        use common::*;
        self.write8(DEVICE_STATUS, 0);
        self.write8(DEVICE_STATUS, ACKNOWLEDGE | DRIVER);
        self.write32(DEVICE_FEATURE_SELECT, 0);
        let low = self.read32(DEVICE_FEATURE) & (1 << 28); // RING_INDIRECT_DESC
        self.write32(DRIVER_FEATURE_SELECT, 0);
        self.write32(DRIVER_FEATURE, low);
        self.write32(DRIVER_FEATURE_SELECT, 1);
        self.write32(DRIVER_FEATURE, 1); // VERSION_1
        self.write8(DEVICE_STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK);
        self.read8(DEVICE_STATUS) & FEATURES_OK != 0
    }

    /// Sets up queue `queue` with its rings at the given guest-physical addresses
    /// (anything: the hostile guests give garbage) and `size` entries.
    pub fn set_queue(&self, queue: u16, size: u16, desc: u64, avail: u64, used: u64) {
        use common::*;
        self.write16(QUEUE_SELECT, queue);
        self.write16(QUEUE_SIZE, size);
        self.write64(QUEUE_DESC, desc);
        self.write64(QUEUE_DRIVER, avail);
        self.write64(QUEUE_DEVICE, used);
        self.write16(QUEUE_ENABLE, 1);
    }

    /// The doorbell address of queue `queue`.
    pub fn doorbell(&self, queue: u16) -> u64 {
        self.write16(common::QUEUE_SELECT, queue);
        let offset = self.read16(common::QUEUE_NOTIFY_OFF) as u64;
        self.notify + offset * self.notify_multiplier as u64
    }

    /// Rings the doorbell of queue `queue`.
    pub fn notify(&self, queue: u16) {
        ring(self.doorbell(queue), queue);
    }

    /// Writes MSI-X table entry `entry`: message address, data, vector control.
    pub fn set_msix(&self, entry: u16, address: u64, data: u32, masked: bool) {
        let at = self.msix_table + 16 * entry as u64;
        let words = [address as u32, (address >> 32) as u32, data, masked as u32];
        for (i, word) in words.iter().enumerate() {
            // SAFETY: the MSI-X table of the device (MMIO).
            unsafe { ((at + 4 * i as u64) as *mut u32).write_volatile(*word) }
        }
    }
}
