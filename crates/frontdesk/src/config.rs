//! Configuration: one typed [`Config`], layered defaults < file < environment < flags
//! (SPEC §5.3), validated once at start-up with errors that name the setting.
//!
//! The defaults are `config/default.toml`, embedded in the binary and documented there.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// The documented defaults, embedded.
pub const DEFAULTS: &str = include_str!("../../../config/default.toml");

/// Every key a config file or the environment may set. Keep in step with `RawSettings`
/// and `config/default.toml` (a unit test checks all three agree).
pub const KEYS: &[&str] = &[
    "listen",
    "data_dir",
    "state",
    "database",
    "bus",
    "node_id",
    "redis_prefix",
    "pipelines",
    "admin_email",
    "admin_password",
    "site_name",
    "operator_token",
    "smtp_url",
    "smtp_from",
    "log_format",
    "shutdown_timeout_ms",
    "visitor_message_burst",
    "visitor_message_rate",
    "ws_max_connections_per_ip",
];

/// Settings as read, before validation. Unknown keys in a file are refused.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSettings {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bus: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipelines: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_password: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub site_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operator_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub smtp_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub smtp_from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shutdown_timeout_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub visitor_message_burst: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub visitor_message_rate: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ws_max_connections_per_ip: Option<u32>,
}

/// A secret that never shows in `Debug` or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"[redacted]\"")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateBackend {
    Memory,
    Redis(Secret),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusBackend {
    Local,
    Redis(Secret),
}

/// Where and as whom e-mail is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Smtp {
    /// `smtp://` or `smtps://`; may carry a password.
    pub url: Secret,
    /// The `From` mailbox.
    pub from: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub state: StateBackend,
    /// A `sqlite://` or `postgres://` URL (it may carry a password, hence `Secret`).
    pub database: Secret,
    pub bus: BusBackend,
    pub node_id: Option<u16>,
    pub redis_prefix: String,
    pub pipelines: Option<PathBuf>,
    pub admin_email: String,
    pub admin_password: Option<Secret>,
    pub site_name: String,
    pub operator_token: Option<Secret>,
    /// Outbound e-mail, when configured.
    pub smtp: Option<Smtp>,
    pub log_format: LogFormat,
    pub shutdown_timeout_ms: u64,
    /// Chat messages one visitor may send at once, then per second (0: no limit).
    /// `Config::load` fills the documented defaults (20, 5); a `RawSettings` validated
    /// directly (tests, embedding) that leaves them unset gets no limit.
    pub visitor_message_burst: u32,
    pub visitor_message_rate: u32,
    /// Open sockets per client address on this node (0: no cap); the same rule for unset.
    pub ws_max_connections_per_ip: u32,
}

/// A setting that could not be read or is not valid. The message names the setting, its
/// environment variable and where the bad value came from.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl ConfigError {
    fn invalid(key: &str, why: impl fmt::Display) -> Self {
        ConfigError(format!("invalid setting `{key}` (FRONTDESK_{}): {why}", key.to_ascii_uppercase()))
    }
}

impl Config {
    /// Reads the layers: defaults < `file` (if any) < environment < `flags`.
    pub fn load(file: Option<&Path>, flags: &RawSettings) -> Result<Config, ConfigError> {
        Self::load_with_env(file, flags, Env::prefixed("FRONTDESK_").only(KEYS))
    }

