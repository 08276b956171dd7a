//! The one HTTP error type. Every non-2xx answer is built here, with the contract's body
//! `{"error":{"code","message"}}`; 5xx answers are logged with their cause and never leak it.

use std::collections::BTreeMap;

pub mod responses;

use crate::{
    contract::{ErrorBody, ErrorCode, ErrorDetail},
    db::StoreError,
};
use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};

/// Field name -> reason, for 422 answers.
pub type FieldErrors = BTreeMap<String, String>;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    InvalidJson(String),
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("{0}")]
    Forbidden(&'static str),
    /// A 403 with its own code (`registration_closed`, `invite_invalid`, `pending_approval`).
    #[error("{1}")]
    Denied(ErrorCode, &'static str),
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    Conflict(String),
    #[error("request body is larger than 1 MiB")]
    TooLarge,
    /// 413 `file_too_large`: an uploaded document over `documents.max_bytes`.
    #[error("{0}")]
    FileTooLarge(String),
    /// A body of a type the route does not take (415).
    #[error("{0}")]
    UnsupportedType(String),
    #[error("validation failed")]
    Validation(FieldErrors),
    #[error("{message}")]
    RateLimited {
        retry_after_secs: u64,
        policy: String,
        message: String,
    },
    #[error("service temporarily unavailable")]
    Unavailable { retry_after_secs: u64 },
    /// 429 `budget_exceeded`: the requester's token budget is spent until `resets_at`.
    #[error("your usage budget is spent; it resets at {resets_at}")]
    BudgetExceeded {
        resets_at: String,
        retry_after_secs: u64,
    },
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    /// A 422 with a single field.
    pub fn field(name: &str, why: impl Into<String>) -> Self {
        ApiError::Validation(BTreeMap::from([(name.to_string(), why.into())]))
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::InvalidJson(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) | ApiError::Denied(..) => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge | ApiError::FileTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::RateLimited { .. } | ApiError::BudgetExceeded { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::BadRequest(_) => ErrorCode::BadRequest,
            ApiError::InvalidJson(_) => ErrorCode::InvalidJson,
            ApiError::Unauthorized(_) => ErrorCode::Unauthorized,
            ApiError::Forbidden(_) => ErrorCode::Forbidden,
            ApiError::Denied(code, _) => *code,
            ApiError::NotFound => ErrorCode::NotFound,
            ApiError::MethodNotAllowed => ErrorCode::MethodNotAllowed,
            ApiError::Conflict(_) => ErrorCode::Conflict,
            ApiError::TooLarge => ErrorCode::TooLarge,
            ApiError::FileTooLarge(_) => ErrorCode::FileTooLarge,
            ApiError::UnsupportedType(_) => ErrorCode::UnsupportedType,
            ApiError::Validation(_) => ErrorCode::Validation,
            ApiError::RateLimited { .. } => ErrorCode::RateLimited,
            ApiError::Unavailable { .. } => ErrorCode::Unavailable,
            ApiError::BudgetExceeded { .. } => ErrorCode::BudgetExceeded,
            ApiError::Internal(_) => ErrorCode::Internal,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::NotFound,
            StoreError::Conflict(what) => ApiError::Conflict(what),
            StoreError::Unavailable(_) => ApiError::Unavailable {
                retry_after_secs: 2,
            },
            StoreError::Other(e) => ApiError::Internal(e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message: self.to_string(),
                fields: match &self {
                    ApiError::Validation(fields) => Some(fields.clone()),
                    _ => None,
                },
                resets_at: match &self {
                    ApiError::BudgetExceeded { resets_at, .. } => Some(resets_at.clone()),
                    _ => None,
                },
            },
        };
        if let ApiError::Internal(cause) = &self {
            tracing::error!(error = ?cause, "internal error");
        }
        let mut response = (status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        match &self {
            ApiError::RateLimited {
                retry_after_secs,
                policy,
                ..
            } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
                if let Ok(v) = HeaderValue::from_str(policy) {
                    headers.insert("ratelimit-policy", v);
                }
                if let Ok(v) =
                    HeaderValue::from_str(&format!("remaining=0, reset={retry_after_secs}"))
                {
                    headers.insert("ratelimit", v);
                }
            }
            ApiError::Unavailable { retry_after_secs }
            | ApiError::BudgetExceeded {
                retry_after_secs, ..
            } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            _ => {}
        }
        response
    }
}
