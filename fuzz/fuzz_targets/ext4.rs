//! A disk image is the guest's, and may be crafted: our ext2/3/4 reader must give a tree
//! or an error on any bytes, never a panic, a hang or an allocation without bound.
#![no_main]
use diskimage::ext4::{Ext4, ROOT_INO};
use diskimage::{Device, MemDevice};
use libfuzzer_sys::fuzz_target;
use std::io::Read;
use std::sync::Arc;

/// How much of the tree one input may walk, so each run stays short.
const MAX_DIRS: usize = 256;
const MAX_FILE_BYTES: u64 = 1 << 16;

fuzz_target!(|data: &[u8]| {
    let dev: Device = Arc::new(MemDevice(data.to_vec()));
    let Ok(fs) = Ext4::open(dev) else { return };
    let mut dirs = vec![ROOT_INO];
    let mut walked = 0;
    while let Some(ino) = dirs.pop() {
        walked += 1;
        if walked > MAX_DIRS {
            break;
        }
        let Ok(dir) = fs.inode(ino) else { continue };
        let Ok(entries) = fs.list(&dir) else { continue };
        for e in entries {
            let Ok(inode) = fs.inode(e.ino) else { continue };
            let _ = fs.xattrs(&inode);
            match inode.mode & 0o170000 {
                0o040000 => dirs.push(e.ino),
                0o100000 | 0o120000 => {
                    if let Ok(runs) = fs.runs(&inode) {
                        let _ = fs.data_extents(&inode, &runs);
                    }
                    if let Ok(r) = fs.reader(&inode) {
                        let _ = r.take(MAX_FILE_BYTES).read_to_end(&mut Vec::new());
                    }
                }
                _ => {}
            }
        }
    }
});
