//! The C ABI (see include/mlff.h). The only module with raw pointers and status codes.
