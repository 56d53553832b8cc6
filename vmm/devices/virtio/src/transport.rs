//! The virtio-pci modern transport (virtio 1.x, no legacy interface): one
//! PCI function with one 64-bit BAR holding the common configuration, ISR,
//! device configuration, notification registers and the MSI-X table.
//!
//! Owns: feature negotiation, the device status state machine and reset,
//! queue setup, notifications and interrupt routing (MSI-X or ISR+INTx).
//! Must not touch: request semantics (the [`VirtioDevice`]).

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use virtio_bindings::virtio_config::{
    VIRTIO_CONFIG_S_DRIVER_OK, VIRTIO_CONFIG_S_FAILED, VIRTIO_CONFIG_S_FEATURES_OK,
    VIRTIO_F_VERSION_1,
};
use virtio_bindings::virtio_ring::{VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC};
use virtio_queue::QueueT;
use vm_memory::{GuestAddress, GuestMemoryMmap};
use vmm_bus::{Line, Msi};

use crate::device::{Interrupts, Queues, VirtioDevice, Virtqueue, NO_VECTOR};
use crate::inbox::Wakeup;
use crate::log_once::LogOnce;
use crate::pci::{Bar, BarKind, ConfigSpace, Msix, PciError, PciFunction, PciIds};

/// Vendor ID of virtio devices.
pub const VIRTIO_VENDOR: u16 = 0x1af4;
/// PCI device ID of a modern-only device: this plus the virtio device type.
pub const MODERN_DEVICE_BASE: u16 = 0x1040;

/// Layout of BAR 0.
pub const BAR_INDEX: usize = 0;
pub const BAR_SIZE: u64 = 0x8000;
pub const COMMON_OFFSET: u64 = 0x0000;
pub const COMMON_LEN: u64 = 0x40;
pub const ISR_OFFSET: u64 = 0x1000;
pub const DEVICE_OFFSET: u64 = 0x2000;
pub const NOTIFY_OFFSET: u64 = 0x3000;
/// Bytes between two queues' notification registers.
pub const NOTIFY_MULTIPLIER: u32 = 4;
pub const MSIX_TABLE_OFFSET: u32 = 0x4000;
pub const MSIX_PBA_OFFSET: u32 = 0x5000;

/// Vendor-specific capability ID used by virtio.
const CAP_VENDOR: u8 = 0x09;
const CAP_COMMON: u8 = 1;
const CAP_NOTIFY: u8 = 2;
const CAP_ISR: u8 = 3;
const CAP_DEVICE: u8 = 4;

const F_VERSION_1: u64 = 1 << VIRTIO_F_VERSION_1;
/// Offered by every device: the transport handles them through virtio-queue.
const TRANSPORT_FEATURES: u64 =
    F_VERSION_1 | 1 << VIRTIO_RING_F_EVENT_IDX | 1 << VIRTIO_RING_F_INDIRECT_DESC;

const S_DRIVER_OK: u8 = VIRTIO_CONFIG_S_DRIVER_OK as u8;
const S_FEATURES_OK: u8 = VIRTIO_CONFIG_S_FEATURES_OK as u8;
const S_FAILED: u8 = VIRTIO_CONFIG_S_FAILED as u8;

/// Common-configuration fields (offset, size) that take writes.
const WRITABLE_FIELDS: [(usize, usize); 15] = [
    (0, 4),
    (8, 4),
    (12, 4),
    (16, 2),
    (20, 1),
    (22, 2),
    (24, 2),
    (26, 2),
    (28, 2),
    (32, 4),
    (36, 4),
    (40, 4),
    (44, 4),
    (48, 4),
    (52, 4),
];

/// A virtio device on PCI.
pub struct VirtioPci<D: VirtioDevice> {
    config: ConfigSpace,
    irq: Interrupts,
    device: D,
    mem: Arc<GuestMemoryMmap>,
    queues: Vec<Virtqueue>,
    status: u8,
    device_feature_select: u32,
    driver_feature_select: u32,
    driver_features: u64,
    queue_select: u16,
    config_generation: u8,
    warned: LogOnce,
}

