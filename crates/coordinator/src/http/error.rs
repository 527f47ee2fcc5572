//! Errors of the HTTP admin API: `{"error": {"code": "JOB_NOT_FOUND", "message": "..."}}`
//! with the HTTP status of its code. Codes are the gRPC API's `ErrorCode` names (the same
//! error gets the same code on both transports), plus `NOT_FOUND`, `METHOD_NOT_ALLOWED` and
//! `PAYLOAD_TOO_LARGE`, which only HTTP has.

use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use proofmill_proto::ACTIVE_URL_HEADER;
use proofmill_proto::v1::{AdminError, ErrorCode};
use serde::Serialize;

#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// Where the active coordinator is, when this one is not it.
    active_url: Option<String>,
    /// The client API's `FailureReason` of the error, when it has one.
    reason: Option<String>,
}

/// The one mapping from an error code to its HTTP status.
fn http_status(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidArgument => StatusCode::BAD_REQUEST,
        ErrorCode::JobNotFound | ErrorCode::ProverUnavailable => StatusCode::NOT_FOUND,
        ErrorCode::FailedPrecondition
        | ErrorCode::StaleFencingToken
        | ErrorCode::VersionMismatch
        | ErrorCode::ProofTypeNotNeeded
        | ErrorCode::ReconnectRefused => StatusCode::CONFLICT,
        ErrorCode::InvalidProof => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorCode::SystemUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Internal | ErrorCode::Unspecified => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The code of a gRPC status (a call refused before its handler ran: a standby, a deposed
/// coordinator, a store that did not answer).
fn error_code(code: tonic::Code) -> ErrorCode {
    use tonic::Code;
    match code {
        Code::InvalidArgument | Code::OutOfRange => ErrorCode::InvalidArgument,
        Code::NotFound => ErrorCode::JobNotFound,
        Code::FailedPrecondition | Code::AlreadyExists | Code::Aborted => {
            ErrorCode::FailedPrecondition
        }
        Code::Unauthenticated | Code::PermissionDenied => ErrorCode::Unauthenticated,
        Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted => {
            ErrorCode::SystemUnavailable
        }
        _ => ErrorCode::Internal,
    }
}

impl ApiError {
    fn coded(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status: http_status(code),
            code: code.as_str_name(),
            message: message.into(),
            active_url: None,
            reason: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::coded(ErrorCode::InvalidArgument, message)
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::coded(ErrorCode::SystemUnavailable, message)
    }

    pub fn no_route(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code: "NOT_FOUND",
            message: message.into(),
            active_url: None,
            reason: None,
        }
    }

    /// An error of the client API: its gRPC code's name (`NOT_FOUND`, `ALREADY_EXISTS`,
    /// `RESOURCE_EXHAUSTED`, ...) with the matching HTTP status, and its failure reason.
    pub fn client(s: tonic::Status) -> ApiError {
        use tonic::Code;
        if matches!(
            s.code(),
            Code::Unauthenticated | Code::PermissionDenied | Code::Unavailable
        ) {
            return ApiError::from(s);
        }
        let (status, code) = match s.code() {
            Code::InvalidArgument | Code::OutOfRange => {
                (StatusCode::BAD_REQUEST, "INVALID_ARGUMENT")
            }
            Code::NotFound => (StatusCode::NOT_FOUND, "NOT_FOUND"),
            Code::AlreadyExists => (StatusCode::CONFLICT, "ALREADY_EXISTS"),
            Code::FailedPrecondition => (StatusCode::CONFLICT, "FAILED_PRECONDITION"),
            Code::ResourceExhausted => (StatusCode::PAYLOAD_TOO_LARGE, "RESOURCE_EXHAUSTED"),
            Code::DeadlineExceeded => (StatusCode::GATEWAY_TIMEOUT, "DEADLINE_EXCEEDED"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL"),
        };
        let reason = s
            .metadata()
            .get(crate::FAILURE_REASON_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        ApiError {
            status,
            code,
            message: s.message().to_string(),
            active_url: None,
            reason,
        }
    }

    pub fn no_method(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::METHOD_NOT_ALLOWED,
            code: "METHOD_NOT_ALLOWED",
            message: message.into(),
            active_url: None,
            reason: None,
        }
    }
}

impl From<crate::AuthError> for ApiError {
    fn from(e: crate::AuthError) -> ApiError {
        let (status, code) = match e {
            crate::AuthError::Forbidden { .. } => (StatusCode::FORBIDDEN, "PERMISSION_DENIED"),
            _ => (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED"),
        };
        debug_assert_eq!(status.as_u16(), e.http_status());
        ApiError {
            status,
            code,
            message: e.to_string(),
            active_url: None,
            reason: None,
        }
    }
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> ApiError {
        let code = ErrorCode::try_from(e.code).unwrap_or(ErrorCode::Internal);
        ApiError::coded(code, e.message)
    }
}

impl From<tonic::Status> for ApiError {
    fn from(s: tonic::Status) -> ApiError {
        let mut e = ApiError::coded(error_code(s.code()), s.message());
        e.active_url = s
            .metadata()
            .get(ACTIVE_URL_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        e
    }
}

impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> ApiError {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                code: "PAYLOAD_TOO_LARGE",
                message: format!("request body too large: {}", r.body_text()),
                active_url: None,
                reason: None,
            };
        }
        ApiError::invalid(format!("cannot read the request body: {}", r.body_text()))
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> ApiError {
        ApiError::invalid(r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> ApiError {
        ApiError::invalid(r.body_text())
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: Detail<'a>,
}

#[derive(Serialize)]
struct Detail<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    active_url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: Detail {
                code: self.code,
                message: &self.message,
                active_url: self.active_url.as_deref(),
                reason: self.reason.as_deref(),
            },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(v) = self
            .active_url
            .as_deref()
            .and_then(|u| HeaderValue::from_str(u).ok())
        {
            response.headers_mut().insert(ACTIVE_URL_HEADER, v);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_status_and_its_name() {
        let e = ApiError::from(AdminError {
            code: ErrorCode::FailedPrecondition as i32,
            message: "proven".into(),
        });
        assert_eq!(
            (e.status, e.code),
            (StatusCode::CONFLICT, "FAILED_PRECONDITION")
        );
        let e = ApiError::from(AdminError {
            code: 999,
            message: "?".into(),
        });
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        let e = ApiError::from(tonic::Status::unavailable("standby"));
        assert_eq!(
            (e.status, e.code),
            (StatusCode::SERVICE_UNAVAILABLE, "SYSTEM_UNAVAILABLE")
        );
    }
}
