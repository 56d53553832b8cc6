//! The ACPI tables of a Tern VM, built into one byte image at a given
//! guest-physical base.
//!
//! Owns: the tables' contents (RSDP v2, XSDT, FADT rev 6, FACS, DSDT, MADT,
//! MCFG) and their placement inside the image. Must not touch: guest memory
//! (the machine copies [`AcpiTables::bytes`] to [`AcpiTables::base`] and
//! passes [`AcpiTables::rsdp`] to the kernel) or the devices the tables
//! describe (their ports come in as [`PmBlock`]).
//!
//! Image layout: the RSDP at offset 0 (the base should be in 0xE0000-0xFFFFF,
//! 16-byte aligned, where an OS scans for it), the XSDT after it, then FACS
//! (64-byte aligned), DSDT, FADT, MADT and MCFG (16-byte aligned).
//!
//! `acpi_tables` builds most of it; the MADT entries it lacks (interrupt
//! source overrides, local APIC NMI, local x2APIC and x2APIC NMI) and the
//! MADT flags are written here, as is the AML IRQ descriptor.

use std::ops::Range;

use acpi_tables::aml::{
    AddressSpace, AddressSpaceCacheable, Device, EISAName, Memory32Fixed, Name, Package,
    PackageBuilder, ResourceTemplate, Scope, IO,
};
use acpi_tables::fadt::{FADTBuilder, Flags};
use acpi_tables::gas::{AccessSize, AddressSpace as GasSpace, GAS};
use acpi_tables::madt::{
    EnabledStatus, IoApic, LocalInterruptController, ProcessorLocalApic, MADT,
};
use acpi_tables::{facs::FACS, mcfg::MCFG, rsdp::Rsdp, sdt::Sdt, xsdt::XSDT, Aml, AmlSink};

use crate::layout::{self, MemoryLayout};

pub const OEM_ID: [u8; 6] = *b"TERN  ";
pub const OEM_TABLE_ID: [u8; 8] = *b"TERNVM  ";
pub const OEM_REVISION: u32 = 1;
/// The FADT's hypervisor vendor identity.
pub const HYPERVISOR_VENDOR: [u8; 8] = *b"TernVMM\0";

/// The ACPI SCI: ISA IRQ 9, level-triggered, active high (MADT override).
pub const SCI_IRQ: u8 = 9;
/// ISA IRQs of the devices the DSDT lists.
pub const COM1_IRQ: u8 = 4;
pub const RTC_IRQ: u8 = 8;
pub const KEYBOARD_IRQ: u8 = 1;
pub const COM1_PORT: u16 = 0x3f8;
/// The IOAPIC's ID (its own name space; the ID register of an IOAPIC has
/// 4 bits).
pub const IOAPIC_ID: u8 = 0;
/// Processor UIDs and APIC IDs are the vCPU index; above this an APIC ID
/// needs a local x2APIC entry.
const MAX_XAPIC_ID: u32 = 0xfe;

/// The ACPI power-management block the legacy devices implement
/// (`vmm-legacy`'s constants).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PmBlock {
    /// PM1a event block (PM1_STS, PM1_EN: 4 bytes).
    pub pm1a_evt: u16,
    /// PM1a control block (2 bytes). The device must read SCI_EN as set:
    /// there is no SMI command port, so the OS finds ACPI mode enabled.
    pub pm1a_cnt: u16,
    /// PM timer (4 bytes).
    pub pm_tmr: u16,
    /// The PM timer counts 32 bits (else 24).
    pub pm_tmr_32bit: bool,
    /// SLP_TYP value that means S5 (soft off).
    pub slp_typ_s5: u8,
    /// Reset register (an I/O port) and the value that resets.
    pub reset_port: u16,
    pub reset_value: u8,
}

/// What the tables describe.
#[derive(Clone, Copy, Debug)]
pub struct AcpiConfig<'a> {
    pub layout: &'a MemoryLayout,
    pub cpus: u32,
    /// Describe the CPUs with local x2APIC entries instead of local APIC
    /// entries (the machine decides, with CPUID's x2APIC bit).
    pub x2apic: bool,
    pub pm: PmBlock,
    /// List COM1 (16550 at 0x3f8, IRQ 4) in the DSDT.
    pub com1: bool,
}

