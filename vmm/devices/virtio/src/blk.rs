//! virtio-blk over a disk image that is never written: read-only, or
//! copy-on-write into an in-memory overlay of 512-byte sectors.
//!
//! Owns: request parsing (IN, OUT, FLUSH, GET_ID), the overlay and the
//! device configuration (capacity, seg_max, blk_size). Must not touch: the
//! image file's contents (opened by the machine; only positional reads).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;

use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_RO, VIRTIO_BLK_F_SEG_MAX,
    VIRTIO_BLK_ID_BYTES, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP,
    VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
};
use virtio_queue::{DescriptorChain, Reader, Writer};
use vm_memory::GuestMemoryMmap;

use crate::device::{read_config_bytes, Queues, VirtioDevice};

pub const SECTOR_SIZE: u64 = 512;
/// Virtio device type of a block device.
pub const DEVICE_TYPE: u16 = 2;
pub const QUEUE_SIZE: u16 = 256;
/// Bytes moved between the image and guest memory per step.
const CHUNK: usize = 64 * 1024;
const HEADER_LEN: usize = 16;

type Sector = [u8; SECTOR_SIZE as usize];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockMode {
    /// Writes fail with an I/O error; the driver sees a read-only disk.
    ReadOnly,
    /// Writes land in memory; reads see them; the image is untouched.
    CopyOnWrite,
}

#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("cannot read the disk image's size: {0}")]
    Metadata(std::io::Error),
}

/// A virtio block device.
pub struct Block {
    image: File,
    mode: BlockMode,
    sectors: u64,
    overlay: BTreeMap<u64, Box<Sector>>,
    id: [u8; VIRTIO_BLK_ID_BYTES as usize],
    config: [u8; 0x40],
}

enum Status {
    Ok,
    IoError,
    Unsupported,
}

impl Status {
    fn byte(self) -> u8 {
        (match self {
            Status::Ok => VIRTIO_BLK_S_OK,
            Status::IoError => VIRTIO_BLK_S_IOERR,
            Status::Unsupported => VIRTIO_BLK_S_UNSUPP,
        }) as u8
    }
}

impl Block {
    /// A disk of the image's whole sectors (a trailing partial sector is
    /// not visible).
    pub fn new(image: File, mode: BlockMode) -> Result<Self, BlockError> {
        let len = image.metadata().map_err(BlockError::Metadata)?.len();
        let sectors = len / SECTOR_SIZE;
        let mut config = [0u8; 0x40];
        config[0..8].copy_from_slice(&sectors.to_le_bytes());
        config[12..16].copy_from_slice(&(QUEUE_SIZE as u32 - 2).to_le_bytes());
        config[20..24].copy_from_slice(&(SECTOR_SIZE as u32).to_le_bytes());
        let mut id = [0u8; VIRTIO_BLK_ID_BYTES as usize];
        id[..9].copy_from_slice(b"tern-disk");
        Ok(Block {
            image,
            mode,
            sectors,
            overlay: BTreeMap::new(),
            id,
            config,
        })
    }

    /// Sets the serial the driver reads with GET_ID (first 20 bytes used).
    pub fn with_id(mut self, id: &str) -> Self {
        self.id = [0; VIRTIO_BLK_ID_BYTES as usize];
        let n = id.len().min(self.id.len());
        self.id[..n].copy_from_slice(&id.as_bytes()[..n]);
        self
    }

    pub fn capacity_sectors(&self) -> u64 {
        self.sectors
    }

    /// Sectors written by the guest so far (copy-on-write mode).
    pub fn overlay_sectors(&self) -> usize {
        self.overlay.len()
    }