impl<D: VirtioDevice> VirtioPci<D> {
    /// Wraps `device`; its queues live in `mem`, its MSIs go to `msi`.
    pub fn new(device: D, mem: Arc<GuestMemoryMmap>, msi: Msi) -> Result<Self, PciError> {
        let ty = device.device_type();
        let mut config = ConfigSpace::new(PciIds {
            vendor: VIRTIO_VENDOR,
            device: MODERN_DEVICE_BASE + ty,
            revision: 1,
            class: device.pci_class(),
            subsystem_vendor: VIRTIO_VENDOR,
            subsystem: 0x40 + ty,
        });
        config.add_bar(
            BAR_INDEX,
            Bar {
                kind: BarKind::Memory64,
                size: BAR_SIZE,
                prefetchable: true,
            },
        )?;
        let queues: Vec<Virtqueue> = device
            .queue_max_sizes()
            .iter()
            .map(|&s| Virtqueue::new(s))
            .collect();
        let n = queues.len() as u32;
        let bar = BAR_INDEX as u8;
        add_virtio_cap(&mut config, CAP_COMMON, COMMON_OFFSET, COMMON_LEN, None)?;
        let notify_len = (n * NOTIFY_MULTIPLIER).max(NOTIFY_MULTIPLIER) as u64;
        add_virtio_cap(
            &mut config,
            CAP_NOTIFY,
            NOTIFY_OFFSET,
            notify_len,
            Some(NOTIFY_MULTIPLIER),
        )?;
        add_virtio_cap(&mut config, CAP_ISR, ISR_OFFSET, 1, None)?;
        let device_len = (device.config_len() as u64).max(1);
        add_virtio_cap(&mut config, CAP_DEVICE, DEVICE_OFFSET, device_len, None)?;
        let msix = Msix::new(
            &mut config,
            n as u16 + 1,
            bar,
            MSIX_TABLE_OFFSET,
            MSIX_PBA_OFFSET,
            msi,
        )?;
        Ok(VirtioPci {
            config,
            irq: Interrupts {
                msix,
                isr: 0,
                intx: None,
                intx_disabled: false,
                intx_level: false,
                config_vector: NO_VECTOR,
            },
            device,
            mem,
            queues,
            status: 0,
            device_feature_select: 0,
            driver_feature_select: 0,
            driver_features: 0,
            queue_select: 0,
            config_generation: 0,
            warned: LogOnce::default(),
        })
    }

    /// Connects INTA# to `line` (level), with `gsi` in the interrupt-line
    /// register, for drivers that do not enable MSI-X.
    pub fn with_intx(mut self, line: Line, gsi: u8) -> Self {
        self.config.set_interrupt(1, gsi);
        self.irq.intx = Some(line);
        self
    }

    pub fn device(&self) -> &D {
        &self.device
    }

    pub fn device_mut(&mut self) -> &mut D {
        &mut self.device
    }

    /// Device status as the driver last set it.
    pub fn status(&self) -> u8 {
        self.status
    }

    /// Features both sides agreed on (valid once FEATURES_OK is set).
    pub fn negotiated_features(&self) -> u64 {
        self.driver_features
    }

    fn offered_features(&self) -> u64 {
        self.device.features() | TRANSPORT_FEATURES
    }

    fn running(&self) -> bool {
        self.status & S_DRIVER_OK != 0 && self.status & S_FAILED == 0
    }

    /// Lets the device move external input (frames, console bytes) into
    /// the guest; the poller thread calls this when woken.
    pub fn poll(&mut self) {
        if !self.running() {
            return;
        }
        let mut q = Queues::new(&self.mem, &mut self.queues, &mut self.irq, &mut self.warned);
        self.device.poll(&mut q);
        self.sync_interrupt_status();
    }

    /// The device's wake-up for external input, if it has any.
    pub fn wakeup(&self) -> Option<Arc<Wakeup>> {
        self.device.wakeup()
    }

    fn notify(&mut self, queue: u16) {
        if !self.running() {
            self.warned.warn(
                "early-notify",
                format_args!("virtio: queue {queue} notified before DRIVER_OK; ignored"),
            );
            return;
        }
        match self.queues.get(queue as usize) {
            Some(q) if q.usable() => {}
            _ => {
                self.warned.warn(
                    "bad-notify",
                    format_args!("virtio: notify of queue {queue}, which is not usable; ignored"),
                );
                return;
            }
        }
        let mut q = Queues::new(&self.mem, &mut self.queues, &mut self.irq, &mut self.warned);
        self.device.process_queue(queue, &mut q);
        self.sync_interrupt_status();
    }

    fn sync_interrupt_status(&mut self) {
        self.config.set_interrupt_status(self.irq.isr != 0);
    }