/// The tables as one image for guest-physical `base`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcpiTables {
    pub base: u64,
    /// The RSDP's address (`boot_params.acpi_rsdp_addr`).
    pub rsdp: u64,
    pub bytes: Vec<u8>,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AcpiError {
    #[error("the ACPI tables need {size} bytes but {room} are reserved for them; fewer vCPUs make them smaller")]
    TooLarge { size: usize, room: u64 },
    #[error("ACPI tables for {0} vCPUs: give the VM 1 to {max} vCPUs", max = crate::config::MAX_CPUS)]
    BadCpuCount(u32),
    #[error("the ACPI tables' area {0:#x?} is not 16-byte aligned below 4 GiB; the machine must place it so")]
    BadPlace(Range<u64>),
}

/// The GSI of PCI slot `slot`'s INTx `pin` (0 = INTA): IOAPIC pins 16..23,
/// rotated by slot so neighbouring devices do not share (the DSDT's _PRT).
pub fn pci_intx_gsi(slot: u8, pin: u8) -> u32 {
    16 + (u32::from(slot) + u32::from(pin)) % 8
}

/// Builds the tables for the guest-physical area `area` (e.g.
/// [`layout::ACPI_TABLES`]).
pub fn build(config: &AcpiConfig, area: Range<u64>) -> Result<AcpiTables, AcpiError> {
    if config.cpus == 0 || config.cpus > crate::config::MAX_CPUS {
        return Err(AcpiError::BadCpuCount(config.cpus));
    }
    if !area.start.is_multiple_of(16) || area.end > 1 << 32 || area.end <= area.start {
        return Err(AcpiError::BadPlace(area));
    }
    let mut image = Image {
        base: area.start,
        bytes: vec![0; HEADER_ROOM],
    };
    let facs = image.place(64, &FACS::new());
    let dsdt = image.place(16, &dsdt(config));
    let fadt = image.place(16, &fadt(&config.pm, dsdt, facs));
    let madt = image.place(16, &Bytes(madt(config)));
    let mcfg = image.place(16, &mcfg());

    let mut xsdt = XSDT::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    for table in [fadt, madt, mcfg] {
        xsdt.add_entry(table);
    }
    let xsdt_at = image.write(XSDT_OFFSET, &xsdt);
    image.write(0, &Rsdp::new(OEM_ID, xsdt_at));

    let room = area.end - area.start;
    if image.bytes.len() as u64 > room {
        return Err(AcpiError::TooLarge {
            size: image.bytes.len(),
            room,
        });
    }
    Ok(AcpiTables {
        base: area.start,
        rsdp: area.start,
        bytes: image.bytes,
    })
}

/// The RSDP (36 bytes) and the XSDT (36 + 3 * 8) fit before the first table.
const XSDT_OFFSET: usize = 0x30;
const HEADER_ROOM: usize = 0x80;

struct Image {
    base: u64,
    bytes: Vec<u8>,
}

impl Image {
    /// Appends `table` at the next multiple of `align`; its address.
    fn place(&mut self, align: usize, table: &dyn Aml) -> u64 {
        self.bytes
            .resize(self.bytes.len().next_multiple_of(align), 0);
        let offset = self.bytes.len();
        table.to_aml_bytes(&mut self.bytes);
        self.base + offset as u64
    }

    /// Writes `table` at `offset` inside the header room; its address.
    fn write(&mut self, offset: usize, table: &dyn Aml) -> u64 {
        let mut bytes = Vec::new();
        table.to_aml_bytes(&mut bytes);
        assert!(offset + bytes.len() <= HEADER_ROOM, "RSDP and XSDT fit");
        self.bytes[offset..offset + bytes.len()].copy_from_slice(&bytes);
        self.base + offset as u64
    }
}

/// Raw bytes as an [`Aml`] object.
struct Bytes(Vec<u8>);

impl Aml for Bytes {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        sink.vec(&self.0);
    }
}

/// An I/O-port register block of `bytes` accessed `access` bytes at a time.
fn io_gas(port: u16, bytes: u8, access: u8) -> GAS {
    let access = match access {
        1 => AccessSize::ByteAccess,
        2 => AccessSize::WordAccess,
        _ => AccessSize::DwordAccess,
    };
    GAS::new(GasSpace::SystemIo, bytes * 8, 0, access, port.into())
}

