//! How an API error is classified: the one rule both binaries retry by. Pure: it reads kube's
//! error type and does no I/O.
//!
//! Transient, retried with backoff: `408 Request Timeout`, `429 Too Many Requests`, `500`,
//! `502`, `503` and `504`, and failures to reach the server or read its answer (connection
//! errors, timeouts of the HTTP stack). Everything else is permanent: `400`, `401`, `403`,
//! `404`, `409`, `410`, `422`, other statuses, and errors that do not come from the server at
//! all (a request that cannot be built, an answer that cannot be decoded).
//!
//! `409 Conflict` is permanent here because sending the same request again conflicts again;
//! call sites where a conflict means something else decide it themselves, and say so:
//! - the controller's Job create takes `409 AlreadyExists` as a Job of the same deterministic
//!   name (running: wait for it; finished: delete it and create again);
//! - its Lease updates take `409` as another replica having won the race;
//! - a scan Job's server-side apply of a result retries a `409`: an apply restates the whole
//!   intent, and two Jobs racing to create the same result (the loser gets `AlreadyExists`)
//!   are resolved by applying again.

/// The HTTP status of an API error, if the server answered with one.
pub fn status_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// Whether an HTTP status may go away by itself (see the module documentation).
pub fn is_transient_status(code: u16) -> bool {
    matches!(code, 408 | 429 | 500 | 502 | 503 | 504)
}

/// Whether an API error may go away by itself, so that the same request is worth sending again
/// after a pause.
pub fn is_transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(status) => is_transient_status(status.code),
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => true,
        _ => false,
    }
}

/// Whether an API error is a `404 Not Found`.
pub fn is_not_found(e: &kube::Error) -> bool {
    status_code(e) == Some(404)
}

/// Whether an API error is a `409 Conflict` (or `AlreadyExists`).
pub fn is_conflict(e: &kube::Error) -> bool {
    status_code(e) == Some(409)
}

#[cfg(test)]
mod tests {
    use kube::core::Status;

    use super::*;

    fn api(code: u16) -> kube::Error {
        kube::Error::Api(Status::failure("x", "y").with_code(code).boxed())
    }

    #[test]
    fn transient_and_permanent_statuses() {
        for code in [408, 429, 500, 502, 503, 504] {
            assert!(is_transient(&api(code)), "{code} is transient");
        }
        for code in [400, 401, 403, 404, 409, 410, 422, 501] {
            assert!(!is_transient(&api(code)), "{code} is permanent");
        }
    }

    #[test]
    fn connection_errors_are_transient_other_client_errors_are_not() {
        assert!(is_transient(&kube::Error::Service(
            "connection reset".into()
        )));
        assert!(is_transient(&kube::Error::ReadEvents(
            std::io::Error::other("reset")
        )));
        assert!(!is_transient(&kube::Error::LinesCodecMaxLineLengthExceeded));
        assert!(!is_transient(&kube::Error::TlsRequired));
    }

    #[test]
    fn statuses() {
        assert_eq!(status_code(&api(404)), Some(404));
        assert_eq!(status_code(&kube::Error::TlsRequired), None);
        assert!(is_not_found(&api(404)) && !is_not_found(&api(409)));
        assert!(is_conflict(&api(409)) && !is_conflict(&api(404)));
    }
}
