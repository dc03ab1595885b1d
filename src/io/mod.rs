//! File formats for structures.
