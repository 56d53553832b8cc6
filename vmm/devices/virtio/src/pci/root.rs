//! The PCI root complex: host bridge at 00:00.0, functions on bus 0, the
//! two configuration mechanisms (CF8/CFC ports and ECAM) and the MMIO/I/O
//! windows where BARs live.
//!
//! Owns: device numbering, BAR pre-assignment from the machine's windows,
//! routing of window accesses by each function's *current* BARs (the guest
//! may move them) and the config-address register. Must not touch: config
//! registers themselves (each function's [`ConfigSpace`]).
//!
//! Locking: config accesses are serialized by one root lock, then take the
//! function's lock; BAR accesses copy the route out of the route table
//! before locking the function, so the two paths cannot deadlock.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use vmm_bus::BusDevice;

use super::config::{BarKind, ConfigSpace, PciIds, COMMAND_IO, COMMAND_MEMORY};
use super::{PciError, PciFunction};
use crate::log_once::LogOnce;

/// Port of CONFIG_ADDRESS; insert [`PciRoot::config_address`] here with
/// length 1 (so a reset register at 0xcf9 can coexist) or 4.
pub const CONFIG_ADDRESS_PORT: u64 = 0xcf8;
/// Port of CONFIG_DATA; insert [`PciRoot::config_data`] here, length 4.
pub const CONFIG_DATA_PORT: u64 = 0xcfc;
/// Bytes of ECAM for bus 0 (32 devices x 8 functions x 4 KiB).
pub const ECAM_SIZE: u64 = 1 << 20;

const CONFIG_ENABLE: u32 = 1 << 31;
const MAX_DEVICES: usize = 32;

/// A guest-physical (or port) range the machine reserves for BARs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub base: u64,
    pub len: u64,
}

impl Window {
    fn end(&self) -> u64 {
        self.base + self.len
    }
}

/// Where the root may place BARs. Prefetchable 64-bit BARs go to `mmio64`
/// when there is one; other memory BARs go to `mmio32`; I/O BARs to `io`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciWindows {
    /// Below 4 GiB (the PCI hole).
    pub mmio32: Window,
    /// Above the end of RAM.
    pub mmio64: Option<Window>,
    /// Port I/O (none needed by virtio).
    pub io: Option<Window>,
}

pub type SharedFunction = Arc<Mutex<dyn PciFunction>>;

#[derive(Clone, Copy, Debug)]
struct Route {
    base: u64,
    size: u64,
    io: bool,
    device: usize,
    bar: usize,
}

/// Host bridge and bus 0.
pub struct PciRoot {
    windows: PciWindows,
    devices: Vec<SharedFunction>,
    /// Each function's configuration space as `add` left it, for a reset.
    power_on: Vec<ConfigSpace>,
    next_mmio32: u64,
    next_mmio64: u64,
    next_io: u64,
    config_address: AtomicU32,
    config_lock: Mutex<()>,
    routes: RwLock<Vec<Route>>,
}