    /// Device reset (status 0): every queue, feature and vector forgotten.
    fn reset(&mut self) {
        self.status = 0;
        self.device_feature_select = 0;
        self.driver_feature_select = 0;
        self.driver_features = 0;
        self.queue_select = 0;
        self.irq.config_vector = NO_VECTOR;
        self.irq.isr = 0;
        self.irq.update_intx();
        for q in &mut self.queues {
            q.reset();
        }
        self.device.reset();
        self.config_generation = self.config_generation.wrapping_add(1);
        self.sync_interrupt_status();
    }

    fn set_status(&mut self, value: u8) {
        if value == 0 {
            self.reset();
            return;
        }
        let old = self.status;
        let mut new = value;
        if new & S_FEATURES_OK != 0 && old & S_FEATURES_OK == 0 {
            let offered = self.offered_features();
            let accepted = self.driver_features;
            if accepted & !offered != 0 || accepted & F_VERSION_1 == 0 {
                self.warned.warn(
                    "features",
                    format_args!(
                        "virtio: driver accepted features {accepted:#x} (offered {offered:#x}, VERSION_1 required); FEATURES_OK refused"
                    ),
                );
                new &= !S_FEATURES_OK;
            }
        }
        if new & S_DRIVER_OK != 0 && new & S_FEATURES_OK == 0 {
            new &= !S_DRIVER_OK;
        }
        self.status = new;
        if new & S_DRIVER_OK != 0 && old & S_DRIVER_OK == 0 {
            self.device.activate(self.driver_features);
            for queue in 0..self.queues.len() as u16 {
                if self.queues[queue as usize].usable() {
                    self.notify(queue);
                }
            }
            self.poll();
        }
    }

    fn selected(&mut self) -> Option<&mut Virtqueue> {
        self.queues.get_mut(self.queue_select as usize)
    }

    /// The 64-byte common configuration as the driver would read it now.
    fn common_image(&self) -> [u8; COMMON_LEN as usize] {
        let mut img = [0u8; COMMON_LEN as usize];
        let mut put = |off: usize, bytes: &[u8]| img[off..off + bytes.len()].copy_from_slice(bytes);
        let feature_word = |features: u64, select: u32| match select {
            0 => features as u32,
            1 => (features >> 32) as u32,
            _ => 0,
        };
        put(0, &self.device_feature_select.to_le_bytes());
        put(
            4,
            &feature_word(self.offered_features(), self.device_feature_select).to_le_bytes(),
        );
        put(8, &self.driver_feature_select.to_le_bytes());
        put(
            12,
            &feature_word(self.driver_features, self.driver_feature_select).to_le_bytes(),
        );
        put(16, &self.irq.config_vector.to_le_bytes());
        put(18, &(self.queues.len() as u16).to_le_bytes());
        put(20, &[self.status]);
        put(21, &[self.config_generation]);
        put(22, &self.queue_select.to_le_bytes());
        if let Some(q) = self.queues.get(self.queue_select as usize) {
            put(24, &q.queue.size().to_le_bytes());
            put(26, &q.vector.to_le_bytes());
            put(28, &(q.queue.ready() as u16).to_le_bytes());
            put(30, &self.queue_select.to_le_bytes());
            put(32, &q.queue.desc_table().to_le_bytes());
            put(40, &q.queue.avail_ring().to_le_bytes());
            put(48, &q.queue.used_ring().to_le_bytes());
            put(56, &self.queue_select.to_le_bytes());
        }
        img
    }

    fn common_read(&self, offset: u64, data: &mut [u8]) {
        crate::device::read_config_bytes(&self.common_image(), offset as usize, data);
    }

    fn common_write(&mut self, offset: u64, data: &[u8]) {
        let offset = offset as usize;
        let end = offset + data.len();
        if end > COMMON_LEN as usize {
            return;
        }
        let mut img = self.common_image();
        img[offset..end].copy_from_slice(data);
        for (field, size) in WRITABLE_FIELDS {
            if field < end && offset < field + size {
                let mut b = [0u8; 4];
                b[..size].copy_from_slice(&img[field..field + size]);
                self.write_common_field(field, u32::from_le_bytes(b));
            }
        }
    }

    fn valid_vector(&self, vector: u16) -> u16 {
        if vector < self.irq.msix.vectors() {
            vector
        } else {
            NO_VECTOR
        }
    }

