//! Recovery: placeholder until written.
