use super::*;
use crate::entry::{Entry, Kind};
use crate::tar::TarWriter;
use std::process::Command;

/// Every entry of `tar`: header, and its content (sparse files expanded, holes as zeros).
fn read_all(tar: &[u8]) -> Result<Vec<(Header, Vec<u8>)>, TarError> {
    let mut r = Reader::new(tar);
    let mut out = Vec::new();
    while let Some(h) = r.next_entry()? {
        let mut content = Vec::new();
        if let Some(s) = h.sparse.clone() {
            let extents = r.sparse_extents(&h)?;
            content = vec![0u8; s.real_size as usize];
            for x in extents {
                r.data()
                    .read_exact(&mut content[x.offset as usize..(x.offset + x.len) as usize])?;
            }
        } else {
            r.data().read_to_end(&mut content)?;
        }
        out.push((h, content));
    }
    Ok(out)
}

/// A ustar header block with a valid checksum.
fn header(name: &str, typeflag: u8, size: u64) -> [u8; 512] {
    let mut b = [0u8; 512];
    b[..name.len()].copy_from_slice(name.as_bytes());
    b[100..108].copy_from_slice(b"0000644\0");
    b[108..116].copy_from_slice(b"0000000\0");
    b[116..124].copy_from_slice(b"0000000\0");
    b[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    b[136..148].copy_from_slice(b"00000000000\0");
    b[156] = typeflag;
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    let sum: u32 = b
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            if (148..156).contains(&i) {
                32
            } else {
                x as u32
            }
        })
        .sum();
    b[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    b
}

fn pad(v: &mut Vec<u8>) {
    while !v.len().is_multiple_of(512) {
        v.push(0);
    }
}

fn pax(records: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in records {
        let body = format!(" {k}={v}\n");
        let mut len = body.len() + 1;
        while format!("{len}{body}").len() != len {
            len += 1;
        }
        out.extend(format!("{len}{body}").as_bytes());
    }
    out
}

