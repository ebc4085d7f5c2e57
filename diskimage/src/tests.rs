//! The parsers on the fuzz targets' seeds (fuzz/seeds): each seed is a real image that
//! must read as what it is, so the fuzzers start from inputs that reach deep. The
//! regressions of what fuzzing found follow.

use crate::ext4::{Ext4, ROOT_INO};
use crate::{open_device, Device, Format, MemDevice};
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

fn seed(target: &str, name: &str) -> Device {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/seeds")
        .join(target)
        .join(name);
    Arc::new(MemDevice(std::fs::read(&path).unwrap()))
}

fn mem(bytes: Vec<u8>) -> Device {
    Arc::new(MemDevice(bytes))
}

/// The file `a/b/file` of the seeds' tree.
fn file_content(fs: &Ext4) -> Vec<u8> {
    let mut ino = ROOT_INO;
    for part in ["a", "b", "file"] {
        let dir = fs.inode(ino).unwrap();
        let entries = fs.list(&dir).unwrap();
        ino = entries
            .iter()
            .find(|e| e.name == part.as_bytes())
            .unwrap()
            .ino;
    }
    let mut out = Vec::new();
    fs.reader(&fs.inode(ino).unwrap())
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[test]
fn the_ext_seeds_read_as_their_tree() {
    for name in ["ext4.img", "ext4-metadata-csum.img", "ext2-block-map.img"] {
        let fs = Ext4::open(seed("ext4", name)).unwrap();
        assert_eq!(file_content(&fs), b"content\n", "{name}");
    }
}

#[test]
fn the_image_seeds_hold_the_ext_seed() {
    let want = seed("ext4", "ext4.img");
    let mut head = vec![0u8; 4096];
    want.read_at(&mut head, 0).unwrap();
    for (target, name, format) in [
        ("qcow2", "plain.qcow2", Format::Qcow2),
        ("qcow2", "compressed.qcow2", Format::Qcow2),
        ("qcow2", "compressed-zstd.qcow2", Format::Qcow2),
        ("vhd", "fixed.vhd", Format::Vhd),
    ] {
        let disk = open_device(format, seed(target, name)).unwrap();
        let mut got = vec![0u8; 4096];
        disk.read_at(&mut got, 0).unwrap();
        assert_eq!(got, head, "{name}");
    }
    // The zero-filled dynamic VHD, and the VMDK heads (cut to stay small), open.
    assert!(open_device(Format::Vhd, seed("vhd", "dynamic.vhd")).is_ok());
    assert!(open_device(Format::Vmdk, seed("vmdk", "sparse-head.vmdk")).is_ok());
}

#[test]
fn the_partition_seeds_list_their_partitions() {
    let mbr = crate::partition::read_table(&seed("partitions", "mbr-logical.img"))
        .unwrap()
        .unwrap();
    let numbers: Vec<u32> = mbr.iter().map(|p| p.number).collect();
    assert_eq!(numbers, [1, 5, 6]);
    let gpt = crate::partition::read_table(&seed("partitions", "gpt.img"))
        .unwrap()
        .unwrap();
    assert_eq!(gpt.len(), 2);
}

#[test]
fn the_lvm_seeds_map_their_volumes() {
    let text = |name: &str| {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/seeds/lvm_metadata")
            .join(name);
        std::fs::read_to_string(path).unwrap()
    };
    let uuid = "rehostfuzzpv0000000000000000000a";
    let lvs =
        crate::lvm::from_metadata(&text("vg-small.txt"), uuid, mem(vec![0; 1 << 20])).unwrap();
    assert_eq!(lvs.len(), 1);
    assert_eq!(lvs[0].dev.as_ref().unwrap().len(), 94 * 8 * 512);
    let lvs = crate::lvm::from_metadata(&text("vg-thin.txt"), uuid, mem(vec![0; 1 << 20])).unwrap();
    assert!(lvs[0].dev.is_err());
}

/// A seed's bytes with `patch` written at `at`.
fn patched(target: &str, name: &str, at: usize, patch: &[u8]) -> Device {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/seeds")
        .join(target)
        .join(name);
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at..at + patch.len()].copy_from_slice(patch);
    mem(bytes)
}

// Sizes and offsets from headers, whose sums or products overflow: each must be an error
// (an overflow panics in a debug build and wraps into a wrong bound in a release one).

#[test]
fn a_vmdk_capacity_that_overflows_is_an_error() {
    let dev = patched("vmdk", "sparse-head.vmdk", 12, &u64::MAX.to_le_bytes());
    assert!(open_device(Format::Vmdk, dev).is_err());
}

#[test]
fn a_vhd_table_offset_that_overflows_is_an_error() {
    // The dynamic header is at 512; its table offset at 16 in it.
    let dev = patched(
        "vhd",
        "dynamic.vhd",
        512 + 16,
        &(u64::MAX - 2).to_be_bytes(),
    );
    assert!(open_device(Format::Vhd, dev).is_err());
}

#[test]
fn a_gpt_partition_spanning_every_block_is_an_error() {
    // The partition array is at LBA 2; the first entry's first and last LBAs at 32, 40.
    let mut entry = 0u64.to_le_bytes().to_vec();
    entry.extend_from_slice(&u64::MAX.to_le_bytes());
    let dev = patched("partitions", "gpt.img", 1024 + 32, &entry);
    assert!(crate::partition::read_table(&dev).is_err());
}

#[test]
fn an_inode_table_past_every_block_is_an_error() {
    // Group descriptors follow the superblock (block 2 with 1 KiB blocks); the inode
    // table's block is at 8 (low half) and 0x28 (high half, 64-bit filesystems).
    let mut bytes = {
        let dev = seed("ext4", "ext4.img");
        let mut b = vec![0u8; dev.len() as usize];
        dev.read_at(&mut b, 0).unwrap();
        b
    };
    bytes[2048 + 8..2048 + 12].copy_from_slice(&u32::MAX.to_le_bytes());
    bytes[2048 + 0x28..2048 + 0x2C].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(Ext4::open(mem(bytes)).is_err());
}
