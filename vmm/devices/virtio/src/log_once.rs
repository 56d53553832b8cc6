//! Warnings a guest can trigger, logged once per kind and device so that a
//! hostile or buggy guest cannot flood the log.

use std::collections::HashSet;
use std::fmt;

#[derive(Default)]
pub(crate) struct LogOnce {
    seen: HashSet<&'static str>,
}

impl LogOnce {
    /// Logs `message` at warn level the first time `kind` is seen.
    pub(crate) fn warn(&mut self, kind: &'static str, message: fmt::Arguments) {
        if self.seen.insert(kind) {
            log::warn!("{message} (logged once)");
        }
    }
}
