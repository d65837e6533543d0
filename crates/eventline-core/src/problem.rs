//! The one table of error codes. Every error a client sees carries one of these codes;
//! its HTTP status, title and problem `type` come from here and nowhere else.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    MalformedJson,
    NotAnObject,
    InvalidField,
    UnknownField,
    InvalidBatch,
    InvalidParameter,
    InvalidGzip,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    OriginNotAllowed,
    KeyRequired,
    KeyInvalid,
    Forbidden,
    ContactSuppressed,
    RateLimited,
    IdConflict,
    BodyTooLarge,
    UnsupportedMediaType,
    IngestOverloaded,
    ServerBusy,
    StorageUnavailable,
    StreamsFull,
    ShuttingDown,
    Internal,
}

impl ErrorCode {
    pub const ALL: &'static [ErrorCode] = &[
        ErrorCode::MalformedJson,
        ErrorCode::NotAnObject,
        ErrorCode::InvalidField,
        ErrorCode::UnknownField,
        ErrorCode::InvalidBatch,
        ErrorCode::InvalidParameter,
        ErrorCode::InvalidGzip,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::RequestTimeout,
        ErrorCode::OriginNotAllowed,
        ErrorCode::KeyRequired,
        ErrorCode::KeyInvalid,
        ErrorCode::Forbidden,
        ErrorCode::ContactSuppressed,
        ErrorCode::RateLimited,
        ErrorCode::IdConflict,
        ErrorCode::BodyTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::IngestOverloaded,
        ErrorCode::ServerBusy,
        ErrorCode::StorageUnavailable,
        ErrorCode::StreamsFull,
        ErrorCode::ShuttingDown,
        ErrorCode::Internal,
    ];

    /// The stable, machine-readable name, also the last segment of the problem `type`.
    pub fn name(self) -> &'static str {
        self.row().0
    }

    pub fn status(self) -> u16 {
        self.row().1
    }

    pub fn title(self) -> &'static str {
        self.row().2
    }

    /// The RFC 9457 problem `type`: a URI reference relative to the server, where the
    /// documentation of each code lives in `docs/errors.md`.
    pub fn problem_type(self) -> String {
        format!("/problems/{}", self.name())
    }

    fn row(self) -> (&'static str, u16, &'static str) {
        match self {
            ErrorCode::MalformedJson => ("malformed-json", 400, "The body is not valid JSON"),
            ErrorCode::NotAnObject => ("not-an-object", 400, "An event must be a JSON object"),
            ErrorCode::InvalidField => ("invalid-field", 400, "A field of the event is invalid"),
            ErrorCode::UnknownField => (
                "unknown-field",
                400,
                "The event has a field Eventline does not know",
            ),
            ErrorCode::InvalidBatch => {
                ("invalid-batch", 400, "Some events of the batch are invalid")
            }
            ErrorCode::InvalidParameter => {
                ("invalid-parameter", 400, "A query parameter is invalid")
            }
            ErrorCode::InvalidGzip => ("invalid-gzip", 400, "The gzip body cannot be decoded"),
            ErrorCode::NotFound => ("not-found", 404, "No such resource"),
            ErrorCode::MethodNotAllowed => (
                "method-not-allowed",
                405,
                "Method not allowed on this resource",
            ),
            ErrorCode::RequestTimeout => (
                "request-timeout",
                408,
                "The request body took too long to arrive",
            ),
            ErrorCode::IdConflict => (
                "id-conflict",
                409,
                "An event with this id exists and differs",
            ),
            ErrorCode::BodyTooLarge => ("body-too-large", 413, "The body is too large"),
            ErrorCode::UnsupportedMediaType => (
                "unsupported-media-type",
                415,
                "Unsupported content type or encoding",
            ),
            ErrorCode::OriginNotAllowed => {
                ("origin-not-allowed", 403, "This origin may not use the API")
            }
            ErrorCode::KeyRequired => ("key-required", 401, "A key is required"),
            ErrorCode::KeyInvalid => ("key-invalid", 401, "The key or token is not valid"),
            ErrorCode::Forbidden => ("forbidden", 403, "This key may not do this"),
            ErrorCode::ContactSuppressed => (
                "contact-suppressed",
                403,
                "Events of this contact are refused",
            ),
            ErrorCode::RateLimited => ("rate-limited", 429, "Too many requests"),
            ErrorCode::IngestOverloaded => (
                "ingest-overloaded",
                429,
                "Too many events are waiting to be stored",
            ),
            ErrorCode::ServerBusy => (
                "server-busy",
                429,
                "The server is answering as many requests as it can",
            ),
            ErrorCode::StorageUnavailable => (
                "storage-unavailable",
                503,
                "The store cannot be used right now",
            ),
            ErrorCode::StreamsFull => ("streams-full", 503, "Too many live streams are open"),
            ErrorCode::ShuttingDown => ("shutting-down", 503, "The server is shutting down"),
            ErrorCode::Internal => ("internal", 500, "Internal error"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_statuses_are_errors() {
        let mut names: Vec<_> = ErrorCode::ALL.iter().map(|code| code.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ErrorCode::ALL.len());
        for code in ErrorCode::ALL {
            assert!((400..600).contains(&code.status()), "{code:?}");
        }
    }
}
