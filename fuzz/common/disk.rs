//! What the disk-image targets share: reading a virtual disk as a filesystem reader would,
//! bounded so each run stays short.
use diskimage::BlockDevice;

/// Reads the start, the end and a few places between of a disk, in pieces of several
/// sizes, ignoring errors (a corrupt image may fail any read; it must not panic).
pub fn read_some(disk: &dyn BlockDevice) {
    let len = disk.len();
    let mut buf = vec![0u8; 70_000];
    for (at, n) in [
        (0, 4096),
        (0, 70_000),
        (len / 3, 512),
        (len / 2, 65_536),
        (len.saturating_sub(4096), 4096),
        (len.saturating_sub(1), 1),
        (len, 1),
        (u64::MAX - 10, 20),
    ] {
        let _ = disk.read_at(&mut buf[..n], at);
    }
}
