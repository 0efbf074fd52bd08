//! What can go wrong, phrased for the person at the terminal: every message says what happened
//! and, where there is one, what to do next.

use thiserror::Error;

/// An error that ends a command. `main` prints it as `error: <message>` and exits non-zero.
#[derive(Debug, Error)]
pub enum CliError {
    /// The command line is wrong in a way clap cannot see (a bad time, a bad duration, ...).
    #[error("{0}")]
    Usage(String),
    /// No kubeconfig could be loaded (and we are not inside a cluster).
    #[error("cannot load the kubeconfig: {0}")]
    Kubeconfig(String),
    /// The API server did not answer (connection refused, DNS, TLS, timeout).
    #[error("cannot reach the Kubernetes API at {url}: {cause}")]
    Unreachable {
        /// The server URL from the kubeconfig.
        url: String,
        /// The transport error, innermost cause last.
        cause: String,
    },
    /// The API server refused the credentials (401).
    #[error(
        "the Kubernetes API at {url} does not accept your credentials ({message}); check the user of your kubeconfig context"
    )]
    Unauthorized {
        /// The server URL.
        url: String,
        /// The server's message.
        message: String,
    },
    /// The kiln CustomResourceDefinitions are not served.
    #[error("the kiln CRDs are not installed in the cluster at {url} (missing: {missing}): kubectl apply -f crds/")]
    CrdsMissing {
        /// The server URL.
        url: String,
        /// The missing resources, comma separated.
        missing: String,
    },
    /// An object the command needs does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The command would do something kiln would not count, or that cannot work; nothing was
    /// written.
    #[error("{0}")]
    Refused(String),
    /// The API server refused a request (403, 409, 422, ...), with what we were doing.
    #[error("{context}: {message}")]
    Api {
        /// What the command was doing, e.g. "creating promotion x".
        context: String,
        /// The server's message.
        message: String,
        /// The HTTP status code.
        code: u16,
    },
    /// Reading or writing a local file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Anything else (serialization, a runtime failure).
    #[error("{0}")]
    Other(String),
}

/// The chain of an error's causes, outermost first, without repeats: what a person needs to see
/// when a connection fails ("client error (Connect): tcp connect error: Connection refused").
pub fn causes(err: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current: Option<&dyn std::error::Error> = Some(err);
    while let Some(e) = current {
        let text = e.to_string();
        // kube prefixes its variants ("ServiceError: ..."), and wrappers often repeat their
        // source's text: keep each piece once.
        let text = text.strip_prefix("ServiceError: ").or_else(|| text.strip_prefix("HyperError: ")).unwrap_or(&text);
        if !parts.iter().any(|p| p.contains(text)) {
            parts.push(text.to_string());
        }
        current = e.source();
    }
    parts.join(": ")
}