fn lock(f: &SharedFunction) -> MutexGuard<'_, dyn PciFunction + 'static> {
    f.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl PciRoot {
    /// A root with the host bridge at 00:00.0 and nothing else.
    pub fn new(windows: PciWindows) -> Result<Self, PciError> {
        let all = [Some(windows.mmio32), windows.mmio64, windows.io];
        for w in all.into_iter().flatten() {
            if w.len == 0 || w.base.checked_add(w.len).is_none() {
                return Err(PciError::BadWindow {
                    base: w.base,
                    len: w.len,
                });
            }
        }
        let bridge = HostBridge::new();
        Ok(PciRoot {
            windows,
            power_on: vec![bridge.config().clone()],
            devices: vec![Arc::new(Mutex::new(bridge))],
            next_mmio32: windows.mmio32.base,
            next_mmio64: windows.mmio64.map_or(0, |w| w.base),
            next_io: windows.io.map_or(0, |w| w.base),
            config_address: AtomicU32::new(0),
            config_lock: Mutex::new(()),
            routes: RwLock::new(Vec::new()),
        })
    }

    pub fn windows(&self) -> PciWindows {
        self.windows
    }

    /// The device number [`add`](Self::add) will give next (for INTx
    /// routing decided before the function is built).
    pub fn next_device(&self) -> u8 {
        self.devices.len() as u8
    }

    /// Puts `function` at the next free device number of bus 0, assigns its
    /// BARs from the windows and enables decoding, as firmware would.
    pub fn add(&mut self, function: SharedFunction) -> Result<u8, PciError> {
        let device = self.devices.len();
        if device >= MAX_DEVICES {
            return Err(PciError::BusFull);
        }
        {
            let mut f = lock(&function);
            let (mut next32, mut next64, mut next_io) =
                (self.next_mmio32, self.next_mmio64, self.next_io);
            let mut placed = Vec::new();
            let mut command = 0;
            for index in 0..6 {
                let Some(bar) = f.config().bar(index) else {
                    continue;
                };
                let (cursor, window, name) = match bar.kind {
                    BarKind::Io => (&mut next_io, self.windows.io, "I/O"),
                    BarKind::Memory64 if bar.prefetchable && self.windows.mmio64.is_some() => {
                        (&mut next64, self.windows.mmio64, "64-bit MMIO")
                    }
                    _ => (&mut next32, Some(self.windows.mmio32), "32-bit MMIO"),
                };
                let full = PciError::WindowFull {
                    index,
                    size: bar.size,
                    window: name,
                };
                let window = window.ok_or(full.clone())?;
                let base = cursor.next_multiple_of(bar.size);
                if base
                    .checked_add(bar.size)
                    .is_none_or(|end| end > window.end())
                {
                    return Err(full);
                }
                *cursor = base + bar.size;
                placed.push((index, base));
                command |= if bar.kind == BarKind::Io {
                    COMMAND_IO
                } else {
                    COMMAND_MEMORY
                };
            }
            let cs = f.config_mut();
            for (index, base) in placed {
                cs.set_bar_address(index, base);
            }
            cs.set_command(cs.command() | command);
            self.power_on.push(cs.clone());
            (self.next_mmio32, self.next_mmio64, self.next_io) = (next32, next64, next_io);
        }
        self.devices.push(function);
        self.update_routes(device);
        Ok(device as u8)
    }

    /// A platform reset: CONFIG_ADDRESS cleared, every function's
    /// configuration space back to what [`add`](Self::add) left (BARs at
    /// their first addresses, decoding on), then the function's own reset
    /// ([`PciFunction::pci_reset`]).
    pub fn reset(&self) {
        self.config_address.store(0, Ordering::SeqCst);
        let _serial = self.config_lock.lock().unwrap_or_else(|p| p.into_inner());
        for (device, (function, config)) in self.devices.iter().zip(&self.power_on).enumerate() {
            {
                let mut f = lock(function);
                *f.config_mut() = config.clone();
                f.pci_reset();
            }
            self.update_routes(device);
        }
    }

    /// The function at `device` (0 is the host bridge).
    pub fn function(&self, device: u8) -> Option<&SharedFunction> {
        self.devices.get(device as usize)
    }

    /// Reads config space of 00:`device`.`function`; nothing there reads
    /// all ones.
    pub fn config_read(&self, device: u8, function: u8, offset: usize, data: &mut [u8]) {
        data.fill(0xff);
        let Some(f) = self.devices.get(device as usize).filter(|_| function == 0) else {
            return;
        };
        let _serial = self.config_lock.lock().unwrap_or_else(|p| p.into_inner());
        lock(f).config_read(offset, data);
    }

    /// Writes config space of 00:`device`.`function`, then re-routes its BARs.
    pub fn config_write(&self, device: u8, function: u8, offset: usize, data: &[u8]) {
        let Some(f) = self.devices.get(device as usize).filter(|_| function == 0) else {
            return;
        };
        let _serial = self.config_lock.lock().unwrap_or_else(|p| p.into_inner());
        lock(f).config_write(offset, data);
        self.update_routes(device as usize);
    }

    fn update_routes(&self, device: usize) {
        let bars = lock(&self.devices[device]).config().decoded_bars();
        let mut routes = self.routes.write().unwrap_or_else(|p| p.into_inner());
        routes.retain(|r| r.device != device);
        routes.extend(bars.into_iter().map(|b| Route {
            base: b.base,
            size: b.size,
            io: b.kind == BarKind::Io,
            device,
            bar: b.index,
        }));
    }

    /// The function, BAR and offset decoding `address` now.
    fn route(&self, address: u64, io: bool) -> Option<(SharedFunction, usize, u64)> {
        let routes = self.routes.read().unwrap_or_else(|p| p.into_inner());
        let r = routes
            .iter()
            .find(|r| r.io == io && address >= r.base && address - r.base < r.size)?;
        Some((self.devices[r.device].clone(), r.bar, address - r.base))
    }

    fn bar_read(&self, address: u64, io: bool, data: &mut [u8]) -> bool {
        match self.route(address, io) {
            Some((f, bar, offset)) => {
                lock(&f).bar_read(bar, offset, data);
                true
            }
            None => false,
        }
    }

    fn bar_write(&self, address: u64, io: bool, data: &[u8]) -> bool {
        match self.route(address, io) {
            Some((f, bar, offset)) => {
                lock(&f).bar_write(bar, offset, data);
                true
            }
            None => false,
        }
    }

    /// Bus device for port 0xcf8 (CONFIG_ADDRESS).
    pub fn config_address(self: &Arc<Self>) -> Arc<Mutex<ConfigAddressPort>> {
        Arc::new(Mutex::new(ConfigAddressPort(self.clone())))
    }

    /// Bus device for ports 0xcfc-0xcff (CONFIG_DATA).
    pub fn config_data(self: &Arc<Self>) -> Arc<Mutex<ConfigDataPort>> {
        Arc::new(Mutex::new(ConfigDataPort(self.clone())))
    }

    /// Bus device for the ECAM range of bus 0 (insert it at the MCFG base
    /// with length [`ECAM_SIZE`]).
    pub fn ecam(self: &Arc<Self>) -> Arc<Mutex<Ecam>> {
        Arc::new(Mutex::new(Ecam(self.clone())))
    }

    /// Bus device for a BAR window; insert it at `window.base` with length
    /// `window.len` on the MMIO bus, or on the port bus for the I/O window.
    pub fn bar_window(self: &Arc<Self>, window: Window, io: bool) -> Arc<Mutex<PciBarWindow>> {
        Arc::new(Mutex::new(PciBarWindow {
            root: self.clone(),
            window,
            io,
            warned: LogOnce::default(),
        }))
    }
}

/// CONFIG_ADDRESS (0xcf8): only 32-bit accesses reach the register, as on
/// real chipsets; narrower ones read all ones and are dropped.
pub struct ConfigAddressPort(Arc<PciRoot>);

impl BusDevice for ConfigAddressPort {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0xff);
        if offset == 0 && data.len() == 4 {
            let value = self.0.config_address.load(Ordering::Relaxed);
            data.copy_from_slice(&value.to_le_bytes());
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset == 0 && data.len() == 4 {
            let value = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
            self.0
                .config_address
                .store(value & 0x80ff_fffc, Ordering::Relaxed);
        }
    }
}