    fn write_common_field(&mut self, field: usize, value: u32) {
        match field {
            0 => self.device_feature_select = value,
            8 => self.driver_feature_select = value,
            12 => {
                if self.status & S_FEATURES_OK == 0 {
                    let shift = match self.driver_feature_select {
                        0 => 0,
                        1 => 32,
                        _ => return,
                    };
                    self.driver_features =
                        self.driver_features & !(0xffff_ffff << shift) | (value as u64) << shift;
                }
            }
            16 => self.irq.config_vector = self.valid_vector(value as u16),
            20 => self.set_status(value as u8),
            22 => self.queue_select = value as u16,
            26 => {
                let vector = self.valid_vector(value as u16);
                if let Some(q) = self.selected() {
                    q.vector = vector;
                }
            }
            _ => self.write_queue_setup(field, value),
        }
    }

    /// Queue size, enable and ring addresses: only while the queue is off.
    fn write_queue_setup(&mut self, field: usize, value: u32) {
        let event_idx = self.driver_features & 1 << VIRTIO_RING_F_EVENT_IDX != 0;
        let select = self.queue_select;
        let mem = self.mem.clone();
        let Some(q) = self.queues.get_mut(select as usize) else {
            return;
        };
        if q.queue.ready() {
            self.warned.warn(
                "queue-live",
                format_args!("virtio: queue {select} reconfigured while enabled; ignored"),
            );
            return;
        }
        let queue = &mut q.queue;
        let lo = |addr: u64| addr & !0xffff_ffff | value as u64;
        let hi = |addr: u64| addr & 0xffff_ffff | (value as u64) << 32;
        let result = match field {
            24 => queue.try_set_size(value as u16),
            28 if value == 1 => {
                queue.set_event_idx(event_idx);
                queue.set_ready(true);
                if !queue.is_valid(&*mem) {
                    q.broken = true;
                    self.warned.warn(
                        "rings",
                        format_args!(
                            "virtio: queue {select} rings lie outside guest memory or are misaligned; queue disabled"
                        ),
                    );
                }
                Ok(())
            }
            28 => Ok(()),
            32 => queue.try_set_desc_table_address(GuestAddress(lo(queue.desc_table()))),
            36 => queue.try_set_desc_table_address(GuestAddress(hi(queue.desc_table()))),
            40 => queue.try_set_avail_ring_address(GuestAddress(lo(queue.avail_ring()))),
            44 => queue.try_set_avail_ring_address(GuestAddress(hi(queue.avail_ring()))),
            48 => queue.try_set_used_ring_address(GuestAddress(lo(queue.used_ring()))),
            52 => queue.try_set_used_ring_address(GuestAddress(hi(queue.used_ring()))),
            _ => Ok(()),
        };
        if let Err(e) = result {
            self.warned.warn(
                "queue-setup",
                format_args!("virtio: queue {select} setup refused ({e})"),
            );
        }
    }

    fn bar0_read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        let len = data.len() as u64;
        let within = |base: u64, size: u64| offset >= base && offset + len <= base + size;
        if within(COMMON_OFFSET, COMMON_LEN) {
            self.common_read(offset - COMMON_OFFSET, data);
        } else if within(ISR_OFFSET, 1) {
            data[0] = self.irq.take_isr();
            self.sync_interrupt_status();
        } else if within(DEVICE_OFFSET, 0x1000) {
            self.device
                .read_config((offset - DEVICE_OFFSET) as usize, data);
        } else if within(MSIX_TABLE_OFFSET as u64, self.irq.msix.table_len()) {
            self.irq
                .msix
                .table_read(offset - MSIX_TABLE_OFFSET as u64, data);
        } else if within(MSIX_PBA_OFFSET as u64, self.irq.msix.pba_len()) {
            self.irq
                .msix
                .pba_read(offset - MSIX_PBA_OFFSET as u64, data);
        }
    }

    fn bar0_write(&mut self, offset: u64, data: &[u8]) {
        let len = data.len() as u64;
        let within = |base: u64, size: u64| offset >= base && offset + len <= base + size;
        let notify_len = self.queues.len() as u64 * NOTIFY_MULTIPLIER as u64;
        if within(COMMON_OFFSET, COMMON_LEN) {
            self.common_write(offset - COMMON_OFFSET, data);
        } else if within(NOTIFY_OFFSET, notify_len) {
            let queue = (offset - NOTIFY_OFFSET) / NOTIFY_MULTIPLIER as u64;
            self.notify(queue as u16);
        } else if within(DEVICE_OFFSET, 0x1000) {
            self.device
                .write_config((offset - DEVICE_OFFSET) as usize, data);
        } else if within(MSIX_TABLE_OFFSET as u64, self.irq.msix.table_len()) {
            self.irq
                .msix
                .table_write(offset - MSIX_TABLE_OFFSET as u64, data);
        }
    }
}