fn archive(parts: &[(&[u8; 512], &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (h, data) in parts {
        out.extend_from_slice(&h[..]);
        out.extend_from_slice(data);
        pad(&mut out);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

#[test]
fn the_writers_entries_read_back() {
    let mut w = TarWriter::new(Vec::new());
    let mut dir = Entry::new(b"etc".to_vec(), Kind::Dir);
    dir.mode = 0o755;
    w.append(&dir, None).unwrap();
    let long = format!("etc/{}", "n".repeat(300));
    let mut file = Entry::new(long.clone().into_bytes(), Kind::File);
    file.size = 5;
    file.uid = 3_000_000;
    file.xattrs = vec![(b"user.k".to_vec(), b"v\nw".to_vec())];
    w.append(&file, Some(&mut &b"hello"[..])).unwrap();
    let mut link = Entry::new(b"etc/l".to_vec(), Kind::Hardlink);
    link.link = long.clone().into_bytes();
    w.append(&link, None).unwrap();
    let mut sparse = Entry::new(b"var/big".to_vec(), Kind::File);
    sparse.size = 1 << 20;
    sparse.sparse = Some(vec![Extent {
        offset: 4096,
        len: 3,
    }]);
    w.append(&sparse, Some(&mut &b"abc"[..])).unwrap();
    let tar = w.finish().unwrap();

    let got = read_all(&tar).unwrap();
    assert_eq!(got.len(), 4);
    assert_eq!((got[0].0.kind, got[0].0.mode), (EntryType::Dir, 0o755));
    assert_eq!(got[1].0.path, long.as_bytes());
    assert_eq!(got[1].0.uid, 3_000_000);
    assert_eq!(got[1].1, b"hello");
    assert_eq!(
        got[1].0.xattrs().collect::<Vec<_>>(),
        vec![(&b"user.k"[..], &b"v\nw"[..])]
    );
    assert_eq!(got[2].0.kind, EntryType::Hardlink);
    assert_eq!(got[2].0.link.as_deref(), Some(long.as_bytes()));
    assert_eq!(got[3].0.path, b"var/big");
    assert_eq!(got[3].1.len(), 1 << 20);
    assert_eq!(&got[3].1[4096..4099], b"abc");
    assert!(got[3].1[..4096].iter().all(|&b| b == 0));
}

/// GNU tar writes a file of 8 GiB or more as ustar size 0 plus a PAX `size`: a reader
/// that ignores the record reads the content as further entries.
#[test]
fn the_pax_size_record_wins_over_the_header() {
    let mut inner = header("etc/injected", b'0', 0).to_vec();
    inner.extend_from_slice(&[0u8; 512][..]);
    let x = pax(&[("size", &inner.len().to_string())]);
    let tar = archive(&[
        (&header("PaxHeaders/f", b'x', x.len() as u64), &x),
        (&header("big", b'0', 0), &inner),
        (&header("after", b'0', 2), b"ok"),
    ]);
    let got = read_all(&tar).unwrap();
    let names: Vec<_> = got.iter().map(|(h, _)| h.path.clone()).collect();
    assert_eq!(names, vec![b"big".to_vec(), b"after".to_vec()]);
    assert_eq!(got[0].1, inner);
    assert_eq!(got[1].1, b"ok");
}

#[test]
fn extension_headers_are_bounded() {
    // One of 2 MiB.
    let big = vec![b'a'; 2 << 20];
    let tar = archive(&[(&header("L", b'L', big.len() as u64), &big)]);
    assert!(matches!(
        Reader::new(&tar[..]).next_entry(),
        Err(TarError::ExtensionTooLarge { .. })
    ));
    // Many of 600 KiB each, for one entry.
    let part = pax(&[("comment", &"c".repeat(600 << 10))]);
    let h = header("x", b'x', part.len() as u64);
    let tar = archive(&[(&h, &part), (&h, &part), (&header("f", b'0', 0), b"")]);
    assert!(matches!(
        Reader::new(&tar[..]).next_entry(),
        Err(TarError::ExtensionTooLarge { .. })
    ));
    // A declared size far beyond the stream is not allocated up front.
    let tar = archive(&[(&header("L", b'L', 1 << 19), b"short")]);
    assert!(matches!(
        Reader::new(&tar[..]).next_entry(),
        Err(TarError::Truncated { .. })
    ));
}

#[test]
fn broken_archives_give_errors_not_panics() {
    let mut bad = header("f", b'0', 3);
    bad[0] = b'g';
    assert!(matches!(
        Reader::new(&bad[..]).next_entry(),
        Err(TarError::Checksum { .. })
    ));
    let tar = archive(&[(&header("f", b'0', 100), b"only this")]);
    let mut r = Reader::new(&tar[..600]);
    r.next_entry().unwrap().unwrap();
    assert!(r.data().read_to_end(&mut Vec::new()).is_err());
    // Records that do not fit, and extension headers that end the archive.
    for records in [&b"99 path=x\n"[..], b"5 a\n", b"x path=y\n", b"3 =\n"] {
        let tar = archive(&[
            (&header("x", b'x', records.len() as u64), records),
            (&header("f", b'0', 0), b""),
        ]);
        assert!(Reader::new(&tar[..]).next_entry().is_err(), "{records:?}");
    }
    let tar = archive(&[(&header("L", b'L', 3), b"abc")]);
    assert!(matches!(
        Reader::new(&tar[..]).next_entry(),
        Err(TarError::Dangling { .. })
    ));
}

/// Hostile sparse maps: past the real size, out of order, more data than the entry.
#[test]
fn hostile_sparse_maps_are_refused() {
    for map in ["0,10,5,10", "0,10,95,10", "0,2000"] {
        let x = pax(&[
            ("GNU.sparse.size", "100"),
            ("GNU.sparse.map", map),
            ("GNU.sparse.major", "0"),
            ("GNU.sparse.minor", "1"),
        ]);
        let tar = archive(&[
            (&header("x", b'x', x.len() as u64), &x),
            (&header("f", b'0', 20), &[1u8; 20]),
        ]);
        assert!(
            matches!(
                Reader::new(&tar[..]).next_entry(),
                Err(TarError::Sparse { .. })
            ),
            "{map}"
        );
    }
    // A real size of 1 EiB with no data is fine: holes cost nothing to describe.
    let x = pax(&[
        ("GNU.sparse.size", "1152921504606846976"),
        ("GNU.sparse.map", ""),
    ]);
    let tar = archive(&[
        (&header("x", b'x', x.len() as u64), &x),
        (&header("f", b'0', 0), b""),
    ]);
    let h = Reader::new(&tar[..]).next_entry().unwrap().unwrap();
    assert_eq!(h.sparse.unwrap().real_size, 1 << 60);
}

/// GNU tar's own sparse archives, in each format it writes, give the file's name,
/// content and holes.
#[test]
fn gnu_tar_sparse_files_read_back_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("disk.img");
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::create(&file).unwrap();
        f.set_len(10 << 20).unwrap();
        f.write_all_at(b"first", 0).unwrap();
        f.write_all_at(&[7u8; 9000], 3 << 20).unwrap();
        f.write_all_at(b"last", (10 << 20) - 4).unwrap();
    }
    let want = std::fs::read(&file).unwrap();
    for args in [
        &["--format=gnu"][..],
        &["--format=posix", "--sparse-version=0.0"],
        &["--format=posix", "--sparse-version=0.1"],
        &["--format=posix", "--sparse-version=1.0"],
    ] {
        let out = Command::new("tar")
            .args(["-c", "--sparse", "-C"])
            .arg(dir.path())
            .args(args)
            .arg("disk.img")
            .output()
            .expect("GNU tar runs");
        assert!(out.status.success(), "tar {args:?}");
        assert!(out.stdout.len() < 1 << 20, "tar {args:?} kept the holes");
        let got = read_all(&out.stdout).unwrap();
        assert_eq!(got.len(), 1, "tar {args:?}");
        assert_eq!(got[0].0.path, b"disk.img", "tar {args:?}");
        assert!(got[0].1 == want, "tar {args:?}: content differs");
    }
}

/// GNU tar's many-extent sparse files (more than the four a GNU header holds) use
/// extension blocks.
#[test]
fn gnu_sparse_extension_blocks_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("holes");
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::create(&file).unwrap();
        f.set_len(64 << 20).unwrap();
        for i in 0..40u64 {
            f.write_all_at(&[i as u8 + 1; 100], i << 20).unwrap();
        }
    }
    let want = std::fs::read(&file).unwrap();
    let out = Command::new("tar")
        .args(["-c", "--sparse", "--format=gnu", "-C"])
        .arg(dir.path())
        .arg("holes")
        .output()
        .unwrap();
    assert!(out.status.success());
    let got = read_all(&out.stdout).unwrap();
    assert!(got[0].1 == want);
    assert_eq!(
        got[0]
            .0
            .sparse
            .as_ref()
            .unwrap()
            .map
            .as_ref()
            .unwrap()
            .len(),
        40
    );
}

/// Layers one after another: a plain reader stops at the first end-of-archive blocks,
/// a concatenated one reads on to the stream's end, and still checks every header.
#[test]
fn concatenated_archives_read_as_one() {
    let mut two = archive(&[(&header("a", b'0', 1), b"A")]);
    two.extend(archive(&[(&header("b", b'0', 1), b"B")]));
    let names = |mut r: Reader<&[u8]>| -> Result<Vec<Vec<u8>>, TarError> {
        let mut out = Vec::new();
        while let Some(h) = r.next_entry()? {
            out.push(h.path);
        }
        Ok(out)
    };
    assert_eq!(names(Reader::new(&two)).unwrap(), [b"a".to_vec()]);
    assert_eq!(
        names(Reader::concatenated(&two)).unwrap(),
        [b"a".to_vec(), b"b".to_vec()]
    );
    let mut broken = two.clone();
    broken.extend_from_slice(&[1u8; 512]);
    assert!(names(Reader::concatenated(&broken)).is_err());
}