/// CONFIG_DATA (0xcfc-0xcff): the dword CONFIG_ADDRESS selects; byte and
/// word accesses at 0xcfd.. reach the matching bytes.
pub struct ConfigDataPort(Arc<PciRoot>);

impl ConfigDataPort {
    /// (device, function, offset, bytes inside the dword) or None if the
    /// access targets nothing.
    fn target(&self, offset: u64, len: usize) -> Option<(u8, u8, usize, usize)> {
        let address = self.0.config_address.load(Ordering::Relaxed);
        let bus = (address >> 16) as u8;
        if address & CONFIG_ENABLE == 0 || bus != 0 || offset >= 4 {
            return None;
        }
        let device = (address >> 11 & 0x1f) as u8;
        let function = (address >> 8 & 0x7) as u8;
        let register = (address & 0xfc) as usize + offset as usize;
        Some((device, function, register, len.min(4 - offset as usize)))
    }
}

impl BusDevice for ConfigDataPort {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0xff);
        if let Some((d, f, reg, n)) = self.target(offset, data.len()) {
            self.0.config_read(d, f, reg, &mut data[..n]);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let Some((d, f, reg, n)) = self.target(offset, data.len()) {
            self.0.config_write(d, f, reg, &data[..n]);
        }
    }
}

/// ECAM (memory-mapped config) for bus 0: offset = device << 15 |
/// function << 12 | register.
pub struct Ecam(Arc<PciRoot>);