    fn load_with_env(file: Option<&Path>, flags: &RawSettings, env: Env) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULTS));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError(format!("config file {} does not exist", path.display())));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        let raw: RawSettings = figment.merge(env).merge(Serialized::defaults(flags)).extract().map_err(describe)?;
        Self::validate(raw)
    }

    /// Checks every value and fills the derived defaults.
    pub fn validate(raw: RawSettings) -> Result<Config, ConfigError> {
        let listen_text = raw.listen.unwrap_or_default();
        let listen = listen_text.parse::<SocketAddr>().map_err(|_| {
            ConfigError::invalid("listen", format!("expected an address like 127.0.0.1:8080, got {listen_text:?}"))
        })?;
        let data_dir = raw.data_dir.unwrap_or_else(|| PathBuf::from("./frontdesk-data"));
        if data_dir.as_os_str().is_empty() {
            return Err(ConfigError::invalid("data_dir", "must not be empty"));
        }
        let state = match raw.state.as_deref().unwrap_or("memory") {
            "memory" => StateBackend::Memory,
            url if is_redis_url(url) => StateBackend::Redis(Secret(url.to_string())),
            other => {
                return Err(ConfigError::invalid(
                    "state",
                    format!("expected \"memory\" or a redis:// URL, got {other:?}"),
                ));
            }
        };
        let bus = match raw.bus.as_deref().unwrap_or("local") {
            "local" => BusBackend::Local,
            url if is_redis_url(url) => BusBackend::Redis(Secret(url.to_string())),
            other => {
                return Err(ConfigError::invalid(
                    "bus",
                    format!("expected \"local\" or a redis:// URL, got {other:?}"),
                ));
            }
        };
        let database = match raw.database.filter(|d| !d.is_empty()) {
            None => format!("sqlite://{}", data_dir.join("frontdesk.db").display()),
            Some(url) if ["sqlite://", "postgres://", "postgresql://"].iter().any(|p| url.starts_with(p)) => url,
            Some(other) => {
                return Err(ConfigError::invalid(
                    "database",
                    format!("expected a sqlite:// or postgres:// URL, got {:?}", scheme_of(&other)),
                ));
            }
        };
        let node_id = match raw.node_id {
            None => None,
            Some(n) if n <= u32::from(frontdesk_core::id::MAX_NODE_ID) => Some(n as u16),
            Some(n) => return Err(ConfigError::invalid("node_id", format!("{n} is out of range 0..=1023"))),
        };
        let admin_email = raw.admin_email.unwrap_or_default();
        if !admin_email.contains('@') {
            return Err(ConfigError::invalid("admin_email", format!("{admin_email:?} is not an email address")));
        }
        let admin_password = raw.admin_password.filter(|p| !p.is_empty()).map(Secret);
        if let Some(p) = &admin_password {
            if p.0.chars().count() < 8 {
                return Err(ConfigError::invalid("admin_password", "must be at least 8 characters"));
            }
        }
        let operator_token = raw.operator_token.filter(|t| !t.is_empty()).map(Secret);
        if let Some(t) = &operator_token {
            if t.0.len() < 16 {
                return Err(ConfigError::invalid("operator_token", "must be at least 16 characters"));
            }
        }
        let smtp = match (raw.smtp_url.filter(|u| !u.is_empty()), raw.smtp_from.filter(|f| !f.is_empty())) {
            (None, _) => None,
            (Some(url), _) if !(url.starts_with("smtp://") || url.starts_with("smtps://")) => {
                return Err(ConfigError::invalid(
                    "smtp_url",
                    format!("expected an smtp:// or smtps:// URL, got {:?}", scheme_of(&url)),
                ));
            }
            (Some(_), None) => {
                return Err(ConfigError::invalid(
                    "smtp_from",
                    "is required when smtp_url is set: the sender, e.g. \"Frontdesk <support@example.com>\"",
                ));
            }
            (Some(url), Some(from)) => Some(Smtp { url: Secret(url), from }),
        };
        let log_format = match raw.log_format.as_deref().unwrap_or("text") {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(ConfigError::invalid(
                    "log_format",
                    format!("expected \"text\" or \"json\", got {other:?}"),
                ));
            }
        };
        Ok(Config {
            listen,
            data_dir,
            state,
            database: Secret(database),
            bus,
            node_id,
            redis_prefix: raw.redis_prefix.unwrap_or_default(),
            pipelines: raw.pipelines.filter(|p| !p.as_os_str().is_empty()),
            admin_email,
            admin_password,
            site_name: raw.site_name.unwrap_or_else(|| "My site".to_string()),
            operator_token,
            smtp,
            log_format,
            shutdown_timeout_ms: raw.shutdown_timeout_ms.unwrap_or(10_000),
            visitor_message_burst: raw.visitor_message_burst.unwrap_or(20),
            visitor_message_rate: raw.visitor_message_rate.unwrap_or(0),
            ws_max_connections_per_ip: raw.ws_max_connections_per_ip.unwrap_or(0),
        })
    }
}

fn is_redis_url(url: &str) -> bool {
    url.starts_with("redis://") || url.starts_with("rediss://")
}

/// Only the scheme of a URL that may carry a password, for error messages.
fn scheme_of(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, _)) => format!("{scheme}://…"),
        None => url.chars().take(16).collect(),
    }
}