    /// Handles one request chain; returns the bytes written to the guest.
    fn request(&mut self, chain: DescriptorChain<&GuestMemoryMmap>, q: &mut Queues) -> u32 {
        let mem = q.memory();
        let (mut reader, mut writer) = match (chain.clone().reader(mem), chain.writer(mem)) {
            (Ok(r), Ok(w)) => (r, w),
            _ => {
                q.warn(
                    "blk-chain",
                    format_args!("virtio-blk: request with buffers outside guest memory; dropped"),
                );
                return 0;
            }
        };
        let mut header = [0u8; HEADER_LEN];
        let writable = writer.available_bytes();
        if reader.read_exact(&mut header).is_err() || writable == 0 {
            q.warn(
                "blk-header",
                format_args!("virtio-blk: request without header or status byte; dropped"),
            );
            return 0;
        }
        let Ok(mut status_writer) = writer.split_at(writable - 1) else {
            return 0;
        };
        let kind = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let mut sector_bytes = [0u8; 8];
        sector_bytes.copy_from_slice(&header[8..16]);
        let sector = u64::from_le_bytes(sector_bytes);
        let status = match kind {
            VIRTIO_BLK_T_IN => self.read_to_guest(sector, &mut writer),
            VIRTIO_BLK_T_OUT if self.mode == BlockMode::ReadOnly => Status::IoError,
            VIRTIO_BLK_T_OUT => self.write_from_guest(sector, &mut reader),
            VIRTIO_BLK_T_FLUSH => Status::Ok,
            VIRTIO_BLK_T_GET_ID => {
                let n = writer.available_bytes().min(self.id.len());
                match writer.write_all(&self.id[..n]) {
                    Ok(()) => Status::Ok,
                    Err(_) => Status::IoError,
                }
            }
            _ => Status::Unsupported,
        };
        if let Status::IoError = status {
            q.warn(
                "blk-ioerr",
                format_args!(
                    "virtio-blk: request type {kind} at sector {sector} failed (out of range, unaligned length or image error)"
                ),
            );
        }
        let status_ok = status_writer.write_all(&[status.byte()]).is_ok();
        (writer.bytes_written() + status_ok as usize) as u32
    }

    /// The sector range of a transfer of `len` bytes, if it is whole
    /// sectors inside the disk.
    fn range(&self, sector: u64, len: usize) -> Option<u64> {
        let len = len as u64;
        let count = len / SECTOR_SIZE;
        (len.is_multiple_of(SECTOR_SIZE) && sector.checked_add(count)? <= self.sectors)
            .then_some(count)
    }

    fn read_to_guest(&mut self, sector: u64, writer: &mut Writer) -> Status {
        let Some(count) = self.range(sector, writer.available_bytes()) else {
            return Status::IoError;
        };
        let mut buf = vec![0u8; CHUNK.min((count * SECTOR_SIZE) as usize)];
        let mut next = sector;
        let end = sector + count;
        while next < end {
            let n = (end - next).min(buf.len() as u64 / SECTOR_SIZE);
            let chunk = &mut buf[..(n * SECTOR_SIZE) as usize];
            if self.read_sectors(next, chunk).is_err() || writer.write_all(chunk).is_err() {
                return Status::IoError;
            }
            next += n;
        }
        Status::Ok
    }

    /// Image contents with the overlay merged in.
    fn read_sectors(&self, first: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.image.read_exact_at(buf, first * SECTOR_SIZE)?;
        let last = first + buf.len() as u64 / SECTOR_SIZE;
        for (&s, data) in self.overlay.range(first..last) {
            let at = ((s - first) * SECTOR_SIZE) as usize;
            buf[at..at + SECTOR_SIZE as usize].copy_from_slice(&data[..]);
        }
        Ok(())
    }

    fn write_from_guest(&mut self, sector: u64, reader: &mut Reader) -> Status {
        let Some(count) = self.range(sector, reader.available_bytes()) else {
            return Status::IoError;
        };
        let mut data: Sector = [0; SECTOR_SIZE as usize];
        for s in sector..sector + count {
            if reader.read_exact(&mut data).is_err() {
                return Status::IoError;
            }
            self.overlay.insert(s, Box::new(data));
        }
        Status::Ok
    }
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u16 {
        DEVICE_TYPE
    }

