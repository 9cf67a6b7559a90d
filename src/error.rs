//! The crate's one error type of its own: an OS error with an explanation in front.

use std::fmt;
use std::io;

/// An error that adds an explanation to an OS error, which stays reachable as `source()`.
#[derive(Debug)]
pub(crate) struct Context {
    pub(crate) msg: String,
    pub(crate) source: io::Error,
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.msg, self.source)
    }
}

impl std::error::Error for Context {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

impl Context {
    /// `err` with `msg` in front, of `err`'s kind, `err` as its `source()`.
    pub(crate) fn explain(err: io::Error, msg: String) -> io::Error {
        Context::explain_as(err.kind(), err, msg)
    }

    /// [`explain`](Self::explain), of the kind `kind`.
    pub(crate) fn explain_as(kind: io::ErrorKind, err: io::Error, msg: String) -> io::Error {
        io::Error::new(kind, Context { msg, source: err })
    }
}