/// Turns figment's errors into one message per bad setting, naming it and its source.
fn describe(err: figment::Error) -> ConfigError {
    let lines: Vec<String> = err
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let from = e.metadata.as_ref().map(|m| {
                let source = m.source.as_ref().map(|s| format!(" {s}")).unwrap_or_default();
                format!(" (from {}{source})", m.name)
            });
            let what = match &e.kind {
                figment::error::Kind::UnknownField(field, _) => format!("unknown setting `{field}`"),
                kind => kind.to_string(),
            };
            if key.is_empty() {
                format!("{what}{}", from.unwrap_or_default())
            } else {
                format!(
                    "invalid setting `{key}` (FRONTDESK_{}){}: {what}",
                    key.to_ascii_uppercase(),
                    from.unwrap_or_default()
                )
            }
        })
        .collect();
    ConfigError(lines.join("; "))
}

#[cfg(test)]
// figment's Jail closures return its (large) error type; fine in tests.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use figment::Jail;

    fn flags() -> RawSettings {
        RawSettings::default()
    }

    fn err_of(r: Result<Config, ConfigError>) -> String {
        match r {
            Ok(c) => panic!("expected an error, got {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn nothing_set_gives_the_embedded_defaults() {
        Jail::expect_with(|_| {
            let c = Config::load(None, &flags()).expect("defaults");
            assert_eq!(c.listen, "127.0.0.1:8080".parse().expect("addr"));
            assert_eq!(c.data_dir, PathBuf::from("./frontdesk-data"));
            assert_eq!(c.state, StateBackend::Memory);
            assert_eq!(c.bus, BusBackend::Local);
            assert_eq!(c.database.0, "sqlite://./frontdesk-data/frontdesk.db");
            assert_eq!(c.node_id, None);
            assert_eq!(c.log_format, LogFormat::Text);
            assert_eq!((c.visitor_message_burst, c.visitor_message_rate), (20, 5));
            assert_eq!(c.ws_max_connections_per_ip, 200);
            Ok(())
        });
    }

    #[test]
    fn file_then_env_then_flags_take_precedence() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "fd.toml",
                "listen = \"127.0.0.1:9001\"\nnode_id = 3\nsite_name = \"From file\"\nbus = \"redis://file\"\n",
            )?;
            jail.set_env("FRONTDESK_LISTEN", "127.0.0.1:9002");
            jail.set_env("FRONTDESK_NODE_ID", "4");
            let mut f = flags();
            f.listen = Some("127.0.0.1:9003".into());
            let c = Config::load(Some(Path::new("fd.toml")), &f).expect("config");
            assert_eq!(c.listen.port(), 9003, "flags beat env");
            assert_eq!(c.node_id, Some(4), "env beats file");
            assert_eq!(c.site_name, "From file", "file beats defaults");
            assert_eq!(c.bus, BusBackend::Redis(Secret("redis://file".into())));
            Ok(())
        });
    }

    #[test]
    fn derived_database_follows_the_data_dir() {
        Jail::expect_with(|jail| {
            jail.set_env("FRONTDESK_DATA_DIR", "/var/lib/fd");
            let c = Config::load(None, &flags()).expect("config");
            assert_eq!(c.database.0, "sqlite:///var/lib/fd/frontdesk.db");
            Ok(())
        });
    }

    #[test]
    fn a_bad_value_names_the_setting() {
        Jail::expect_with(|jail| {
            jail.set_env("FRONTDESK_NODE_ID", "abc");
            let e = err_of(Config::load(None, &flags()));
            assert!(e.contains("node_id") && e.contains("FRONTDESK_NODE_ID"), "{e}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("FRONTDESK_NODE_ID", "5000");
            let e = err_of(Config::load(None, &flags()));
            assert!(e.contains("`node_id`") && e.contains("0..=1023"), "{e}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("FRONTDESK_STATE", "mongodb://x");
            let e = err_of(Config::load(None, &flags()));
            assert!(e.contains("`state`") && e.contains("redis://"), "{e}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("FRONTDESK_LISTEN", "localhost");
            let e = err_of(Config::load(None, &flags()));
            assert!(e.contains("`listen`"), "{e}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("FRONTDESK_DATABASE", "mysql://root:hunter2@db/x");
            let e = err_of(Config::load(None, &flags()));
            assert!(e.contains("`database`"), "{e}");
            assert!(!e.contains("hunter2"), "a password must never reach a message: {e}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("FRONTDESK_BUS", "kafka");
            let e = err_of(Config::load(None, &flags()));
            assert!(e.contains("`bus`"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn smtp_is_off_unless_configured_and_needs_a_sender() {
        Jail::expect_with(|jail| {
            assert_eq!(Config::load(None, &flags()).expect("defaults").smtp, None);
            jail.set_env("FRONTDESK_SMTP_URL", "smtp://u:s3cr3t@127.0.0.1:2525");
            let e = err_of(Config::load(None, &flags()));
            assert!(e.contains("`smtp_from`") && !e.contains("s3cr3t"), "{e}");
            jail.set_env("FRONTDESK_SMTP_FROM", "Frontdesk <fd@shop.example>");
            let c = Config::load(None, &flags()).expect("config");
            let smtp = c.smtp.clone().expect("smtp");
            assert_eq!(
                (smtp.url.0.as_str(), smtp.from.as_str()),
                ("smtp://u:s3cr3t@127.0.0.1:2525", "Frontdesk <fd@shop.example>")
            );
            assert!(!format!("{c:?}").contains("s3cr3t"), "the SMTP password never shows");
            jail.set_env("FRONTDESK_SMTP_URL", "http://u:s3cr3t@mail.example");
            let e = err_of(Config::load(None, &flags()));
            assert!(e.contains("`smtp_url`") && !e.contains("s3cr3t"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn an_unknown_key_in_a_file_is_refused() {
        Jail::expect_with(|jail| {
            jail.create_file("fd.toml", "lisen = \"127.0.0.1:1\"\n")?;
            let e = err_of(Config::load(Some(Path::new("fd.toml")), &flags()));
            assert!(e.contains("lisen"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn a_missing_config_file_is_an_error() {
        Jail::expect_with(|_| {
            let e = err_of(Config::load(Some(Path::new("nope.toml")), &flags()));
            assert!(e.contains("nope.toml"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn secrets_never_show_in_debug() {
        Jail::expect_with(|jail| {
            jail.set_env("FRONTDESK_ADMIN_PASSWORD", "correct horse battery");
            jail.set_env("FRONTDESK_DATABASE", "postgres://u:s3cr3t@h/db");
            let c = Config::load(None, &flags()).expect("config");
            let dbg = format!("{c:?}");
            assert!(!dbg.contains("correct horse") && !dbg.contains("s3cr3t"), "{dbg}");
            Ok(())
        });
    }

    #[test]
    fn keys_defaults_and_struct_agree() {
        let defaults: toml_keys::Keys = DEFAULTS.into();
        for key in defaults.0 {
            assert!(KEYS.contains(&key.as_str()), "default.toml sets `{key}`, unknown to KEYS");
        }
        let all = serde_json::to_value(RawSettings {
            listen: Some(String::new()),
            data_dir: Some(PathBuf::new()),
            state: Some(String::new()),
            database: Some(String::new()),
            bus: Some(String::new()),
            node_id: Some(0),
            redis_prefix: Some(String::new()),
            pipelines: Some(PathBuf::new()),
            admin_email: Some(String::new()),
            admin_password: Some(String::new()),
            site_name: Some(String::new()),
            operator_token: Some(String::new()),
            smtp_url: Some(String::new()),
            smtp_from: Some(String::new()),
            log_format: Some(String::new()),
            shutdown_timeout_ms: Some(0),
            visitor_message_burst: Some(0),
            visitor_message_rate: Some(0),
            ws_max_connections_per_ip: Some(0),
        })
        .expect("json");
        let fields: Vec<&str> = all.as_object().expect("map").keys().map(String::as_str).collect();
        let mut keys = KEYS.to_vec();
        keys.sort_unstable();
        let mut fields = fields;
        fields.sort_unstable();
        assert_eq!(fields, keys);
    }

    mod toml_keys {
        /// The top-level keys a TOML text sets (commented-out keys do not count).
        pub struct Keys(pub Vec<String>);
        impl From<&str> for Keys {
            fn from(text: &str) -> Self {
                Keys(
                    text.lines()
                        .filter(|l| !l.trim_start().starts_with('#'))
                        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim().to_string()))
                        .filter(|k| !k.is_empty())
                        .collect(),
                )
            }
        }
    }
}