    fn pci_class(&self) -> (u8, u8, u8) {
        (0x01, 0x80, 0x00) // mass storage, other
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn features(&self) -> u64 {
        let ro = match self.mode {
            BlockMode::ReadOnly => 1 << VIRTIO_BLK_F_RO,
            BlockMode::CopyOnWrite => 0,
        };
        1 << VIRTIO_BLK_F_SEG_MAX | 1 << VIRTIO_BLK_F_BLK_SIZE | 1 << VIRTIO_BLK_F_FLUSH | ro
    }

    fn config_len(&self) -> usize {
        self.config.len()
    }

    fn read_config(&self, offset: usize, data: &mut [u8]) {
        read_config_bytes(&self.config, offset, data);
    }

    fn process_queue(&mut self, queue: u16, q: &mut Queues) {
        while let Some(chain) = q.pop(queue) {
            let head = chain.head_index();
            let len = self.request(chain, q);
            q.add_used(queue, head, len);
        }
        q.signal(queue);
    }

    /// Requests complete synchronously, so nothing is in flight; the
    /// overlay is disk contents and survives.
    fn reset(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{disk_image, image_byte, Driver};
    use crate::transport::VirtioPci;

    const STATUS_UNTOUCHED: u8 = 0xaa;

    fn setup(mode: BlockMode) -> (Driver, VirtioPci<Block>, crate::testutil::TempFile) {
        let image = disk_image();
        let mut d = Driver::new();
        let mut pci = d.wrap(Block::new(image.open(), mode).unwrap());
        assert_eq!(d.init(&mut pci, 16, true) & 0xf, 0xf, "driver OK");
        (d, pci, image)
    }

    /// Sends one request; returns (status byte, used length, bytes read).
    fn request(
        d: &mut Driver,
        pci: &mut VirtioPci<Block>,
        kind: u32,
        sector: u64,
        lens: &[u32],
        payload: Option<&[u8]>,
    ) -> (u8, u32, Vec<u8>) {
        let header = d.alloc(16);
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&kind.to_le_bytes());
        h[8..16].copy_from_slice(&sector.to_le_bytes());
        d.write(header, &h);
        let mut descs = vec![(header, 16, false)];
        let mut at = 0;
        for &len in lens {
            let buf = d.alloc(len as u64);
            if let Some(p) = payload {
                d.write(buf, &p[at..at + len as usize]);
                at += len as usize;
            } else {
                d.write(buf, &vec![0x5a; len as usize]);
            }
            descs.push((buf, len, payload.is_none()));
        }
        let status = d.alloc(1);
        d.write(status, &[STATUS_UNTOUCHED]);
        descs.push((status, 1, true));
        let head = d.add_chain(0, &descs);
        d.notify(pci, 0);
        let used = d.used(0);
        assert_eq!(used.len(), 1, "one request completes");
        assert_eq!(used[0].0, head as u32);
        let data = descs[1..descs.len() - 1]
            .iter()
            .flat_map(|&(a, l, _)| d.read(a, l as usize))
            .collect();
        (d.read(status, 1)[0], used[0].1, data)
    }

    fn image_sectors(first: usize, count: usize) -> Vec<u8> {
        (first * 512..(first + count) * 512)
            .map(image_byte)
            .collect()
    }

    #[test]
    fn config_reports_capacity_and_geometry() {
        let (_, mut pci, _) = setup(BlockMode::CopyOnWrite);
        assert_eq!(
            Driver::device_config(&mut pci, 0, 8),
            10,
            "whole sectors only"
        );
        assert_eq!(Driver::device_config(&mut pci, 12, 4), 254, "seg_max");
        assert_eq!(Driver::device_config(&mut pci, 20, 4), 512, "blk_size");
        let f = pci.negotiated_features();
        for bit in [
            VIRTIO_BLK_F_SEG_MAX,
            VIRTIO_BLK_F_BLK_SIZE,
            VIRTIO_BLK_F_FLUSH,
        ] {
            assert_ne!(f & 1 << bit, 0, "feature {bit}");
        }
        assert_eq!(f & 1 << VIRTIO_BLK_F_RO, 0);
    }

    #[test]
    fn reads_known_content_across_descriptors() {
        let (mut d, mut pci, _) = setup(BlockMode::ReadOnly);
        let (status, used, data) =
            request(&mut d, &mut pci, VIRTIO_BLK_T_IN, 2, &[1024, 512], None);
        assert_eq!(status, VIRTIO_BLK_S_OK as u8);
        assert_eq!(used, 1024 + 512 + 1);
        assert_eq!(data, image_sectors(2, 3));
        // The last whole sector is readable, the partial one is not there.
        let (status, _, data) = request(&mut d, &mut pci, VIRTIO_BLK_T_IN, 9, &[512], None);
        assert_eq!(status, VIRTIO_BLK_S_OK as u8);
        assert_eq!(data, image_sectors(9, 1));
    }

    #[test]
    fn copy_on_write_keeps_the_image_untouched() {
        let (mut d, mut pci, image) = setup(BlockMode::CopyOnWrite);
        let before = image.contents();
        let new: Vec<u8> = (0..1024).map(|i| (i * 3) as u8).collect();
        let (status, used, _) = request(
            &mut d,
            &mut pci,
            VIRTIO_BLK_T_OUT,
            4,
            &[512, 512],
            Some(&new),
        );
        assert_eq!((status, used), (VIRTIO_BLK_S_OK as u8, 1));
        let (status, _, data) = request(&mut d, &mut pci, VIRTIO_BLK_T_IN, 3, &[2048], None);
        assert_eq!(status, VIRTIO_BLK_S_OK as u8);
        let mut expect = image_sectors(3, 4);
        expect[512..1536].copy_from_slice(&new);
        assert_eq!(data, expect, "reads merge the overlay");
        let (status, _, _) = request(&mut d, &mut pci, VIRTIO_BLK_T_FLUSH, 0, &[], None);
        assert_eq!(status, VIRTIO_BLK_S_OK as u8);
        assert_eq!(image.contents(), before, "the image file is never written");
        assert_eq!(pci.device().overlay_sectors(), 2);
        // A device reset keeps the disk contents.
        assert_eq!(d.init(&mut pci, 16, true) & 0xf, 0xf);
        let (_, _, data) = request(&mut d, &mut pci, VIRTIO_BLK_T_IN, 4, &[512], None);
        assert_eq!(data, new[..512]);
    }

    #[test]
    fn read_only_refuses_writes() {
        let (mut d, mut pci, image) = setup(BlockMode::ReadOnly);
        assert_ne!(pci.negotiated_features() & 1 << VIRTIO_BLK_F_RO, 0);
        let (status, _, _) = request(
            &mut d,
            &mut pci,
            VIRTIO_BLK_T_OUT,
            0,
            &[512],
            Some(&[1; 512]),
        );
        assert_eq!(status, VIRTIO_BLK_S_IOERR as u8);
        let (_, _, data) = request(&mut d, &mut pci, VIRTIO_BLK_T_IN, 0, &[512], None);
        assert_eq!(data, image_sectors(0, 1));
        assert_eq!(image.contents().len(), 10 * 512 + 100);
    }

    #[test]
    fn bad_requests_get_error_statuses() {
        let (mut d, mut pci, _) = setup(BlockMode::CopyOnWrite);
        let ioerr = VIRTIO_BLK_S_IOERR as u8;
        let cases: [(u32, u64, &[u32]); 5] = [
            (VIRTIO_BLK_T_IN, 9, &[1024]),
            (VIRTIO_BLK_T_IN, 10, &[512]),
            (VIRTIO_BLK_T_IN, u64::MAX, &[512]),
            (VIRTIO_BLK_T_IN, 0, &[100]),
            (VIRTIO_BLK_T_OUT, 10, &[512]),
        ];
        for (kind, sector, lens) in cases {
            let payload = vec![0u8; lens.iter().sum::<u32>() as usize];
            let payload = (kind == VIRTIO_BLK_T_OUT).then_some(&payload[..]);
            let (status, _, _) = request(&mut d, &mut pci, kind, sector, lens, payload);
            assert_eq!(status, ioerr, "type {kind} sector {sector} {lens:?}");
        }
        let (status, used, _) = request(&mut d, &mut pci, 99, 0, &[], None);
        assert_eq!((status, used), (VIRTIO_BLK_S_UNSUPP as u8, 1));
        assert_eq!(pci.device().overlay_sectors(), 0);
    }

    #[test]
    fn get_id_returns_the_serial() {
        let (mut d, mut pci, _) = setup(BlockMode::ReadOnly);
        let (status, used, data) = request(&mut d, &mut pci, VIRTIO_BLK_T_GET_ID, 0, &[20], None);
        assert_eq!((status, used), (VIRTIO_BLK_S_OK as u8, 21));
        assert_eq!(&data[..10], b"tern-disk\0");
        let image = disk_image();
        let mut pci = d.wrap(
            Block::new(image.open(), BlockMode::ReadOnly)
                .unwrap()
                .with_id("a-very-long-serial-number-indeed"),
        );
        d.init(&mut pci, 16, false);
        let (_, _, data) = request(&mut d, &mut pci, VIRTIO_BLK_T_GET_ID, 0, &[20], None);
        assert_eq!(&data[..], b"a-very-long-serial-n");
    }
}
