use proofmill_proto::v1::ErrorCode;
use proofmill_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("configuration: {0}")]
    Config(String),
    #[error("coordinator is shutting down")]
    Unavailable,
    #[error("server: {0}")]
    Transport(String),
    #[error("prover {0} is not known here")]
    UnknownProver(String),
    #[error("no job {0}")]
    JobNotFound(String),
    /// A batch that is not in the store; the text starts with its number.
    #[error("no batch {0}")]
    UnknownBatch(String),
    /// A batch number taken by a batch of other content: invalid for the admin API (as it
    /// always was), `ALREADY_EXISTS` for the client API.
    #[error("invalid argument: {0}")]
    BatchExists(String),
    /// A batch input a backend refuses (`Backend::check_input`): invalid for the admin API,
    /// `INPUT_REFUSED` for the client API.
    #[error("invalid argument: {0}")]
    InputRefused(String),
    /// A chain this coordinator does not prove; the text names the ones it does.
    #[error("{0}")]
    UnknownChain(String),
    /// A valid call the target's state does not allow (e.g. replacing a proven batch).
    #[error("failed precondition: {0}")]
    FailedPrecondition(String),
}

impl CoordinatorError {
    /// Whether the request itself is wrong (no retry can succeed): every error answered
    /// `INVALID_ARGUMENT`.
    pub fn is_invalid(&self) -> bool {
        self.code() == ErrorCode::InvalidArgument
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            CoordinatorError::InvalidArgument(_)
            | CoordinatorError::BatchExists(_)
            | CoordinatorError::InputRefused(_)
            | CoordinatorError::Config(_) => ErrorCode::InvalidArgument,
            CoordinatorError::Unavailable | CoordinatorError::Store(StoreError::Unavailable(_)) => {
                ErrorCode::SystemUnavailable
            }
            CoordinatorError::UnknownProver(_) => ErrorCode::ProverUnavailable,
            CoordinatorError::JobNotFound(_)
            | CoordinatorError::UnknownBatch(_)
            | CoordinatorError::UnknownChain(_) => ErrorCode::JobNotFound,
            CoordinatorError::Store(StoreError::BatchConflict(_)) => ErrorCode::InvalidArgument,
            CoordinatorError::Store(StoreError::BatchNotFound(_)) => ErrorCode::JobNotFound,
            CoordinatorError::FailedPrecondition(_)
            | CoordinatorError::Store(StoreError::BatchProven(_) | StoreError::BatchOpen(_)) => {
                ErrorCode::FailedPrecondition
            }
            CoordinatorError::Store(_) | CoordinatorError::Transport(_) => ErrorCode::Internal,
        }
    }
}
