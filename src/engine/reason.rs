//! Re-export of [`crate::vocabulary`] under its old path (`crate::engine::reason`), so callers written against
//! it keep compiling.

pub use crate::vocabulary::{ConditionKind, Reason, Step};
