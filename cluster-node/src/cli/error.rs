//! Why a command failed, and the exit code each failure maps to
//! (`ipfs-cluster-ctl`'s codes, cli.md §1.6).

use std::time::Duration;

use crate::api::client::ClientError;

/// Exit code when the API answered an error.
pub const EXIT_API_ERROR: i32 = 2;
/// Exit code for local mistakes and unreachable peers.
pub const EXIT_FAILURE: i32 = 1;
/// Exit code when `--wait-timeout` expired first (upstream's value).
pub const EXIT_WAIT_TIMEOUT: i32 = 62;

/// A failed command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// What the user typed is not usable; nothing was sent.
    #[error("{0}")]
    Argument(String),
    /// Nothing answered at the API address.
    #[error("the peer at {host} is not reachable: {detail}")]
    Unreachable {
        /// The `--host` given.
        host: String,
        /// What the connection attempt said.
        detail: String,
    },
    /// The peer did not answer within `--timeout`.
    #[error("the peer at {host} did not answer within {}", humantime_like(*.after))]
    Timeout {
        /// The `--host` given.
        host: String,
        /// The timeout.
        after: Duration,
    },
    /// The API answered an error.
    #[error("the API answered {code}: {message}")]
    Api {
        /// HTTP status (500 for a stream that failed midway).
        code: u16,
        /// The API's message.
        message: String,
    },
    /// The answer could not be understood.
    #[error("{0}")]
    Client(ClientError),
    /// A peer reached a status from which the wanted one cannot follow.
    #[error("error waiting for pin status: {cid} is {status} on {peer}{}", detail(.error))]
    WaitFailed {
        /// The CID waited for.
        cid: String,
        /// The peer (name or id) in the bad status.
        peer: String,
        /// Its status.
        status: String,
        /// Its error message, if any.
        error: String,
    },
    /// `--wait-timeout` expired before the status was reached.
    #[error("error waiting for pin status: {cid} did not become {target} within {}", humantime_like(*.after))]
    WaitTimeout {
        /// The CID waited for.
        cid: String,
        /// The status waited for.
        target: String,
        /// The wait timeout.
        after: Duration,
    },
    /// Writing the output failed.
    #[error("writing the output: {0}")]
    Output(#[from] std::io::Error),
}

fn detail(error: &str) -> String {
    if error.is_empty() {
        String::new()
    } else {
        format!(": {error}")
    }
}

fn humantime_like(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

impl CliError {
    /// The process exit code for this failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Api { .. } => EXIT_API_ERROR,
            CliError::Client(e) if e.code() != 0 => EXIT_API_ERROR,
            CliError::WaitTimeout { .. } => EXIT_WAIT_TIMEOUT,
            _ => EXIT_FAILURE,
        }
    }

    /// The API's error object (`{"code","message"}`) when the API answered
    /// one: what `--enc json` prints on stdout.
    pub fn api_body(&self) -> Option<crate::api::types::ErrorBody> {
        match self {
            CliError::Api { code, message } => Some(crate::api::types::ErrorBody {
                code: *code,
                message: message.clone(),
            }),
            CliError::Client(ClientError::Stream { message, .. }) => {
                Some(crate::api::types::ErrorBody {
                    code: 500,
                    message: message.clone(),
                })
            }
            _ => None,
        }
    }

    /// A client failure in the words of the CLI (`host` names the peer).
    pub fn from_client(host: &str, error: ClientError) -> CliError {
        match error {
            ClientError::Transport(detail) => CliError::Unreachable {
                host: host.to_string(),
                detail,
            },
            ClientError::Timeout(after) => CliError::Timeout {
                host: host.to_string(),
                after,
            },
            ClientError::Api { code, message } => CliError::Api { code, message },
            other => CliError::Client(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_upstream() {
        let api = CliError::from_client(
            "h",
            ClientError::Api {
                code: 401,
                message: "unauthorized: access denied".into(),
            },
        );
        assert_eq!(api.exit_code(), 2);
        assert_eq!(
            api.to_string(),
            "the API answered 401: unauthorized: access denied"
        );
        let down =
            CliError::from_client("/ip4/127.0.0.1/tcp/1", ClientError::Transport("x".into()));
        assert_eq!(down.exit_code(), 1);
        assert!(down
            .to_string()
            .contains("/ip4/127.0.0.1/tcp/1 is not reachable"));
        let wait = CliError::WaitTimeout {
            cid: "c".into(),
            target: "pinned".into(),
            after: Duration::from_secs(2),
        };
        assert_eq!(wait.exit_code(), 62);
    }
}
