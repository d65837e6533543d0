//! The error of every query parameter, content filters' included: which one, and why.

/// A query parameter that cannot be used, named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamError {
    pub parameter: String,
    pub detail: String,
}

impl ParamError {
    pub fn new(parameter: &str, detail: impl Into<String>) -> ParamError {
        ParamError {
            parameter: parameter.to_owned(),
            detail: detail.into(),
        }
    }
}
