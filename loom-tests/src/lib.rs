//! Loom models of homeslab.
