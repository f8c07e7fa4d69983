//! [`HubConfig`]: how the hub behaves, and the settings it refuses to run with.

use std::time::Duration;

use crate::limit::RateLimit;

/// How the hub behaves.
#[derive(Clone, Debug)]
pub struct HubConfig {
    /// The admin token, of at least [`MIN_TOKEN_CHARS`] characters; `None` runs the hub
    /// open (only allowed on loopback), and then it answers only requests sent to a
    /// loopback name from its own pages or `cors_origins`.
    pub admin_token: Option<String>,
    /// Largest request body, in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Most events in one append (413 beyond).
    pub max_batch: usize,
    /// Heartbeat timeout of runs created without one, in seconds.
    pub default_heartbeat_timeout_s: f64,
    /// Time to live of runs created without one, in seconds.
    pub default_ttl_s: f64,
    /// How often stall detection and retention run.
    pub sweep_interval: Duration,
    /// How often a run's feed checks the store for events appended by other processes.
    pub feed_poll_interval: Duration,
    /// Interval of SSE keep-alive comments.
    pub keep_alive: Duration,
    /// The base URL put in links (`urls` of a created run); by default
    /// `http://<Host header>`.
    pub public_url: Option<String>,
    /// How fast producers may append to one run (429 beyond); `None`: no limit.
    pub rate_limit: Option<RateLimit>,
    /// Web origins (`https://app.example.com`) whose pages may call the API from a
    /// browser (CORS), such as an AG-UI front end served elsewhere; `"*"` for any.
    /// Empty, the default: only the hub's own dashboard, from its own origin.
    pub cors_origins: Vec<String>,
    /// How long a client may take to send a request's headers, from its connection or
    /// from the first byte of the request; the connection is closed beyond.
    pub header_timeout: Duration,
    /// How long a client may take to send a request's body, from its headers: 408
    /// beyond.
    pub body_timeout: Duration,
    /// How long a keep-alive connection may stay idle between requests. A response
    /// that streams (SSE, a long poll) is not idle, nor is a WebSocket.
    pub idle_timeout: Duration,
    /// Most connections open at once (WebSockets included); beyond, new connections
    /// wait to be accepted until one closes. Keep it under the process's limit of open
    /// files, or the hub may fail to accept even `/healthz`.
    pub max_connections: usize,
}

/// Fewest characters of an admin token: a token a person could guess is no token.
pub const MIN_TOKEN_CHARS: usize = 16;

/// A setting of [`HubConfig`] the hub refuses to run with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The setting, as [`HubConfig`] names it (`admin_token`).
    pub setting: &'static str,
    /// What is wrong with it.
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

impl HubConfig {
    /// Checks what the types cannot: an admin token of at least [`MIN_TOKEN_CHARS`]
    /// characters, not all whitespace; timeouts above zero; room for a connection.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(token) = &self.admin_token {
            check_admin_token(token)?;
        }
        for (setting, timeout) in [
            ("header_timeout", self.header_timeout),
            ("body_timeout", self.body_timeout),
            ("idle_timeout", self.idle_timeout),
        ] {
            if timeout.is_zero() {
                return Err(ConfigError {
                    setting,
                    message: format!("{setting} must be longer than 0"),
                });
            }
        }
        if self.max_connections == 0 {
            return Err(ConfigError {
                setting: "max_connections",
                message: "max_connections must be at least 1".into(),
            });
        }
        Ok(())
    }
}

/// Checks an admin token as [`HubConfig::validate`] does.
pub fn check_admin_token(token: &str) -> Result<(), ConfigError> {
    let refuse = |message: String| ConfigError {
        setting: "admin_token",
        message,
    };
    if token.trim().is_empty() {
        return Err(refuse(
            "the admin token is empty or all whitespace: give a random one of at least 16 \
             characters (e.g. `openssl rand -hex 32`)"
                .into(),
        ));
    }
    let chars = token.chars().count();
    if chars < MIN_TOKEN_CHARS {
        return Err(refuse(format!(
            "the admin token has {chars} characters, fewer than {MIN_TOKEN_CHARS}: give a \
             random one (e.g. `openssl rand -hex 32`)"
        )));
    }
    Ok(())
}

/// The default ingest limit of one run, in events per second: far above what a
/// program reporting through the SDK sends (its ticks are throttled), so only a
/// runaway producer meets it.
pub const DEFAULT_EVENTS_PER_S: f64 = 10_000.0;

impl Default for HubConfig {
    fn default() -> HubConfig {
        HubConfig {
            admin_token: None,
            max_body_bytes: 4 * 1024 * 1024,
            max_batch: 1000,
            default_heartbeat_timeout_s: 60.0,
            default_ttl_s: 86_400.0,
            sweep_interval: Duration::from_secs(1),
            feed_poll_interval: Duration::from_secs(2),
            keep_alive: Duration::from_secs(15),
            public_url: None,
            rate_limit: Some(RateLimit::per_second(DEFAULT_EVENTS_PER_S)),
            cors_origins: Vec::new(),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(75),
            max_connections: 10_000,
        }
    }
}
