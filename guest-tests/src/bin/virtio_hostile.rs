//! Hostile: garbage virtqueues against the PC machine's virtio-blk. The guest finds
//! the disk through PCI configuration space (CF8/CFC), reads sector 0 properly, then
//! posts descriptor chains that point outside RAM and onto device pages, loop, run off
//! the table, claim 4 GiB lengths, nest and break indirect tables, fill the available
//! ring with heads that do not exist and jump its index; moves the rings themselves
//! outside RAM; pokes queues that do not exist; and rings the doorbell thousands of
//! times after each act. The VMM must keep running: afterwards a device reset and the
//! same read give the same bytes, and the guest reports PASS.
#![no_std]
#![no_main]

use guest_tests::pci::{self, common, Virtio, NEEDS_RESET, VIRTIO_BLK, VIRTIO_VENDOR};
use guest_tests::virtq::{self, descriptor, indirect, INDIRECT, NEXT, QUEUE_SIZE, WRITE};
use guest_tests::{check, fail, guest, println};

guest!(main);

/// Where the device's BAR is mapped (virtual, 2 MiB, unused below 4 GiB).
const WINDOW: u64 = 0x4000_0000;
const NOTIFIES: u32 = 1000;
const NO_MSIX: u16 = 0xffff;

/// Offers chain `head` (moving the available index by `step`) and rings the doorbell
/// `NOTIFIES` times.
fn attack(dev: &Virtio, what: &str, head: u16, step: u16) {
    virtq::offer(head, step);
    let doorbell = dev.doorbell(0);
    for _ in 0..NOTIFIES {
        pci::ring(doorbell, 0);
    }
    println!(
        "{what}: survived {NOTIFIES} notifies (used idx {}, status {:#x})",
        virtq::used_idx(),
        dev.read8(common::DEVICE_STATUS)
    );
}

fn main() {
    let Some(function) = pci::find(VIRTIO_VENDOR, VIRTIO_BLK) else {
        fail!("no virtio-blk device on PCI bus 0 (give the VM a [[disk]])");
    };
    let Some(dev) = Virtio::new(function, WINDOW) else {
        fail!(
            "virtio-blk at 00:{:02x}.0 lacks its capabilities",
            function.device
        );
    };
    println!(
        "virtio-blk at 00:{:02x}.0, {} queue(s)",
        function.device,
        dev.read16(common::NUM_QUEUES)
    );
    virtq::start(&dev, NO_MSIX);
    let (status, expected) = virtq::read_sector0(&dev);
    check!(
        status == 0,
        "a valid read of sector 0 answered status {status}"
    );

    let b = virtq::buffers();
    // Data buffers outside RAM: far above it, in the PCI hole, on the local APIC page,
    // wrapping around the address space.
    for (addr, what) in [
        (1u64 << 45, "data buffer far above RAM"),
        (0xe000_0000, "data buffer in the PCI hole"),
        (0xfee0_0000, "data buffer on the local APIC page"),
        (u64::MAX - 255, "data buffer wrapping around"),
    ] {
        descriptor(3, b.header, 16, NEXT, 4);
        descriptor(4, addr, 512, NEXT | WRITE, 5);
        descriptor(5, b.status, 1, WRITE, 0);
        attack(&dev, what, 3, 1);
    }
    descriptor(3, 0xffff_ffff_0000, 16, NEXT, 5);
    attack(&dev, "request header outside RAM", 3, 1);
    // Chains that never end or run off the table.
    descriptor(5, b.header, 16, NEXT, 6);
    descriptor(6, b.data, 512, NEXT | WRITE, 5);
    attack(&dev, "a two-descriptor loop", 5, 1);
    descriptor(7, b.header, 16, NEXT, 7);
    attack(&dev, "a descriptor that is its own next", 7, 1);
    descriptor(8, b.header, 16, NEXT, 0xffff);
    attack(&dev, "next index 0xffff", 8, 1);
    descriptor(9, b.header, 16, NEXT, 10);
    descriptor(10, b.data, u32::MAX, NEXT | WRITE, 11);
    descriptor(11, b.status, 1, WRITE, 0);
    attack(&dev, "a 4 GiB data length", 9, 1);
    descriptor(12, b.header, 16, 0, 0);
    attack(&dev, "no status byte", 12, 1);
    // Indirect tables: outside RAM, odd length, nested, looping.
    descriptor(13, 1 << 44, 64, INDIRECT, 0);
    attack(&dev, "indirect table far above RAM", 13, 1);
    descriptor(13, b.indirect, 17, INDIRECT, 0);
    attack(&dev, "indirect table of 17 bytes", 13, 1);
    indirect(0, b.indirect, 64, INDIRECT, 0);
    descriptor(13, b.indirect, 64, INDIRECT, 0);
    attack(&dev, "an indirect table in an indirect table", 13, 1);
    indirect(0, b.header, 16, NEXT, 1);
    indirect(1, b.data, 512, NEXT | WRITE, 0);
    descriptor(13, b.indirect, 32, INDIRECT, 0);
    attack(&dev, "a loop inside an indirect table", 13, 1);
    // The available ring: a head that does not exist, an index far ahead.
    attack(&dev, "head 0x8000 in the available ring", 0x8000, 1);
    attack(&dev, "available index 0x8000 ahead", 0, 0x8000);
    let status = dev.read8(common::DEVICE_STATUS);
    println!(
        "device status after the chains: {status:#x}{}",
        if status & NEEDS_RESET != 0 {
            " (needs reset)"
        } else {
            ""
        }
    );

    // Rings outside RAM, queues and registers that do not exist.
    check!(
        dev.reset_and_negotiate(),
        "the device refused VERSION_1 after a reset"
    );
    dev.set_queue(0, QUEUE_SIZE, 1 << 46, 0xffff_ffff_f000, 0xe000_0000);
    dev.write8(
        common::DEVICE_STATUS,
        dev.read8(common::DEVICE_STATUS) | pci::DRIVER_OK,
    );
    let doorbell = dev.doorbell(0);
    for _ in 0..NOTIFIES {
        pci::ring(doorbell, 0);
    }
    println!("rings outside RAM: survived {NOTIFIES} notifies");
    dev.write16(common::QUEUE_SELECT, 0x7fff);
    dev.write16(common::QUEUE_SIZE, 3);
    dev.write64(common::QUEUE_DESC, u64::MAX);
    dev.write16(common::QUEUE_ENABLE, 1);
    for queue in [1, 7, 0x7fff, 0xffff] {
        let doorbell = dev.doorbell(queue);
        for _ in 0..NOTIFIES / 10 {
            pci::ring(doorbell, queue);
        }
    }
    dev.write16(common::QUEUE_SELECT, 0);
    dev.write16(common::QUEUE_SIZE, 3);
    dev.write16(common::QUEUE_MSIX_VECTOR, 0xfff0);
    println!("queues that do not exist and bad queue sizes: survived");

    // A reset brings the device back: the same read gives the same bytes.
    virtq::start(&dev, NO_MSIX);
    let (status, again) = virtq::read_sector0(&dev);
    check!(
        status == 0,
        "after a reset, a valid read of sector 0 answered status {status}"
    );
    check!(
        again == expected,
        "after a reset, sector 0 reads differently"
    );
    println!("after a reset the disk reads sector 0 as before");
}