fn ecam_target(offset: u64, len: usize) -> Option<(u8, u8, usize, usize)> {
    if offset >= ECAM_SIZE {
        return None;
    }
    let register = (offset & 0xfff) as usize;
    Some((
        (offset >> 15 & 0x1f) as u8,
        (offset >> 12 & 0x7) as u8,
        register,
        len.min(0x1000 - register),
    ))
}

impl BusDevice for Ecam {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0xff);
        if let Some((d, f, reg, n)) = ecam_target(offset, data.len()) {
            self.0.config_read(d, f, reg, &mut data[..n]);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let Some((d, f, reg, n)) = ecam_target(offset, data.len()) {
            self.0.config_write(d, f, reg, &data[..n]);
        }
    }
}

/// A window of BAR space: accesses go to whichever function's current BAR
/// covers them (with decoding enabled); others read all ones.
pub struct PciBarWindow {
    root: Arc<PciRoot>,
    window: Window,
    io: bool,
    warned: LogOnce,
}

impl BusDevice for PciBarWindow {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let address = self.window.base.wrapping_add(offset);
        if !self.root.bar_read(address, self.io, data) {
            data.fill(0xff);
            self.warned.warn(
                "unclaimed",
                format_args!("PCI: read of {address:#x} that no BAR decodes"),
            );
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let address = self.window.base.wrapping_add(offset);
        if !self.root.bar_write(address, self.io, data) {
            self.warned.warn(
                "unclaimed",
                format_args!("PCI: write to {address:#x} that no BAR decodes"),
            );
        }
    }
}

/// The host bridge at 00:00.0 (Intel Q35 MCH IDs, which Linux treats as a
/// plain host bridge).
pub struct HostBridge {
    config: ConfigSpace,
}

impl HostBridge {
    pub fn new() -> Self {
        HostBridge {
            config: ConfigSpace::new(PciIds {
                vendor: 0x8086,
                device: 0x29c0,
                revision: 0,
                class: (0x06, 0x00, 0x00),
                subsystem_vendor: 0x1af4,
                subsystem: 0x1100,
            }),
        }
    }
}

impl Default for HostBridge {
    fn default() -> Self {
        Self::new()
    }
}

impl PciFunction for HostBridge {
    fn config(&self) -> &ConfigSpace {
        &self.config
    }
    fn config_mut(&mut self) -> &mut ConfigSpace {
        &mut self.config
    }
    fn bar_read(&mut self, _bar: usize, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }
    fn bar_write(&mut self, _bar: usize, _offset: u64, _data: &[u8]) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::Bar;

    /// A function that records BAR accesses and answers with the offset.
    struct Probe {
        config: ConfigSpace,
        writes: Vec<(usize, u64, Vec<u8>)>,
    }

    impl Probe {
        fn new(bars: &[(usize, BarKind, u64, bool)]) -> Arc<Mutex<Probe>> {
            let mut config = ConfigSpace::new(PciIds {
                vendor: 0x1af4,
                device: 0x1042,
                revision: 1,
                class: (1, 0, 0),
                subsystem_vendor: 0x1af4,
                subsystem: 0x42,
            });
            for &(index, kind, size, prefetchable) in bars {
                config
                    .add_bar(
                        index,
                        Bar {
                            kind,
                            size,
                            prefetchable,
                        },
                    )
                    .unwrap();
            }
            config.set_interrupt(1, 16);
            Arc::new(Mutex::new(Probe {
                config,
                writes: Vec::new(),
            }))
        }
    }

    impl PciFunction for Probe {
        fn config(&self) -> &ConfigSpace {
            &self.config
        }
        fn config_mut(&mut self) -> &mut ConfigSpace {
            &mut self.config
        }
        fn bar_read(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
            data.fill(0);
            data[0] = bar as u8;
            if data.len() > 1 {
                data[1] = offset as u8;
            }
        }
        fn bar_write(&mut self, bar: usize, offset: u64, data: &[u8]) {
            self.writes.push((bar, offset, data.to_vec()));
        }
    }

    const WINDOWS: PciWindows = PciWindows {
        mmio32: Window {
            base: 0xc000_0000,
            len: 0x1000_0000,
        },
        mmio64: Some(Window {
            base: 0x2_0000_0000,
            len: 0x1_0000_0000,
        }),
        io: Some(Window {
            base: 0xc000,
            len: 0x1000,
        }),
    };

