//! Tar as OCI layers and archives carry it: the one reader (bounded headers, every
//! sparse format), the one deterministic writer (PAX, long names, xattrs, PAX 1.0
//! sparse files).

pub mod read;
pub mod sparse;
mod write;

pub use read::{EntryType, Header, Reader, TarError};
pub use write::{ExtentReader, TarWriter, LINKED};