/// IA-PC boot architecture flags: legacy devices, an 8042, no VGA.
const BOOT_ARCH_LEGACY_DEVICES: u16 = 1 << 0;
const BOOT_ARCH_8042: u16 = 1 << 1;
const BOOT_ARCH_VGA_NOT_PRESENT: u16 = 1 << 2;

fn fadt(pm: &PmBlock, dsdt: u64, facs: u64) -> impl Aml {
    let mut f = FADTBuilder::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION)
        .flag(Flags::Wbinvd)
        .flag(Flags::ProcC1)
        // The power button is a fixed feature (PWR_BUTTON clear); there is
        // no sleep button and no RTC wake.
        .flag(Flags::SlpButton)
        .flag(Flags::FixRtc)
        .flag(Flags::ResetRegSup);
    if pm.pm_tmr_32bit {
        f = f.flag(Flags::TmrValExt);
    }
    // Addresses are below 4 GiB: the 32-bit FACS pointer alone (the spec
    // wants X_FIRMWARE_CTRL zero then), DSDT in both fields.
    f.firmware_ctrl = (facs as u32).into();
    f.dsdt = (dsdt as u32).into();
    f.x_dsdt = dsdt.into();
    f.sci_int = u16::from(SCI_IRQ).into();
    // No SMI command port: the platform is always in ACPI mode.
    f.pm1a_evt_blk = u32::from(pm.pm1a_evt).into();
    f.pm1a_cnt_blk = u32::from(pm.pm1a_cnt).into();
    f.pm_tmr_blk = u32::from(pm.pm_tmr).into();
    f.pm1_evt_len = 4;
    f.pm1_cnt_len = 2;
    f.pm_tmr_len = 4;
    // The event block is two 16-bit registers (status, enable).
    f.x_pm1a_evt_blk = io_gas(pm.pm1a_evt, 4, 2);
    f.x_pm1a_cnt_blk = io_gas(pm.pm1a_cnt, 2, 2);
    f.x_pm_tmr_blk = io_gas(pm.pm_tmr, 4, 4);
    // C2/C3 unsupported.
    f.p_lvl2_lat = 101.into();
    f.p_lvl3_lat = 1001.into();
    f.iapc_boot_arch =
        (BOOT_ARCH_LEGACY_DEVICES | BOOT_ARCH_8042 | BOOT_ARCH_VGA_NOT_PRESENT).into();
    f.reset_reg = io_gas(pm.reset_port, 1, 1);
    f.reset_value = pm.reset_value;
    f.hypervisor_vendor_identity = u64::from_le_bytes(HYPERVISOR_VENDOR).into();
    f.finalize()
}

// MADT entry types and flags the crate does not provide.
/// ACPI 6.x MADT (the crate writes 1; x2APIC entries need 3 or later).
const MADT_REVISION: u8 = 5;
const MADT_PCAT_COMPAT: u32 = 1;
const MADT_ISO: u8 = 2;
const MADT_LAPIC_NMI: u8 = 4;
const MADT_X2APIC: u8 = 9;
const MADT_X2APIC_NMI: u8 = 0xa;
/// MPS INTI flags: polarity (bits 0-1) and trigger mode (bits 2-3).
const INTI_ACTIVE_HIGH: u16 = 0b01;
const INTI_EDGE: u16 = 0b01 << 2;
const INTI_LEVEL: u16 = 0b11 << 2;

