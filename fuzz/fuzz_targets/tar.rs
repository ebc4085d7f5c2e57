//! The one tar reader reads server archives, layers, oci-archives and OVAs: every
//! entry, its sparse map and its data must end in a value or an error, never a panic,
//! a hang or an allocation the input merely asks for.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut reader = oci::tar::Reader::new(data);
    while let Ok(Some(header)) = reader.next_entry() {
        if header.sparse.is_some() {
            if reader.sparse_extents(&header).is_err() {
                return;
            }
        }
        if std::io::copy(&mut reader.data(), &mut std::io::sink()).is_err() {
            return;
        }
    }
});
