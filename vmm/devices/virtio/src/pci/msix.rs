//! MSI-X: the capability, the vector table and the pending-bit array.
//!
//! Owns: the table and PBA contents, per-vector and function masking, and
//! sending unmasked vectors through the machine's [`vmm_bus::MsiSink`].
//! Must not touch: where the table lives in the function's BARs beyond the
//! offsets it is given, or what a vector means (the function decides).

use vmm_bus::{Msi, MsiMessage};

use super::config::ConfigSpace;
use super::PciError;

pub const CAPABILITY_ID: u8 = 0x11;
/// Bytes per table entry: address low, address high, data, vector control.
pub const ENTRY_SIZE: u64 = 16;
/// Largest table (the capability's size field has 11 bits).
pub const MAX_VECTORS: u16 = 2048;

const CONTROL_ENABLE: u16 = 1 << 15;
const CONTROL_FUNCTION_MASK: u16 = 1 << 14;
const ENTRY_MASKED: u32 = 1;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Entry {
    address: u64,
    data: u32,
    control: u32,
}

/// The MSI-X state of one function.
pub struct Msix {
    entries: Vec<Entry>,
    pending: Vec<u64>,
    capability: usize,
    enabled: bool,
    function_masked: bool,
    sink: Msi,
}

impl Msix {
    /// `vectors` entries, all masked, with the table at `table_offset` and
    /// the PBA at `pba_offset` of BAR `bar`; adds the capability to `config`.
    pub fn new(
        config: &mut ConfigSpace,
        vectors: u16,
        bar: u8,
        table_offset: u32,
        pba_offset: u32,
        sink: Msi,
    ) -> Result<Self, PciError> {
        if vectors == 0 || vectors > MAX_VECTORS || bar > 5 || (table_offset | pba_offset) & 7 != 0
        {
            return Err(PciError::Msix { vectors });
        }
        let mut body = [0u8; 10];
        body[0..2].copy_from_slice(&(vectors - 1).to_le_bytes());
        body[2..6].copy_from_slice(&(table_offset | bar as u32).to_le_bytes());
        body[6..10].copy_from_slice(&(pba_offset | bar as u32).to_le_bytes());
        let writable = (CONTROL_ENABLE | CONTROL_FUNCTION_MASK).to_le_bytes();
        let capability = config.add_capability(CAPABILITY_ID, &body, &writable)?;
        Ok(Msix {
            entries: vec![
                Entry {
                    control: ENTRY_MASKED,
                    ..Entry::default()
                };
                vectors as usize
            ],
            pending: vec![0; (vectors as usize).div_ceil(64)],
            capability,
            enabled: false,
            function_masked: false,
            sink,
        })
    }

    pub fn vectors(&self) -> u16 {
        self.entries.len() as u16
    }

    /// Bytes of the vector table.
    pub fn table_len(&self) -> u64 {
        self.entries.len() as u64 * ENTRY_SIZE
    }