fn madt(config: &AcpiConfig) -> Vec<u8> {
    let mut madt = MADT::new(
        OEM_ID,
        OEM_TABLE_ID,
        OEM_REVISION,
        LocalInterruptController::Address(layout::LAPIC.start as u32),
    );
    let x2apic = config.x2apic || config.cpus - 1 > MAX_XAPIC_ID;
    if !x2apic {
        for id in 0..config.cpus as u8 {
            madt.add_structure(ProcessorLocalApic::new(id, id, EnabledStatus::Enabled));
        }
    }
    madt.add_structure(IoApic::new(IOAPIC_ID, layout::IOAPIC.start as u32, 0));
    let mut bytes = Vec::new();
    madt.to_aml_bytes(&mut bytes);

    if x2apic {
        for id in 0..config.cpus {
            // type, length, reserved(2), x2APIC ID, flags (enabled), UID
            bytes.extend([MADT_X2APIC, 16, 0, 0]);
            bytes.extend(id.to_le_bytes());
            bytes.extend(1u32.to_le_bytes());
            bytes.extend(id.to_le_bytes());
        }
    }
    // type, length, bus (ISA), source IRQ, GSI, flags
    let iso = |irq: u8, gsi: u32, flags: u16| {
        let mut e = vec![MADT_ISO, 10, 0, irq];
        e.extend(gsi.to_le_bytes());
        e.extend(flags.to_le_bytes());
        e
    };
    bytes.extend(iso(0, 2, 0)); // the PIT's IRQ 0 is IOAPIC pin 2
    bytes.extend(iso(SCI_IRQ, SCI_IRQ.into(), INTI_ACTIVE_HIGH | INTI_LEVEL));
    // NMI on LINT1 of every processor, edge, active high.
    let nmi_flags = (INTI_ACTIVE_HIGH | INTI_EDGE).to_le_bytes();
    if x2apic {
        // type, length, flags, UID (all), LINT#, reserved(3)
        bytes.extend([MADT_X2APIC_NMI, 12, nmi_flags[0], nmi_flags[1]]);
        bytes.extend(u32::MAX.to_le_bytes());
        bytes.extend([1, 0, 0, 0]);
    } else {
        // type, length, UID (0xff: all), flags, LINT#
        bytes.extend([MADT_LAPIC_NMI, 6, 0xff, nmi_flags[0], nmi_flags[1], 1]);
    }
    bytes[8] = MADT_REVISION;
    bytes[40..44].copy_from_slice(&MADT_PCAT_COMPAT.to_le_bytes());
    finish_table(&mut bytes);
    bytes
}

/// Sets a table's length and checksum fields after its bytes changed.
fn finish_table(bytes: &mut [u8]) {
    let length = bytes.len() as u32;
    bytes[4..8].copy_from_slice(&length.to_le_bytes());
    bytes[9] = 0;
    let sum = bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b));
    bytes[9] = sum.wrapping_neg();
}

fn mcfg() -> MCFG {
    let mut mcfg = MCFG::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    mcfg.add_ecam(layout::ECAM.start, 0, 0, 0);
    mcfg
}

/// An ISA IRQ descriptor without flags (edge, active high, exclusive).
struct IrqNoFlags(u8);

impl Aml for IrqNoFlags {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        sink.byte(0x22); // small resource: IRQ format, 2 bytes
        sink.word(1 << self.0);
    }
}

