//! Errors: what `alloc` and `build` can refuse, and why.

use core::fmt;

/// Why an allocation was refused. The pool is left consistent; a later
/// allocation may succeed once memory is freed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AllocError {
    /// The operating system refused a new mapping (or one was injected to fail).
    OutOfMemory,
    /// The pool's `max_bytes` budget is spent.
    MemoryLimit {
        /// The configured budget in bytes.
        limit: u64,
    },
}

impl fmt::Display for AllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllocError::OutOfMemory => f.write_str("homeslab: the OS refused to map more memory"),
            AllocError::MemoryLimit { limit } => write!(
                f,
                "homeslab: the pool's max_bytes budget of {limit} bytes is spent; free blocks or raise max_bytes"
            ),
        }
    }
}

impl std::error::Error for AllocError {}

/// Why a builder refused its configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The object's alignment exceeds the 4096 bytes homeslab supports.
    AlignTooLarge {
        /// The requested alignment.
        align: usize,
    },
    /// The object is too large for a slab (more than 64 MiB).
    ObjectTooLarge {
        /// The object's size.
        size: usize,
    },
    /// A numeric setting is out of its range.
    InvalidSetting {
        /// The builder method.
        name: &'static str,
        /// What the value must satisfy.
        requirement: &'static str,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::AlignTooLarge { align } => {
                write!(
                    f,
                    "homeslab: alignment {align} exceeds the supported maximum of 4096"
                )
            }
            ConfigError::ObjectTooLarge { size } => {
                write!(
                    f,
                    "homeslab: objects of {size} bytes exceed the 64 MiB maximum"
                )
            }
            ConfigError::InvalidSetting { name, requirement } => {
                write!(f, "homeslab: invalid `{name}`: {requirement}")
            }
        }
    }
}

impl std::error::Error for ConfigError {}
