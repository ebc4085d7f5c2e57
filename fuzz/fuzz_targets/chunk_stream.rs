//! A capture's stream comes from the server being migrated, which may be hostile: the
//! chunks, the record of its reads, the reuse of chunks kept here, the zstd they hold
//! and the archive they make, walked as the client walks it, must end in a tree or one
//! line of error: never a panic, a hang, an allocation the input merely asks for, or a
//! file anywhere but the cache, named by anything but a signature and a digest.
#![no_main]
use converter::source::remote::chunks::{Cache, Receiver};
use converter::source::{ArchiveStream, Window};
use libfuzzer_sys::fuzz_target;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// The cache's directory and the chunk kept there before each run, as the seed's
/// resumed stream expects it (`fuzz/common/kept-chunk`).
fn setup() -> &'static (PathBuf, Vec<(std::ffi::OsString, Vec<u8>)>) {
    static SETUP: OnceLock<(PathBuf, Vec<(std::ffi::OsString, Vec<u8>)>)> = OnceLock::new();
    SETUP.get_or_init(|| {
        let kept = Path::new(env!("CARGO_MANIFEST_DIR")).join("common/kept-chunk");
        let files = std::fs::read_dir(kept)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.file_name(), std::fs::read(e.path()).unwrap())
            })
            .collect();
        // Under the fuzz build's own directory (ignored by git), one per fuzzing process.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target/chunk-stream-cache")
            .join(std::process::id().to_string());
        (dir, files)
    })
}

fn named_by_signature(name: &str) -> bool {
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    match name.split('.').collect::<Vec<_>>()[..] {
        [sig, "part"] => hex(sig, 64),
        [sig, digest, "zst"] => hex(sig, 64) && hex(digest, 32),
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let (dir, kept) = setup();
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    for (name, bytes) in kept {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    let cache = Cache::in_dir(dir.clone());
    let receiver = Receiver::new(data, Some(cache), Arc::default());
    if let Ok(stream) = ArchiveStream::new(Path::new("fuzz"), Box::new(receiver)) {
        let window = Window::default();
        let _ = stream.walk(&window, &mut |entry| {
            if let Some(Ok(mut file)) = window.open(&entry.path) {
                let mut sink = [0u8; 8192];
                while matches!(file.read(&mut sink), Ok(n) if n > 0) {}
            }
            Ok(())
        });
    }
    for e in std::fs::read_dir(dir).unwrap() {
        let name = e.unwrap().file_name();
        let name = name.to_string_lossy();
        assert!(named_by_signature(&name), "the cache holds `{name}`");
    }
});