fn dsdt(config: &AcpiConfig) -> Sdt {
    let mut body = Vec::new();
    let pci0 = PciRoot::new(config.layout);
    let com1 = isa_device("COM1", "PNP0501", 1, &[(COM1_PORT, 8)], COM1_IRQ);
    let rtc = isa_device("RTC_", "PNP0B00", 0, &[(0x70, 2)], RTC_IRQ);
    let kbd = isa_device("KBD_", "PNP0303", 0, &[(0x60, 1), (0x64, 1)], KEYBOARD_IRQ);
    let motherboard = motherboard_resources(&config.pm);
    let mut devices: Vec<&dyn Aml> = vec![&pci0, &rtc, &kbd, &motherboard];
    if config.com1 {
        devices.push(&com1);
    }
    Scope::new("\\_SB_".into(), devices).to_aml_bytes(&mut body);
    let s5 = config.pm.slp_typ_s5;
    Name::new("\\_S5_".into(), &Package::new(vec![&s5, &s5, &0u8, &0u8])).to_aml_bytes(&mut body);

    // Revision 2: 64-bit AML integers.
    let mut dsdt = Sdt::new(*b"DSDT", 36, 2, OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    dsdt.append_slice(&body);
    dsdt
}

/// `Device(NAME)` with `_HID`, `_UID`, I/O ports `(base, count)` and one IRQ.
fn isa_device(name: &str, hid: &str, uid: u8, ports: &[(u16, u8)], irq: u8) -> Bytes {
    let ports: Vec<IO> = ports
        .iter()
        .map(|&(base, count)| IO::new(base, base, 1, count))
        .collect();
    let irq = IrqNoFlags(irq);
    let mut resources: Vec<&dyn Aml> = ports.iter().map(|p| p as &dyn Aml).collect();
    resources.push(&irq);
    let crs = ResourceTemplate::new(resources);
    let hid = EISAName::new(hid);
    let mut bytes = Vec::new();
    Device::new(
        name.into(),
        vec![
            &Name::new("_HID".into(), &hid),
            &Name::new("_UID".into(), &uid),
            &Name::new("_CRS".into(), &crs),
        ],
    )
    .to_aml_bytes(&mut bytes);
    Bytes(bytes)
}

/// PNP0C02: ranges the OS must leave alone (ECAM, the PM block), so it
/// trusts the MCFG.
fn motherboard_resources(pm: &PmBlock) -> Bytes {
    let ecam = Memory32Fixed::new(
        true,
        layout::ECAM.start as u32,
        (layout::ECAM.end - layout::ECAM.start) as u32,
    );
    let evt = IO::new(pm.pm1a_evt, pm.pm1a_evt, 1, 4);
    let cnt = IO::new(pm.pm1a_cnt, pm.pm1a_cnt, 1, 2);
    let tmr = IO::new(pm.pm_tmr, pm.pm_tmr, 1, 4);
    let crs = ResourceTemplate::new(vec![&ecam, &evt, &cnt, &tmr]);
    let hid = EISAName::new("PNP0C02");
    let mut bytes = Vec::new();
    Device::new(
        "MBRD".into(),
        vec![
            &Name::new("_HID".into(), &hid),
            &Name::new("_UID".into(), &0u8),
            &Name::new("_CRS".into(), &crs),
        ],
    )
    .to_aml_bytes(&mut bytes);
    Bytes(bytes)
}

/// `\_SB.PCI0`: the PCI Express host bridge of segment 0, bus 0.
struct PciRoot {
    mmio32: Range<u64>,
    mmio64: Range<u64>,
}

impl PciRoot {
    fn new(layout: &MemoryLayout) -> Self {
        PciRoot {
            mmio32: layout::PCI_MMIO32,
            mmio64: layout.pci_mmio64(),
        }
    }
}

impl Aml for PciRoot {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        let bus = AddressSpace::<u16>::new_bus_number(0, 0);
        let config_ports = IO::new(0xcf8, 0xcf8, 1, 8);
        // Legacy and PCI I/O ports, around CF8-CFF.
        let io_low = AddressSpace::<u16>::new_io(0x0000, 0x0cf7, None);
        let io_high = AddressSpace::<u16>::new_io(0x0d00, 0xffff, None);
        let mmio32 = AddressSpace::<u32>::new_memory(
            AddressSpaceCacheable::NotCacheable,
            true,
            self.mmio32.start as u32,
            (self.mmio32.end - 1) as u32,
            None,
        );
        let mmio64 = AddressSpace::<u64>::new_memory(
            AddressSpaceCacheable::NotCacheable,
            true,
            self.mmio64.start,
            self.mmio64.end - 1,
            None,
        );
        let crs = ResourceTemplate::new(vec![
            &bus,
            &config_ports,
            &io_low,
            &io_high,
            &mmio32,
            &mmio64,
        ]);

        // _PRT: slot 1..31, INTA..INTD -> GSI (source 0 = global GSI).
        let routes: Vec<(u32, u8, u32)> = (1..32u8)
            .flat_map(|slot| {
                (0..4u8)
                    .map(move |pin| (u32::from(slot) << 16 | 0xffff, pin, pci_intx_gsi(slot, pin)))
            })
            .collect();
        let mut prt = PackageBuilder::new();
        for (address, pin, gsi) in &routes {
            prt.add_element(&Package::new(vec![address, pin, &0u8, gsi]));
        }

        let hid = EISAName::new("PNP0A08");
        let cid = EISAName::new("PNP0A03");
        Device::new(
            "PCI0".into(),
            vec![
                &Name::new("_HID".into(), &hid),
                &Name::new("_CID".into(), &cid),
                &Name::new("_SEG".into(), &0u8),
                &Name::new("_BBN".into(), &0u8),
                &Name::new("_UID".into(), &0u8),
                &Name::new("_CRS".into(), &crs),
                &Name::new("_PRT".into(), &prt),
            ],
        )
        .to_aml_bytes(sink);
    }
}

#[cfg(test)]
mod tests;
