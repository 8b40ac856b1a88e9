//! One error type for the engine. Every message names the value at fault.

use std::io;

/// Broad class of an error: picks the exit code (and, later, the CNI code).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad input: a value that can never work.
    InvalidInput,
    /// Something named does not exist (netns, parent, attachment).
    NotFound,
    /// Conflicts with what exists (duplicate MAC/IP, ifname taken, passthru).
    Conflict,
    /// The kernel refused an operation.
    System,
}

impl ErrorKind {
    pub const fn exit_code(self) -> i32 {
        match self {
            ErrorKind::System => 1,
            ErrorKind::InvalidInput => 2,
            ErrorKind::NotFound => 3,
            ErrorKind::Conflict => 4,
        }
    }

    pub fn from_name(name: &str) -> Self {
        match name {
            "invalid_input" => ErrorKind::InvalidInput,
            "not_found" => ErrorKind::NotFound,
            "conflict" => ErrorKind::Conflict,
            _ => ErrorKind::System,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::System => "system",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }

    pub fn system(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::System, message)
    }

    /// Prefixes the message with what was being done.
    pub fn context(mut self, what: impl std::fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }
}

/// Adds "what we were doing" to any error that converts into ours.
pub trait Context<T> {
    fn context(self, what: impl std::fmt::Display) -> Result<T>;
    fn with_context<D: std::fmt::Display>(self, what: impl FnOnce() -> D) -> Result<T>;
}

impl<T, E: Into<Error>> Context<T> for std::result::Result<T, E> {
    fn context(self, what: impl std::fmt::Display) -> Result<T> {
        self.map_err(|e| e.into().context(what))
    }

    fn with_context<D: std::fmt::Display>(self, what: impl FnOnce() -> D) -> Result<T> {
        self.map_err(|e| e.into().context(what()))
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        let kind = match e.kind() {
            io::ErrorKind::NotFound => ErrorKind::NotFound,
            io::ErrorKind::AlreadyExists => ErrorKind::Conflict,
            io::ErrorKind::InvalidInput => ErrorKind::InvalidInput,
            _ => ErrorKind::System,
        };
        Self::new(kind, e.to_string())
    }
}

impl From<rtnetlink::Error> for Error {
    fn from(e: rtnetlink::Error) -> Self {
        match &e {
            rtnetlink::Error::NetlinkError(msg) => {
                let errno = msg.raw_code().abs();
                let kind = match errno {
                    libc::EEXIST | libc::EADDRINUSE | libc::EBUSY => ErrorKind::Conflict,
                    libc::ENODEV | libc::ENOENT => ErrorKind::NotFound,
                    libc::EINVAL | libc::ERANGE => ErrorKind::InvalidInput,
                    _ => ErrorKind::System,
                };
                Self::new(kind, io::Error::from_raw_os_error(errno).to_string())
            }
            _ => Self::system(e.to_string()),
        }
    }
}

macro_rules! system_errors {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Self::system(crate::error::chain(&e))
            }
        }
    )*};
}
system_errors!(
    aya::EbpfError,
    aya::maps::MapError,
    aya::programs::ProgramError,
    aya::pin::PinError,
    aya::programs::links::LinkError,
    serde_json::Error
);

/// An error and its sources, on one line.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}
