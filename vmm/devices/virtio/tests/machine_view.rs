//! The machine's view: a root with a virtio-blk and a virtio-net on real
//! `vmm_bus::Bus`es, driven only through port and MMIO accesses as a
//! guest would (enumeration, BAR move, registers through the window).

use std::sync::{Arc, Mutex};

use vm_memory::{GuestAddress, GuestMemoryMmap};
use vmm_bus::{Bus, MsiMessage, MsiSink};
use vmm_virtio::pci::{
    PciRoot, PciWindows, Window, CONFIG_ADDRESS_PORT, CONFIG_DATA_PORT, ECAM_SIZE,
};
use vmm_virtio::{Block, BlockMode, Net, Switch, VirtioPci};

struct NoMsi;
impl MsiSink for NoMsi {
    fn send(&self, _: MsiMessage) {}
}

const ECAM_BASE: u64 = 0xe000_0000;
const MMIO32: Window = Window {
    base: 0xc000_0000,
    len: 0x1000_0000,
};
const MMIO64: Window = Window {
    base: 0x1_8000_0000,
    len: 0x1_0000_0000,
};

struct Machine {
    io: Bus,
    mmio: Bus,
    _image: std::path::PathBuf,
}

impl Drop for Machine {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self._image);
    }
}

fn machine() -> Machine {
    let mem = Arc::new(GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap());
    let image = std::env::temp_dir().join(format!("vmm-virtio-machine-{}", std::process::id()));
    std::fs::write(&image, vec![0u8; 8 * 512]).unwrap();
    let windows = PciWindows {
        mmio32: MMIO32,
        mmio64: Some(MMIO64),
        io: None,
    };
    let mut root = PciRoot::new(windows).unwrap();
    let msi = Arc::new(NoMsi);
    let file = std::fs::File::open(&image).unwrap();
    let blk = VirtioPci::new(
        Block::new(file, BlockMode::ReadOnly).unwrap(),
        mem.clone(),
        msi.clone(),
    )
    .unwrap();
    assert_eq!(root.add(Arc::new(Mutex::new(blk))).unwrap(), 1);
    let switch = Switch::new();
    let net = VirtioPci::new(
        Net::new([2, 0, 0, 0, 0, 1], Box::new(switch.port())),
        mem,
        msi,
    )
    .unwrap();
    assert_eq!(root.add(Arc::new(Mutex::new(net))).unwrap(), 2);
    let root = Arc::new(root);
    let mut io = Bus::new();
    io.insert(CONFIG_ADDRESS_PORT, 1, root.config_address())
        .unwrap();
    io.insert(CONFIG_DATA_PORT, 4, root.config_data()).unwrap();
    let mut mmio = Bus::new();
    mmio.insert(ECAM_BASE, ECAM_SIZE, root.ecam()).unwrap();
    for w in [MMIO32, MMIO64] {
        mmio.insert(w.base, w.len, root.bar_window(w, false))
            .unwrap();
    }
    Machine {
        io,
        mmio,
        _image: image,
    }
}

impl Machine {
    fn cf8(&self, dev: u64, reg: u64) -> u32 {
        let a = 0x8000_0000u32 | (dev as u32) << 11 | reg as u32;
        assert!(self.io.write(0xcf8, &a.to_le_bytes()));
        let mut b = [0u8; 4];
        assert!(self.io.read(0xcfc, &mut b));
        u32::from_le_bytes(b)
    }

    fn mmio_read(&self, addr: u64, len: usize) -> u64 {
        let mut b = [0u8; 8];
        assert!(self.mmio.read(addr, &mut b[..len]));
        u64::from_le_bytes(b)
    }

    fn mmio_write(&self, addr: u64, len: usize, v: u64) {
        assert!(self.mmio.write(addr, &v.to_le_bytes()[..len]));
    }

    fn bar0(&self, dev: u64) -> u64 {
        let ecam = ECAM_BASE + (dev << 15);
        (self.mmio_read(ecam + 0x14, 4) << 32) | (self.mmio_read(ecam + 0x10, 4) & !0xf)
    }
}

#[test]
fn guest_enumerates_and_reaches_registers_through_the_buses() {
    let m = machine();
    assert_eq!(m.cf8(0, 0), 0x29c0_8086, "host bridge");
    assert_eq!(m.cf8(1, 0), 0x1042_1af4, "virtio-blk");
    assert_eq!(m.cf8(2, 0), 0x1041_1af4, "virtio-net");
    assert_eq!(m.cf8(3, 0), 0xffff_ffff, "empty slot");
    let blk = m.bar0(1);
    let net = m.bar0(2);
    assert_eq!(blk, MMIO64.base, "prefetchable 64-bit BARs go above RAM");
    assert_eq!(net, MMIO64.base + 0x8000);
    assert_eq!(m.mmio_read(blk + 18, 2), 1, "blk has one queue");
    assert_eq!(m.mmio_read(net + 18, 2), 2, "net has two");
    assert_eq!(m.mmio_read(blk + 0x2000, 8), 8, "capacity in sectors");
    assert_eq!(m.mmio_read(net + 0x2000 + 5, 1), 1, "last MAC byte");

    // The guest moves the blk BAR into the 32-bit window.
    let ecam = ECAM_BASE + (1 << 15);
    m.mmio_write(ecam + 4, 2, 0); // decoding off while moving
    m.mmio_write(ecam + 0x10, 4, MMIO32.base + 0x10_0000);
    m.mmio_write(ecam + 0x14, 4, 0);
    m.mmio_write(ecam + 4, 2, 0x6);
    let moved = MMIO32.base + 0x10_0000;
    assert_eq!(m.bar0(1), moved);
    assert_eq!(m.mmio_read(moved + 0x2000, 8), 8);
    assert_eq!(m.mmio_read(blk + 0x2000, 8), u64::MAX, "old place is empty");
    // Status written through the window reads back.
    m.mmio_write(moved + 20, 1, 1);
    assert_eq!(m.mmio_read(moved + 20, 1), 1);
    assert_eq!(m.mmio_read(net + 20, 1), 0, "other device untouched");
}
