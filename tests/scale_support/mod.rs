//! What the scale test needs: a generated tree of real size, and a comparison of two
//! such trees that holds no more than a directory per level in memory.

pub mod compare;
pub mod generate;