    /// Bytes of the pending-bit array.
    pub fn pba_len(&self) -> u64 {
        self.pending.len() as u64 * 8
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// A function reset: every entry masked and cleared, nothing pending,
    /// MSI-X off (the capability's control word is the config space's).
    pub fn reset(&mut self) {
        self.entries.fill(Entry {
            control: ENTRY_MASKED,
            ..Entry::default()
        });
        self.pending.fill(0);
        self.enabled = false;
        self.function_masked = false;
    }

    /// Picks up the capability's enable and function-mask bits after a
    /// config write; vectors that became unmasked fire if pending.
    pub fn config_written(&mut self, config: &ConfigSpace) {
        let control = config.get16(self.capability + 2);
        self.enabled = control & CONTROL_ENABLE != 0;
        self.function_masked = control & CONTROL_FUNCTION_MASK != 0;
        self.deliver_pending();
    }

    /// Signals `vector`: sent now, or marked pending while masked. Returns
    /// false if MSI-X is off or `vector` does not exist (use INTx or drop).
    pub fn notify(&mut self, vector: u16) -> bool {
        let v = vector as usize;
        if !self.enabled || v >= self.entries.len() {
            return false;
        }
        if self.masked(v) {
            self.pending[v / 64] |= 1 << (v % 64);
        } else {
            self.send(v);
        }
        true
    }

    pub fn is_pending(&self, vector: u16) -> bool {
        let v = vector as usize;
        v < self.entries.len() && self.pending[v / 64] & (1 << (v % 64)) != 0
    }

    fn masked(&self, v: usize) -> bool {
        self.function_masked || self.entries[v].control & ENTRY_MASKED != 0
    }

    fn send(&self, v: usize) {
        let e = self.entries[v];
        self.sink.send(MsiMessage {
            address: e.address,
            data: e.data,
        });
    }

    fn deliver_pending(&mut self) {
        if !self.enabled || self.function_masked {
            return;
        }
        for v in 0..self.entries.len() {
            if self.is_pending(v as u16) && !self.masked(v) {
                self.pending[v / 64] &= !(1 << (v % 64));
                self.send(v);
            }
        }
    }

    /// Reads the vector table (`offset` relative to its start); only
    /// aligned 4- and 8-byte accesses return data, others read 0.
    pub fn table_read(&self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        let Some((entry, field)) = self.locate(offset, data.len()) else {
            return;
        };
        let e = &self.entries[entry];
        let fields = [
            e.address as u32,
            (e.address >> 32) as u32,
            e.data,
            e.control,
        ];
        let first = field / 4;
        for (i, chunk) in data.chunks_mut(4).enumerate() {
            chunk.copy_from_slice(&fields[first + i].to_le_bytes());
        }
    }

    /// Writes the vector table; unmasking an entry fires it if pending.
    pub fn table_write(&mut self, offset: u64, data: &[u8]) {
        let Some((entry, field)) = self.locate(offset, data.len()) else {
            return;
        };
        for (i, chunk) in data.chunks(4).enumerate() {
            let value = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            let e = &mut self.entries[entry];
            match field / 4 + i {
                0 => e.address = e.address & !0xffff_ffff | value as u64,
                1 => e.address = e.address & 0xffff_ffff | (value as u64) << 32,
                2 => e.data = value,
                _ => e.control = value & ENTRY_MASKED,
            }
        }
        self.deliver_pending();
    }

    /// Reads the pending-bit array (read-only to the guest).
    pub fn pba_read(&self, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            let byte = offset as usize + i;
            *b = self
                .pending
                .get(byte / 8)
                .map_or(0, |q| (q >> (8 * (byte % 8))) as u8);
        }
    }

