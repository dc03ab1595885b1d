//! File formats for structures.

pub mod extxyz;
