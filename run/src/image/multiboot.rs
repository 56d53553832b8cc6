//! Finds Multiboot v1 and v2 headers in a kernel file the way the boot loaders scan for them,
//! so a kernel that a loader would reject is reported before the emulator starts.

const V1_MAGIC: u32 = 0x1BAD_B002;
const V1_SEARCH: usize = 8192;
const V2_MAGIC: u32 = 0xE852_50D6;
const V2_SEARCH: usize = 32768;

/// Multiboot v1 flag 16: the header's address fields replace the ELF program headers.
pub const V1_AOUT_KLUDGE: u32 = 1 << 16;

fn word(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// The flags of the first valid Multiboot v1 header (4-byte aligned, first 8 KiB).
pub fn find_v1(image: &[u8]) -> Option<u32> {
    (0..V1_SEARCH.min(image.len())).step_by(4).find_map(|at| {
        let (magic, flags, sum) = (word(image, at)?, word(image, at + 4)?, word(image, at + 8)?);
        (magic == V1_MAGIC && magic.wrapping_add(flags).wrapping_add(sum) == 0).then_some(flags)
    })
}

/// Whether a valid i386 Multiboot v2 header is present (8-byte aligned, first 32 KiB).
pub fn has_v2(image: &[u8]) -> bool {
    (0..V2_SEARCH.min(image.len())).step_by(8).any(|at| {
        let fields = [0, 4, 8, 12].map(|o| word(image, at + o));
        match fields {
            [Some(magic), Some(arch), Some(len), Some(sum)] => {
                magic == V2_MAGIC
                    && arch == 0
                    && magic.wrapping_add(arch).wrapping_add(len).wrapping_add(sum) == 0
            }
            _ => false,
        }
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn v1_header(flags: u32) -> Vec<u8> {
        [
            V1_MAGIC,
            flags,
            0u32.wrapping_sub(V1_MAGIC).wrapping_sub(flags),
        ]
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .collect()
    }

    /// Magic, architecture, length, checksum and the end tag.
    pub fn v2_header() -> Vec<u8> {
        [V2_MAGIC, 0, 24, 0u32.wrapping_sub(V2_MAGIC + 24), 0, 8]
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .collect()
    }

    fn at(offset: usize, header: &[u8]) -> Vec<u8> {
        let mut image = vec![0u8; offset];
        image.extend_from_slice(header);
        image.resize(offset + 64, 0);
        image
    }

    #[test]
    fn v1_found_only_aligned_with_valid_checksum_in_first_8k() {
        assert_eq!(find_v1(&at(0x1000, &v1_header(3))), Some(3));
        assert_eq!(find_v1(&at(0x1002, &v1_header(3))), None);
        assert_eq!(find_v1(&at(0x2000, &v1_header(3))), None);
        let mut broken = v1_header(3);
        broken[8] ^= 1;
        assert_eq!(find_v1(&at(0x10, &broken)), None);
    }

    #[test]
    fn v2_found_only_eight_byte_aligned_with_valid_checksum_in_first_32k() {
        assert!(has_v2(&at(0x7ff8, &v2_header())));
        assert!(!has_v2(&at(0x1004, &v2_header())));
        assert!(!has_v2(&at(0x8000, &v2_header())));
        let mut broken = v2_header();
        broken[12] ^= 1;
        assert!(!has_v2(&at(0x10, &broken)));
        assert!(!has_v2(&[]));
    }
}