    /// The entry and byte-in-entry of an aligned 4/8-byte table access.
    fn locate(&self, offset: u64, len: usize) -> Option<(usize, usize)> {
        let entry = usize::try_from(offset / ENTRY_SIZE).ok()?;
        let field = (offset % ENTRY_SIZE) as usize;
        let ok = matches!(len, 4 | 8) && field.is_multiple_of(len) && entry < self.entries.len();
        ok.then_some((entry, field))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::config::PciIds;
    use std::sync::{Arc, Mutex};
    use vmm_bus::MsiSink;

    #[derive(Default)]
    pub struct Recorder(Mutex<Vec<MsiMessage>>);
    impl MsiSink for Recorder {
        fn send(&self, msg: MsiMessage) {
            self.0.lock().unwrap().push(msg);
        }
    }

    fn setup(vectors: u16) -> (ConfigSpace, Msix, Arc<Recorder>) {
        let mut cs = ConfigSpace::new(PciIds {
            vendor: 0x1af4,
            device: 0x1042,
            revision: 1,
            class: (1, 0, 0),
            subsystem_vendor: 0x1af4,
            subsystem: 0x40,
        });
        let rec = Arc::new(Recorder::default());
        let msix = Msix::new(&mut cs, vectors, 2, 0x4000, 0x5000, rec.clone()).unwrap();
        (cs, msix, rec)
    }

    fn program(msix: &mut Msix, v: u64, address: u64, data: u32) {
        msix.table_write(v * 16, &address.to_le_bytes());
        msix.table_write(v * 16 + 8, &data.to_le_bytes());
    }

    fn set_control(cs: &mut ConfigSpace, msix: &mut Msix, control: u16) {
        cs.write(msix.capability + 2, &control.to_le_bytes());
        msix.config_written(cs);
    }

    #[test]
    fn capability_describes_table_and_pba() {
        let (cs, msix, _) = setup(3);
        let cap = cs.get8(0x34) as usize;
        assert_eq!(cap, msix.capability);
        assert_eq!(cs.get8(cap), CAPABILITY_ID);
        assert_eq!(cs.get16(cap + 2), 2, "table size is N-1");
        assert_eq!(cs.get32(cap + 4), 0x4000 | 2);
        assert_eq!(cs.get32(cap + 8), 0x5000 | 2);
        assert_eq!(cs.get16(0x06) & 0x10, 0x10, "capability list bit");
        // Table size and BIR are read-only.
        let mut cs2 = cs.clone();
        cs2.write(cap + 2, &0xffffu16.to_le_bytes());
        assert_eq!(cs2.get16(cap + 2), 0xc002);
        cs2.write(cap + 4, &0u32.to_le_bytes());
        assert_eq!(cs2.get32(cap + 4), 0x4002);
    }

    #[test]
    fn vectors_start_masked_and_pend_until_unmasked() {
        let (mut cs, mut msix, rec) = setup(2);
        assert!(!msix.notify(0), "MSI-X disabled: caller falls back to INTx");
        set_control(&mut cs, &mut msix, CONTROL_ENABLE);
        program(&mut msix, 1, 0xfee0_1000, 0x41);
        let mut ctl = [0u8; 4];
        msix.table_read(16 + 12, &mut ctl);
        assert_eq!(u32::from_le_bytes(ctl), 1, "masked at reset");
        assert!(msix.notify(1));
        assert!(rec.0.lock().unwrap().is_empty());
        assert!(msix.is_pending(1));
        let mut pba = [0u8; 8];
        msix.pba_read(0, &mut pba);
        assert_eq!(u64::from_le_bytes(pba), 0b10);
        msix.table_write(16 + 12, &0u32.to_le_bytes());
        assert_eq!(
            *rec.0.lock().unwrap(),
            vec![MsiMessage {
                address: 0xfee0_1000,
                data: 0x41
            }]
        );
        assert!(!msix.is_pending(1));
        assert!(msix.notify(1));
        assert_eq!(
            rec.0.lock().unwrap().len(),
            2,
            "unmasked vectors go at once"
        );
        assert!(!msix.notify(2), "no such vector");
    }

    #[test]
    fn function_mask_holds_all_vectors() {
        let (mut cs, mut msix, rec) = setup(2);
        set_control(&mut cs, &mut msix, CONTROL_ENABLE | CONTROL_FUNCTION_MASK);
        program(&mut msix, 0, 0xfee0_0000, 0x30);
        msix.table_write(12, &0u32.to_le_bytes());
        assert!(msix.notify(0));
        assert!(rec.0.lock().unwrap().is_empty());
        assert!(msix.is_pending(0));
        set_control(&mut cs, &mut msix, CONTROL_ENABLE);
        assert_eq!(rec.0.lock().unwrap().len(), 1);
        assert!(!msix.is_pending(0));
    }

    #[test]
    fn odd_table_accesses_are_ignored() {
        let (_, mut msix, _) = setup(1);
        msix.table_write(8, &[0x55]);
        msix.table_write(2, &[1, 2, 3, 4]);
        msix.table_write(16, &[1, 2, 3, 4]);
        let mut d = [0xaau8; 4];
        msix.table_read(8, &mut d);
        assert_eq!(d, [0; 4]);
        let mut q = [0u8; 8];
        msix.table_write(0, &0x1234_5678_9abc_def0u64.to_le_bytes());
        msix.table_read(0, &mut q);
        assert_eq!(u64::from_le_bytes(q), 0x1234_5678_9abc_def0);
        let mut one = [0xaau8; 1];
        msix.table_read(0, &mut one);
        assert_eq!(one, [0]);
    }
}
