//! A server's record of the reads a prepare made there comes over the network: decoding
//! it must end in a value or one line of error, never a panic or an allocation the input
//! merely asks for; what decodes encodes back to the same record.
#![no_main]
use converter::source::recorded::Reads;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(reads) = Reads::decode(data) {
        assert_eq!(Reads::decode(&reads.encode()).as_ref(), Ok(&reads));
    }
});