    fn root_with_probe() -> (Arc<PciRoot>, Arc<Mutex<Probe>>) {
        let mut root = PciRoot::new(WINDOWS).unwrap();
        let probe = Probe::new(&[
            (0, BarKind::Memory32, 0x1000, false),
            (2, BarKind::Memory64, 0x4000, true),
            (4, BarKind::Io, 0x20, false),
        ]);
        assert_eq!(root.next_device(), 1);
        assert_eq!(root.add(probe.clone()).unwrap(), 1);
        (Arc::new(root), probe)
    }

    fn cf8_read(root: &Arc<PciRoot>, dev: u8, reg: u32, port: u64, len: usize) -> u64 {
        let a = 0x8000_0000 | (dev as u32) << 11 | reg;
        root.config_address()
            .lock()
            .unwrap()
            .write(0, &a.to_le_bytes());
        let mut b = [0u8; 8];
        root.config_data()
            .lock()
            .unwrap()
            .read(port - CONFIG_DATA_PORT, &mut b[..len]);
        u64::from_le_bytes(b)
    }

    fn ecam_read(root: &Arc<PciRoot>, dev: u8, reg: u64, len: usize) -> u64 {
        let mut b = [0u8; 8];
        root.ecam()
            .lock()
            .unwrap()
            .read((dev as u64) << 15 | reg, &mut b[..len]);
        u64::from_le_bytes(b)
    }

    #[test]
    fn host_bridge_sits_at_00_00_0() {
        let (root, _) = root_with_probe();
        assert_eq!(cf8_read(&root, 0, 0, 0xcfc, 4), 0x29c0_8086);
        assert_eq!(cf8_read(&root, 0, 8, 0xcfc, 4) >> 8, 0x06_00_00);
    }

    #[test]
    fn cf8_and_ecam_agree_on_every_register() {
        let (root, _) = root_with_probe();
        for dev in 0..4u8 {
            for reg in (0..256).step_by(4) {
                let via_ports = cf8_read(&root, dev, reg as u32, 0xcfc, 4);
                assert_eq!(via_ports, ecam_read(&root, dev, reg, 4), "{dev}:{reg:#x}");
                for k in 0..4u64 {
                    let byte = cf8_read(&root, dev, reg as u32, 0xcfc + k, 1);
                    assert_eq!(byte, via_ports >> (8 * k) & 0xff);
                    assert_eq!(byte, ecam_read(&root, dev, reg + k, 1));
                }
                let word = cf8_read(&root, dev, reg as u32, 0xcfe, 2);
                assert_eq!(word, via_ports >> 16);
                assert_eq!(word, ecam_read(&root, dev, reg + 2, 2));
            }
        }
        // An access running past 0xcff only gets the bytes inside the dword.
        assert_eq!(cf8_read(&root, 0, 0, 0xcfd, 4), 0xff29_c080);
    }

    #[test]
    fn unclaimed_config_reads_all_ones() {
        let (root, _) = root_with_probe();
        assert_eq!(cf8_read(&root, 7, 0, 0xcfc, 4), 0xffff_ffff, "empty slot");
        assert_eq!(ecam_read(&root, 31, 0, 4), 0xffff_ffff);
        assert_eq!(ecam_read(&root, 1, 1 << 12, 4), 0xffff_ffff, "function 1");
        // Bus 1 through CF8.
        let addr = root.config_address();
        addr.lock()
            .unwrap()
            .write(0, &(0x8001_0000u32).to_le_bytes());
        let mut b = [0u8; 4];
        root.config_data().lock().unwrap().read(0, &mut b);
        assert_eq!(b, [0xff; 4]);
        // Enable bit clear.
        addr.lock().unwrap().write(0, &0u32.to_le_bytes());
        root.config_data().lock().unwrap().read(0, &mut b);
        assert_eq!(b, [0xff; 4]);
        // CONFIG_ADDRESS reads back; narrow accesses do not reach it.
        addr.lock().unwrap().write(0, &0x8000_0803u32.to_le_bytes());
        addr.lock().unwrap().write(0, &[0x55]);
        addr.lock().unwrap().read(0, &mut b);
        assert_eq!(u32::from_le_bytes(b), 0x8000_0800);
        let mut one = [0u8];
        addr.lock().unwrap().read(0, &mut one);
        assert_eq!(one, [0xff]);
    }

