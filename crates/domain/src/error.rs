//! Why a value was refused. Every refusal names the rule broken and echoes what was given, so
//! that both reception staff and a vendor can act on it.

use std::fmt;

/// A value that cannot be accepted for a field: the rule it breaks and the value as given.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct FieldError {
    /// The broken rule, as an English phrase that completes "the value …".
    pub reason: String,
    /// The value as given (truncated to keep error messages short).
    pub given: String,
}

impl FieldError {
    pub fn new(reason: impl Into<String>, given: &str) -> FieldError {
        let given: String = given.chars().take(40).collect();
        FieldError { reason: reason.into(), given }
    }

    /// A refusal that must not repeat the value (a My Number typed into the wrong field).
    pub fn withheld(reason: impl Into<String>) -> FieldError {
        FieldError { reason: reason.into(), given: "(withheld)".into() }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (given {:?})", self.reason, self.given)
    }
}