impl<D: VirtioDevice + 'static> VirtioPci<D> {
    /// Starts a thread that moves external input into the guest whenever
    /// the device's [`Wakeup`] fires; it ends when the wake-up is closed.
    /// `None` if the device has no external input.
    pub fn spawn_poller(function: &Arc<Mutex<Self>>) -> Option<JoinHandle<()>> {
        let wakeup = function
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .wakeup()?;
        let function = function.clone();
        let thread = std::thread::Builder::new()
            .name("virtio-poll".into())
            .spawn(move || {
                while wakeup.wait() {
                    function.lock().unwrap_or_else(|p| p.into_inner()).poll();
                }
            });
        match thread {
            Ok(t) => Some(t),
            Err(e) => {
                log::error!("virtio: cannot start the input thread: {e}");
                None
            }
        }
    }
}

/// Adds a virtio vendor capability pointing into BAR 0.
fn add_virtio_cap(
    config: &mut ConfigSpace,
    cfg_type: u8,
    offset: u64,
    length: u64,
    notify_multiplier: Option<u32>,
) -> Result<usize, PciError> {
    let mut body = Vec::with_capacity(18);
    let cap_len = if notify_multiplier.is_some() { 20 } else { 16 };
    body.extend_from_slice(&[cap_len, cfg_type, BAR_INDEX as u8, 0, 0, 0]);
    body.extend_from_slice(&(offset as u32).to_le_bytes());
    body.extend_from_slice(&(length as u32).to_le_bytes());
    if let Some(m) = notify_multiplier {
        body.extend_from_slice(&m.to_le_bytes());
    }
    config.add_capability(CAP_VENDOR, &body, &[])
}

impl<D: VirtioDevice> PciFunction for VirtioPci<D> {
    fn config(&self) -> &ConfigSpace {
        &self.config
    }

    fn config_mut(&mut self) -> &mut ConfigSpace {
        &mut self.config
    }

    fn config_write(&mut self, offset: usize, data: &[u8]) {
        self.config.write(offset, data);
        self.irq.intx_disabled = self.config.intx_disabled();
        self.irq.msix.config_written(&self.config);
        self.irq.update_intx();
    }

    fn bar_read(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
        if bar == BAR_INDEX {
            self.bar0_read(offset, data);
        } else {
            data.fill(0xff);
        }
    }

    fn bar_write(&mut self, bar: usize, offset: u64, data: &[u8]) {
        if bar == BAR_INDEX {
            self.bar0_write(offset, data);
        }
    }

