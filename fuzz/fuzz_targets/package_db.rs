//! A server's package database (dpkg's status, file lists and md5sums; apk's installed)
//! comes from the server: reading it, resolving its paths inside the tree and checking
//! the files against it must end in a report, never a panic or a path outside the root.
#![no_main]
use converter::inventory::fs::Root;
use converter::inventory::ownership::{PackageDb, Tally};
use converter::source::{DirOptions, DirSource, Source};
use libfuzzer_sys::fuzz_target;
use std::sync::atomic::{AtomicU64, Ordering};

static NEXT: AtomicU64 = AtomicU64::new(0);

fuzz_target!(|data: &[u8]| {
    // Three files from one input, split at 0xff bytes.
    let mut parts = data.splitn(3, |&b| b == 0xff);
    let (status, list, sums) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let dir = std::env::temp_dir().join(format!(
        "rehost-fuzz-pkgdb-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let write = |rel: &str, bytes: &[u8]| {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    };
    write("var/lib/dpkg/status", status);
    write("var/lib/dpkg/info/x.list", list);
    write("var/lib/dpkg/info/x.md5sums", sums);
    write("lib/apk/db/installed", status);
    write("usr/bin/x", b"x");
    std::os::unix::fs::symlink("usr/bin", dir.join("bin")).unwrap();
    if let Ok(src) = DirSource::new(&dir, DirOptions::default()) {
        if let Some(db) = PackageDb::read(&Root::new(&src)) {
            let mut tally = Tally::new(&db);
            let _ = src.walk(&mut |e| {
                tally.visit(&e, e.size);
                Ok(())
            });
            let report = tally.finish(&src);
            for c in &report.changed {
                assert!(c.path.starts_with('/'), "{}", c.path);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
});