    #[test]
    fn bars_are_preassigned_from_the_windows() {
        let (root, probe) = root_with_probe();
        let p = probe.lock().unwrap();
        assert_eq!(p.config.bar_address(0), Some(0xc000_0000));
        assert_eq!(p.config.bar_address(2), Some(0x2_0000_0000));
        assert_eq!(p.config.bar_address(4), Some(0xc000));
        assert_eq!(
            p.config.command() & 3,
            3,
            "decoding enabled as firmware would"
        );
        drop(p);
        // The next device's BARs follow, aligned.
        let mut root = Arc::try_unwrap(root).ok().unwrap();
        let second = Probe::new(&[(0, BarKind::Memory32, 0x4000, false)]);
        root.add(second.clone()).unwrap();
        assert_eq!(
            second.lock().unwrap().config.bar_address(0),
            Some(0xc000_4000)
        );
        // Non-prefetchable 64-bit BARs stay below 4 GiB.
        let third = Probe::new(&[(0, BarKind::Memory64, 0x1000, false)]);
        root.add(third.clone()).unwrap();
        assert_eq!(
            third.lock().unwrap().config.bar_address(0),
            Some(0xc000_8000)
        );
        let huge = Probe::new(&[(0, BarKind::Memory32, 0x1000_0000, false)]);
        assert!(matches!(root.add(huge), Err(PciError::WindowFull { .. })));
        let no_io = PciWindows {
            io: None,
            ..WINDOWS
        };
        let mut small = PciRoot::new(no_io).unwrap();
        let io = Probe::new(&[(0, BarKind::Io, 0x10, false)]);
        assert!(matches!(
            small.add(io),
            Err(PciError::WindowFull { window: "I/O", .. })
        ));
        for _ in 1..32 {
            small.add(Probe::new(&[])).unwrap();
        }
        assert_eq!(small.add(Probe::new(&[])), Err(PciError::BusFull));
        assert!(PciRoot::new(PciWindows {
            mmio32: Window { base: 1, len: 0 },
            ..WINDOWS
        })
        .is_err());
    }

    #[test]
    fn bar_window_follows_the_guest_moving_bars() {
        let (root, probe) = root_with_probe();
        let win32 = root.bar_window(WINDOWS.mmio32, false);
        let win64 = root.bar_window(WINDOWS.mmio64.unwrap(), false);
        let io = root.bar_window(WINDOWS.io.unwrap(), true);
        let mut b = [0u8; 2];
        win32.lock().unwrap().read(0x10, &mut b);
        assert_eq!(b, [0, 0x10], "BAR 0 offset 0x10");
        win64.lock().unwrap().read(0x3ff, &mut b);
        assert_eq!(b, [2, 0xff]);
        io.lock().unwrap().read(0x1f, &mut b);
        assert_eq!(b, [4, 0x1f]);
        io.lock().unwrap().read(0x20, &mut b);
        assert_eq!(b, [0xff, 0xff], "past the I/O BAR");
        win32.lock().unwrap().write(0x1004, &[1, 2]);
        assert!(
            probe.lock().unwrap().writes.is_empty(),
            "nothing at 0xc000_1004"
        );

        // The guest moves BAR 0 to 0xc100_0000 through ECAM.
        let ecam = root.ecam();
        ecam.lock()
            .unwrap()
            .write(1 << 15 | 0x10, &0xc100_0000u32.to_le_bytes());
        win32.lock().unwrap().read(0x10, &mut b);
        assert_eq!(b, [0xff, 0xff], "old address no longer decodes");
        win32.lock().unwrap().write(0x100_0008, &[7]);
        assert_eq!(probe.lock().unwrap().writes, vec![(0, 8, vec![7])]);

        // Memory decoding off: nothing decodes; I/O still does.
        ecam.lock().unwrap().write(1 << 15 | 4, &[0x01, 0]);
        win32.lock().unwrap().read(0x100_0000, &mut b);
        assert_eq!(b, [0xff, 0xff]);
        win64.lock().unwrap().read(0, &mut b);
        assert_eq!(b, [0xff, 0xff]);
        io.lock().unwrap().read(0, &mut b);
        assert_eq!(b, [4, 0]);
    }
}