    /// MSI-X off with its table cleared, INTx as the restored command
    /// register says, then a device reset (a disk keeps its contents).
    fn pci_reset(&mut self) {
        self.irq.msix.reset();
        self.irq.intx_disabled = self.config.intx_disabled();
        self.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blk::{Block, BlockMode};
    use crate::testutil::{bar_read, disk_image, find_cap, Driver, Level, TempFile, F_VERSION_1};
    use vmm_bus::MsiMessage;

    fn block(d: &Driver) -> (VirtioPci<Block>, TempFile) {
        let image = disk_image();
        let pci = d.wrap(Block::new(image.open(), BlockMode::CopyOnWrite).unwrap());
        (pci, image)
    }

    /// Queues a 1-sector read of `sector`; returns (head, status address).
    fn queue_read(d: &mut Driver, sector: u64) -> (u16, u64) {
        let header = d.alloc(16);
        let mut h = [0u8; 16];
        h[8..16].copy_from_slice(&sector.to_le_bytes());
        d.write(header, &h);
        let data = d.alloc(512);
        let status = d.alloc(1);
        d.write(status, &[0xaa]);
        let head = d.add_chain(
            0,
            &[(header, 16, false), (data, 512, true), (status, 1, true)],
        );
        (head, status)
    }

    #[test]
    fn pci_identity_and_capabilities() {
        let d = Driver::new();
        let (pci, _) = block(&d);
        let cs = pci.config();
        assert_eq!((cs.get16(0), cs.get16(2)), (0x1af4, 0x1042));
        assert_eq!(cs.get8(8), 1, "modern devices have revision 1");
        assert_eq!(cs.get16(0x2c), 0x1af4);
        assert!(cs.get16(0x2e) >= 0x40);
        let bar = cs.bar(0).unwrap();
        assert_eq!((bar.kind, bar.size), (BarKind::Memory64, BAR_SIZE));
        // Walk the vendor capabilities: (type, bar, offset, length).
        let mut found = Vec::new();
        let mut at = cs.get8(0x34) as usize;
        while at != 0 {
            if cs.get8(at) == CAP_VENDOR {
                found.push((
                    cs.get8(at + 3),
                    cs.get8(at + 4),
                    cs.get32(at + 8),
                    cs.get32(at + 12),
                ));
                if cs.get8(at + 3) == CAP_NOTIFY {
                    assert_eq!(cs.get8(at + 2), 20);
                    assert_eq!(cs.get32(at + 16), NOTIFY_MULTIPLIER);
                }
            }
            at = cs.get8(at + 1) as usize;
        }
        assert_eq!(
            found,
            vec![
                (CAP_COMMON, 0, 0, COMMON_LEN as u32),
                (CAP_NOTIFY, 0, NOTIFY_OFFSET as u32, 4),
                (CAP_ISR, 0, ISR_OFFSET as u32, 1),
                (CAP_DEVICE, 0, DEVICE_OFFSET as u32, 0x40),
            ]
        );
        let msix = find_cap(cs, 0x11).unwrap();
        assert_eq!(
            cs.get16(msix + 2) & 0x7ff,
            1,
            "one queue + config = 2 vectors"
        );
    }

    #[test]
    fn feature_negotiation_requires_version_1() {
        let mut d = Driver::new();
        let (mut pci, _) = block(&d);
        let offered = Driver::device_features(&mut pci);
        assert_ne!(offered & F_VERSION_1, 0);
        assert_eq!(offered & 1 << 33, 0, "ACCESS_PLATFORM is not offered");
        Driver::common_write(&mut pci, 20, 1, 3);
        d.negotiate(&mut pci, offered & !F_VERSION_1);
        assert_eq!(
            Driver::common_read(&mut pci, 20, 1),
            3,
            "FEATURES_OK refused"
        );
        Driver::common_write(&mut pci, 20, 1, 0);
        Driver::common_write(&mut pci, 20, 1, 3);
        d.negotiate(&mut pci, offered | 1 << 40);
        assert_eq!(
            Driver::common_read(&mut pci, 20, 1),
            3,
            "unoffered bit refused"
        );
        Driver::common_write(&mut pci, 20, 1, 0);
        Driver::common_write(&mut pci, 20, 1, 3);
        d.negotiate(&mut pci, F_VERSION_1);
        assert_eq!(Driver::common_read(&mut pci, 20, 1), 0xb);
        // Features are frozen after FEATURES_OK.
        Driver::common_write(&mut pci, 8, 4, 0);
        Driver::common_write(&mut pci, 12, 4, 0xffff_ffff);
        assert_eq!(pci.negotiated_features(), F_VERSION_1);
        // DRIVER_OK without FEATURES_OK does not start the device.
        Driver::common_write(&mut pci, 20, 1, 0);
        Driver::common_write(&mut pci, 20, 1, 1 | 2 | 4);
        assert_eq!(Driver::common_read(&mut pci, 20, 1), 3);
    }

    #[test]
    fn queue_registers_read_back() {
        let mut d = Driver::new();
        let (mut pci, _) = block(&d);
        d.init(&mut pci, 64, true);
        Driver::common_write(&mut pci, 22, 2, 0);
        assert_eq!(Driver::common_read(&mut pci, 18, 2), 1, "num_queues");
        assert_eq!(Driver::common_read(&mut pci, 24, 2), 64);
        assert_eq!(Driver::common_read(&mut pci, 26, 2), 1);
        assert_eq!(Driver::common_read(&mut pci, 28, 2), 1);
        assert_eq!(Driver::common_read(&mut pci, 30, 2), 0, "notify offset");
        assert_eq!(Driver::common_read(&mut pci, 32, 8), d.queues[0].desc);
        assert_eq!(Driver::common_read(&mut pci, 40, 4), d.queues[0].avail);
        assert_eq!(Driver::common_read(&mut pci, 48, 8), d.queues[0].used);
        // Changes to a live queue are ignored.
        Driver::common_write(&mut pci, 24, 2, 8);
        assert_eq!(Driver::common_read(&mut pci, 24, 2), 64);
        // A queue that does not exist reads size 0.
        Driver::common_write(&mut pci, 22, 2, 5);
        assert_eq!(Driver::common_read(&mut pci, 24, 2), 0);
        // Vectors beyond the table read back as NO_VECTOR.
        Driver::common_write(&mut pci, 16, 2, 9);
        assert_eq!(Driver::common_read(&mut pci, 16, 2), NO_VECTOR as u64);
    }

    #[test]
    fn queue_interrupts_use_msix_vectors() {
        let mut d = Driver::new();
        let (mut pci, _) = block(&d);
        d.init(&mut pci, 16, true);
        queue_read(&mut d, 0);
        d.notify(&mut pci, 0);
        assert_eq!(
            *d.msi.0.lock().unwrap(),
            vec![MsiMessage {
                address: 0xfee0_0000,
                data: 0x21
            }],
            "queue 0 uses vector 1"
        );
        assert_eq!(Driver::isr(&mut pci), 0, "no ISR with MSI-X");
        // Mask vector 1: the next completion pends, unmasking delivers it.
        let ctl = MSIX_TABLE_OFFSET as u64 + 16 + 12;
        crate::testutil::bar_write(&mut pci, ctl, 4, 1);
        queue_read(&mut d, 1);
        d.notify(&mut pci, 0);
        assert_eq!(d.msi.count(), 1);
        assert_eq!(bar_read(&mut pci, MSIX_PBA_OFFSET as u64, 8), 0b10);
        crate::testutil::bar_write(&mut pci, ctl, 4, 0);
        assert_eq!(d.msi.count(), 2);
        assert_eq!(bar_read(&mut pci, MSIX_PBA_OFFSET as u64, 8), 0);
    }

    #[test]
    fn intx_fallback_with_isr_read_to_clear() {
        let mut d = Driver::new();
        let (pci, _) = block(&d);
        let line = Arc::new(Level::default());
        let mut pci = pci.with_intx(line.clone(), 17);
        assert_eq!(pci.config().get8(0x3c), 17);
        assert_eq!(pci.config().get8(0x3d), 1, "INTA#");
        d.init(&mut pci, 16, false);
        queue_read(&mut d, 0);
        d.notify(&mut pci, 0);
        assert!(line.asserted());
        assert_eq!(pci.config().get16(6) & 8, 8, "status shows the interrupt");
        assert_eq!(Driver::isr(&mut pci), 1);
        assert!(!line.asserted(), "ISR read deasserts");
        assert_eq!(Driver::isr(&mut pci), 0);
        assert_eq!(pci.config().get16(6) & 8, 0);
        // INTx disable holds the line low; enabling again raises it.
        pci.config_write(4, &(0x0406u16).to_le_bytes());
        queue_read(&mut d, 1);
        d.notify(&mut pci, 0);
        assert!(!line.asserted());
        pci.config_write(4, &(0x0006u16).to_le_bytes());
        assert!(line.asserted());
        // Enabling MSI-X takes the line down.
        d.enable_msix(&mut pci);
        assert!(!line.asserted());
        assert!(d.msi.0.lock().unwrap().is_empty());
    }

    #[test]
    fn notifications_before_driver_ok_wait_for_it() {
        let mut d = Driver::new();
        let (mut pci, _) = block(&d);
        // Before any setup: harmless.
        d.notify(&mut pci, 0);
        d.notify(&mut pci, 7);
        Driver::common_write(&mut pci, 20, 1, 3);
        d.negotiate(&mut pci, F_VERSION_1);
        d.enable_msix(&mut pci);
        let q = d.setup_queue(&mut pci, 0, 16, 1);
        d.queues = vec![q];
        let (_, status) = queue_read(&mut d, 0);
        d.notify(&mut pci, 0);
        assert_eq!(d.read(status, 1), [0xaa], "not processed before DRIVER_OK");
        Driver::common_write(&mut pci, 20, 1, 0xf);
        assert_eq!(d.read(status, 1), [0], "processed at DRIVER_OK");
        assert_eq!(d.used(0).len(), 1);
    }

    #[test]
    fn reset_mid_operation_drops_queue_state() {
        let mut d = Driver::new();
        let (mut pci, _) = block(&d);
        d.init(&mut pci, 16, true);
        queue_read(&mut d, 0);
        d.notify(&mut pci, 0);
        let (_, pending_status) = queue_read(&mut d, 1);
        // Reset with a request published but not notified.
        Driver::common_write(&mut pci, 20, 1, 0);
        assert_eq!(Driver::common_read(&mut pci, 20, 1), 0);
        assert_eq!(Driver::common_read(&mut pci, 28, 2), 0, "queue disabled");
        assert_eq!(Driver::common_read(&mut pci, 26, 2), NO_VECTOR as u64);
        assert_eq!(Driver::common_read(&mut pci, 32, 8), 0);
        assert_eq!(pci.negotiated_features(), 0);
        d.notify(&mut pci, 0);
        assert_eq!(d.read(pending_status, 1), [0xaa], "old ring is not touched");
        // A fresh start works from index 0 again.
        assert_eq!(d.init(&mut pci, 8, true) & 0xf, 0xf);
        let (head, status) = queue_read(&mut d, 2);
        d.notify(&mut pci, 0);
        assert_eq!(d.used(0), vec![(head as u32, 513)]);
        assert_eq!(d.read(status, 1), [0]);
        assert_eq!(Driver::common_read(&mut pci, 21, 1), 3, "config generation");
    }

    /// A platform reset through the root: config space and MSI-X back to
    /// power-on, the device reset; the copy-on-write overlay keeps the
    /// guest's writes (a disk keeps its contents across a reboot).
    #[test]
    fn a_platform_reset_keeps_the_disk_contents() {
        use crate::pci::{PciRoot, PciWindows, Window};
        let mut d = Driver::new();
        let (pci, _image) = block(&d);
        let pci = Arc::new(Mutex::new(pci));
        let mut root = PciRoot::new(PciWindows {
            mmio32: Window {
                base: 0xc000_0000,
                len: 0x1000_0000,
            },
            mmio64: None,
            io: None,
        })
        .unwrap();
        root.add(pci.clone()).unwrap();
        let bar = pci.lock().unwrap().config().bar_address(BAR_INDEX);
        let mut p = pci.lock().unwrap();
        d.init(&mut p, 16, true);
        assert!(p.irq.msix.enabled());
        // OUT: sector 3 becomes 0x5a bytes.
        let (hdr, data, status) = (d.alloc(16), d.alloc(512), d.alloc(1));
        d.write(hdr, &[1, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0]);
        d.write(data, &[0x5a; 512]);
        d.add_chain(
            0,
            &[(hdr, 16, false), (data, 512, false), (status, 1, true)],
        );
        d.notify(&mut p, 0);
        assert_eq!(d.read(status, 1), [0]);
        p.config_mut().set_bar_address(BAR_INDEX, 0xc800_0000);
        drop(p);

        root.reset();
        let mut p = pci.lock().unwrap();
        assert_eq!(p.status(), 0);
        assert!(!p.irq.msix.enabled(), "MSI-X off");
        assert_eq!(p.config().bar_address(BAR_INDEX), bar, "BAR at power-on");
        assert_eq!(Driver::common_read(&mut p, 28, 2), 0, "queue disabled");
        d.init(&mut p, 16, true);
        let (hdr, data, status) = (d.alloc(16), d.alloc(512), d.alloc(1));
        d.write(hdr, &[0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0]);
        d.add_chain(0, &[(hdr, 16, false), (data, 512, true), (status, 1, true)]);
        d.notify(&mut p, 0);
        assert_eq!(d.read(status, 1), [0]);
        assert_eq!(d.read(data, 512), vec![0x5a; 512], "the write survived");
    }

    #[test]
    fn event_idx_suppresses_interrupts_until_asked() {
        let mut d = Driver::new();
        d.refuse = 0;
        let (mut pci, _) = block(&d);
        d.init(&mut pci, 16, true);
        assert_ne!(pci.negotiated_features() & 1 << VIRTIO_RING_F_EVENT_IDX, 0);
        d.set_used_event(0, 0);
        queue_read(&mut d, 0);
        d.notify(&mut pci, 0);
        assert_eq!(d.msi.count(), 1, "used index passed used_event 0");
        assert_eq!(
            d.avail_event(0),
            1,
            "device asks for a kick at the next entry"
        );
        queue_read(&mut d, 1);
        d.notify(&mut pci, 0);
        assert_eq!(d.msi.count(), 1, "driver did not ask");
        d.set_used_event(0, 2);
        queue_read(&mut d, 2);
        d.notify(&mut pci, 0);
        assert_eq!(d.msi.count(), 2);
        assert_eq!(d.used(0).len(), 3);
    }
}
