//! The one error type that crosses the plugin boundary: a stable code plus human text.

use std::fmt;

/// What kind of failure a [`PluginError`] reports.
///
/// The discriminants are part of the interface and never change; new codes may be added in a
/// minor interface version, so hosts must treat unknown codes as [`ErrorCode::Internal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[repr(u32)]
pub enum ErrorCode {
    /// The store, collection or record does not exist.
    NotFound = 1,
    /// The collection already exists and the request needed a new one.
    AlreadyExists = 2,
    /// The caller passed something the plugin cannot accept (bad option, bad record, wrong dimension).
    InvalidInput = 3,
    /// The plugin does not implement this operation or option.
    Unsupported = 4,
    /// Files of the store are damaged, truncated or in an encoding the plugin does not know.
    Corrupt = 5,
    /// An operating-system I/O error.
    Io = 6,
    /// The store was written by a version of the product this plugin does not support.
    Incompatible = 7,
    /// The plugin panicked; the host survived and reports it as this error.
    Panic = 8,
    /// A bug or an unexpected state inside the plugin.
    Internal = 9,
    /// The store was opened read-only and the operation would change it.
    ReadOnly = 10,
}

impl ErrorCode {
    /// The code for a raw value received from the other side of the boundary.
    pub fn from_u32(raw: u32) -> ErrorCode {
        match raw {
            1 => ErrorCode::NotFound,
            2 => ErrorCode::AlreadyExists,
            3 => ErrorCode::InvalidInput,
            4 => ErrorCode::Unsupported,
            5 => ErrorCode::Corrupt,
            6 => ErrorCode::Io,
            7 => ErrorCode::Incompatible,
            8 => ErrorCode::Panic,
            10 => ErrorCode::ReadOnly,
            _ => ErrorCode::Internal,
        }
    }

    /// A short lowercase name, used in messages and JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NotFound => "not-found",
            ErrorCode::AlreadyExists => "already-exists",
            ErrorCode::InvalidInput => "invalid-input",
            ErrorCode::Unsupported => "unsupported",
            ErrorCode::Corrupt => "corrupt",
            ErrorCode::Io => "io",
            ErrorCode::Incompatible => "incompatible",
            ErrorCode::Panic => "panic",
            ErrorCode::Internal => "internal",
            ErrorCode::ReadOnly => "read-only",
        }
    }
}

/// An error returned by a plugin operation.
///
/// Messages are lowercase, name the file or collection involved, and carry no trailing period.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PluginError {
    /// The kind of failure.
    pub code: ErrorCode,
    /// What went wrong, naming the file or collection.
    pub message: String,
    /// What the user can do about it, when the plugin knows.
    pub help: Option<String>,
}

impl PluginError {
    /// An error with a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> PluginError {
        PluginError {
            code,
            message: message.into(),
            help: None,
        }
    }

    /// Adds a hint for the user.
    pub fn with_help(mut self, help: impl Into<String>) -> PluginError {
        self.help = Some(help.into());
        self
    }

    /// Shorthand for [`ErrorCode::NotFound`].
    pub fn not_found(message: impl Into<String>) -> PluginError {
        PluginError::new(ErrorCode::NotFound, message)
    }

    /// Shorthand for [`ErrorCode::InvalidInput`].
    pub fn invalid_input(message: impl Into<String>) -> PluginError {
        PluginError::new(ErrorCode::InvalidInput, message)
    }

    /// Shorthand for [`ErrorCode::Corrupt`].
    pub fn corrupt(message: impl Into<String>) -> PluginError {
        PluginError::new(ErrorCode::Corrupt, message)
    }

    /// Shorthand for [`ErrorCode::Unsupported`], naming the operation.
    pub fn unsupported(operation: &str) -> PluginError {
        PluginError::new(
            ErrorCode::Unsupported,
            format!("this plugin does not support {operation}"),
        )
    }

    /// An I/O error with the path it happened on.
    pub fn io(path: impl AsRef<std::path::Path>, error: &std::io::Error) -> PluginError {
        PluginError::new(ErrorCode::Io, format!("{}: {error}", path.as_ref().display()))
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)?;
        if let Some(help) = &self.help {
            write!(f, " (help: {help})")?;
        }
        Ok(())
    }
}
