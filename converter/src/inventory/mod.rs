//! The inventory: facts about a server, read from its [`Source`](crate::source::Source).

pub mod arch;
