//! rpm's package database comes from the server: a Berkeley DB hash file or an SQLite
//! file, and the header blobs in it. Reading any bytes as either must end in packages or
//! an error, never a panic, a hang or an allocation the file asks for.
#![no_main]
use converter::inventory::rpmdb::parse_database;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_database(data);
});
