//! Parsing `router.toml`: defaults, every key of the documented contract, and diagnostics
//! that point at the right `line:col`.

use std::path::Path;

use super::check::endpoints::parse_url;
use super::check::hint;
use super::diagnostic::line_column;
use super::file::ConfigFile;
use super::*;
use crate::deliver::retry::RetryPolicy;
use crate::deliver::signing::SigningKey;
use crate::model::secret::{self, Secret};
use crate::payload::format::Format;
use crate::state::{Backend, DatabaseTls, StateSettings};
use std::time::Duration;

/// A folder with a recording, a secret file and a token file that configs can point at.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("run.jsonl"), "").unwrap();
        std::fs::write(
            dir.path().join("signing"),
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("token"), "Bearer t0ken\n").unwrap();
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `name` as a TOML string.
    fn toml(&self, name: &str) -> String {
        format!("{:?}", self.path(name).display().to_string())
    }

    fn source(&self) -> String {
        format!(
            "[source]\nkind = \"replay\"\npath = {}\n",
            self.toml("run.jsonl")
        )
    }

    fn parse(&self, text: &str) -> Result<Config, ConfigError> {
        Config::parse(&self.path("router.toml"), text)
    }

    /// The problems of a config that must not parse.
    fn problems(&self, text: &str) -> Vec<Diagnostic> {
        match self.parse(text) {
            Ok(_) => panic!("expected problems in:\n{text}"),
            Err(ConfigError::Invalid(problems)) => problems,
            Err(e) => panic!("unexpected error {e}"),
        }
    }
}

/// The 1-based (line, column) of the first `needle` in `text`.
fn place(text: &str, needle: &str) -> (usize, usize) {
    let offset = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle} not in {text}"));
    line_column(text, offset)
}

fn assert_at(problem: &Diagnostic, text: &str, needle: &str, message: &str) {
    let (line, column) = place(text, needle);
    assert_eq!(
        (problem.line, problem.column),
        (Some(line), Some(column)),
        "{problem}"
    );
    assert!(
        problem.message.contains(message),
        "{:?} lacks {message:?}",
        problem.message
    );
}

#[test]
fn defaults() {
    let files = Files::new();
    let text = format!(
        "{}\n[[endpoints]]\nname = \"a\"\nurl = \"http://127.0.0.1:8080/kfp\"\n",
        files.source()
    );
    let config = files.parse(&text).unwrap();
    assert_eq!(
        config.source,
        SourceSettings::Replay {
            path: files.path("run.jsonl"),
            rate: None
        }
    );
    assert_eq!(
        config.state,
        StateSettings {
            dir: "/var/lib/kfp-event-router".into(),
            backend: Backend::Redb,
            claim_ttl: std::time::Duration::from_secs(15),
        }
    );
    assert_eq!(config.listen, "127.0.0.1:9090".parse().unwrap());
    assert_eq!(config.endpoints.len(), 1);
    let e = &config.endpoints[0];
    assert_eq!(e.name(), "a");
    assert_eq!(e.delivery.url.as_str(), "http://127.0.0.1:8080/kfp");
    assert_eq!(e.payload.format, Format::Kfp);
    assert_eq!(e.delivery.timeout, Duration::from_secs(15));
    assert_eq!(e.delivery.concurrency, 64);
    assert_eq!(e.route.reasons, None);
    assert_eq!(e.route.namespaces, None);
    assert_eq!(e.delivery.signing_key, None);
    assert!(e.delivery.headers.is_empty());
    assert_eq!(e.delivery.retry, RetryPolicy::default());
    let schedule: Vec<u64> = e
        .delivery
        .retry
        .schedule
        .iter()
        .map(Duration::as_secs)
        .collect();
    assert_eq!(
        schedule,
        [0, 5, 300, 1800, 7200, 18000, 36000, 36000],
        "the Standard Webhooks schedule"
    );
    assert_eq!(e.delivery.retry.max_attempts, 8);
    assert_eq!(e.delivery.retry.max_elapsed, Duration::from_secs(36 * 3600));
    assert!(e.route.accepts("AnyReason", "any-namespace"));
    assert!(config.watched.contains(&files.path("router.toml")));
}

#[test]
fn every_key_of_the_contract_parses() {
    let files = Files::new();
    let subscribers = files.path("subscribers");
    std::fs::create_dir(&subscribers).unwrap();
    std::fs::write(
        subscribers.join("legacy-team"),
        "https://legacy.example.com/hook\n",
    )
    .unwrap();
    std::fs::write(subscribers.join(".hidden"), "not even a url").unwrap();
    let text = format!(
        r#"subscribers_dir = {subscribers}

[source]
kind = "replay"
path = {recording}
rate = 50.0

[state]
dir = "/tmp/router-state"

[server]
listen = "0.0.0.0:9191"

[[endpoints]]
name = "all"
url = "https://hooks.example.com/kfp?token=abc"
format = "cloudevents"
event_types = ["WorkflowFailed", "WorkflowSucceeded"]
namespaces = ["kubeflow", "team-a"]
signing_secret = {{ file = {signing} }}
headers = {{ "X-Team" = "ml", Authorization = {{ file = {token} }}, "X-Path" = {{ env = "PATH" }} }}
timeout = "5s"
concurrency = 8
[endpoints.retry]
max_attempts = 3
max_elapsed = "1h"
schedule = ["0s", "1s", "5s"]
jitter = 0.5

[[endpoints]]
name = "extended"
url = "http://127.0.0.1:8080/x"
format = "extended"
"#,
        subscribers = files.toml("subscribers"),
        recording = files.toml("run.jsonl"),
        signing = files.toml("signing"),
        token = files.toml("token"),
    );
    let config = files.parse(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        config.source,
        SourceSettings::Replay {
            path: files.path("run.jsonl"),
            rate: Some(50.0)
        }
    );
    assert_eq!(config.state.dir, Path::new("/tmp/router-state"));
    assert_eq!(config.state.backend, Backend::Redb);
    assert_eq!(config.listen, "0.0.0.0:9191".parse().unwrap());
    let names: Vec<&str> = config.endpoints.iter().map(|e| e.name()).collect();
    assert_eq!(
        names,
        ["all", "extended", "legacy-team"],
        "tables first, then one per subscriber file"
    );

    let all = &config.endpoints[0];
    assert_eq!(
        all.delivery.url.as_str(),
        "https://hooks.example.com/kfp?token=abc"
    );
    assert_eq!(all.payload.format, Format::Cloudevents);
    assert!(all.route.accepts("WorkflowFailed", "team-a"));
    assert!(
        !all.route.accepts("WorkflowRunning", "team-a"),
        "event_types"
    );
    assert!(
        !all.route.accepts("WorkflowFailed", "default"),
        "namespaces"
    );
    let key =
        SigningKey::from_secrets(&[Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into())])
            .unwrap();
    assert_eq!(
        all.delivery.signing_key.as_ref(),
        Some(&key),
        "trimmed file contents"
    );
    assert_eq!(all.delivery.headers["x-team"], "ml");
    assert!(!all.delivery.headers["x-team"].is_sensitive());
    assert_eq!(all.delivery.headers["authorization"], "Bearer t0ken");
    assert!(
        all.delivery.headers["authorization"].is_sensitive(),
        "secret headers are marked sensitive"
    );
    assert_eq!(
        all.delivery.headers["x-path"],
        std::env::var("PATH").unwrap().as_str()
    );
    assert!(all.delivery.headers["x-path"].is_sensitive());
    assert_eq!(all.delivery.timeout, Duration::from_secs(5));
    assert_eq!(all.delivery.concurrency, 8);
    assert_eq!(all.delivery.retry.max_attempts, 3);
    assert_eq!(all.delivery.retry.max_elapsed, Duration::from_secs(3600));
    assert_eq!(
        all.delivery.retry.schedule,
        [0, 1, 5].map(Duration::from_secs)
    );
    assert_eq!(all.delivery.retry.jitter, 0.5);

    assert_eq!(config.endpoints[1].payload.format, Format::Extended);
    let legacy = &config.endpoints[2];
    assert_eq!(
        *legacy,
        Endpoint::subscriber(
            "legacy-team".into(),
            "https://legacy.example.com/hook".parse().unwrap()
        )
    );
    assert_eq!(legacy.payload.format, Format::Kfp);

    for watched in [
        files.path("router.toml"),
        files.path("signing"),
        files.path("token"),
        subscribers,
    ] {
        assert!(
            config.watched.contains(&watched),
            "{} is watched",
            watched.display()
        );
    }
}

#[test]
fn unknown_keys_are_errors_at_their_place() {
    let files = Files::new();
    let text = format!(
        "{}\n[[endpoints]]\nname = \"a\"\nurl = \"http://h/\"\nformt = \"kfp\"\n",
        files.source()
    );
    let problems = files.problems(&text);
    assert_eq!(problems.len(), 1);
    assert_at(&problems[0], &text, "formt", "unknown field `formt`");
    assert_eq!(
        problems[0].to_string(),
        format!(
            "{}:8:1: {}",
            files.path("router.toml").display(),
            problems[0].message
        )
    );

    let text = format!(
        "{}\n[state]\ndir = \"/x\"\nlisten = \"127.0.0.1:1\"\n",
        files.source()
    );
    assert_at(
        &files.problems(&text)[0],
        &text,
        "listen",
        "unknown field `listen`",
    );
}

#[test]
fn values_are_checked_at_their_place() {
    let files = Files::new();
    let text = format!(
        r#"{}rate = 0.0

[[endpoints]]
name = "a"
url = "hooks.example.com/no-scheme"
concurrency = 0
signing_secret = {{ env = "KFP_ROUTER_UNIT_TEST_UNSET" }}
headers = {{ "bad header" = "x" }}
[endpoints.retry]
max_attempts = 0

[[endpoints]]
name = "a"
url = "ftp://example.com/"
"#,
        files.source()
    );
    let problems = files.problems(&text);
    let messages: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(problems.len(), 8, "{messages:#?}");
    assert_at(&problems[0], &text, "0.0", "source.rate: must be above 0");
    assert_at(
        &problems[1],
        &text,
        "\"hooks.example.com",
        "endpoints[0].url: invalid URL",
    );
    assert_at(
        &problems[2],
        &text,
        "{ env",
        "KFP_ROUTER_UNIT_TEST_UNSET is not set",
    );
    assert_at(
        &problems[3],
        &text,
        "\"x\"",
        "endpoints[0].headers.bad header: not a valid header name",
    );
    assert_at(
        &problems[4],
        &text,
        "0\nsigning",
        "endpoints[0].concurrency: must be at least 1",
    );
    assert_at(
        &problems[5],
        &text,
        "0\n\n[[endpoints]]\nname = \"a\"\nurl = \"ftp",
        "endpoints[0].retry.max_attempts: must be at least 1",
    );
    let second = text.rfind("\"a\"").unwrap();
    assert_eq!((problems[6].line, problems[6].column), {
        let (l, c) = line_column(&text, second);
        (Some(l), Some(c))
    });
    assert!(
        problems[6]
            .message
            .contains("another endpoint is already named \"a\"")
    );
    assert_at(
        &problems[7],
        &text,
        "\"ftp:",
        "scheme \"ftp\" is not http or https",
    );
}

#[test]
fn bad_durations_and_types_point_at_the_value() {
    let files = Files::new();
    let text = format!(
        "{}\n[[endpoints]]\nname = \"a\"\nurl = \"http://h/\"\ntimeout = \"5 parsecs\"\n",
        files.source()
    );
    let problems = files.problems(&text);
    assert_at(
        &problems[0],
        &text,
        "\"5 parsecs\"",
        "invalid duration \"5 parsecs\"",
    );

    let text = format!(
        "{}\n[[endpoints]]\nname = \"a\"\nurl = \"http://h/\"\nformat = \"xml\"\n",
        files.source()
    );
    let problems = files.problems(&text);
    assert_at(&problems[0], &text, "\"xml\"", "xml");
}

#[test]
fn urls_and_secrets_never_appear_in_messages() {
    let files = Files::new();
    std::fs::write(files.path("bad-secret"), "whsec_SECRET-not-base64!!").unwrap();
    let text = format!(
        "{}\n[[endpoints]]\nname = \"a\"\nurl = \"http//hooks.example.com/SECRET-TOKEN\"\nsigning_secret = {{ file = {} }}\n",
        files.source(),
        files.toml("bad-secret")
    );
    let problems = files.problems(&text);
    assert_eq!(problems.len(), 2);
    for p in &problems {
        assert!(!p.to_string().contains("SECRET"), "{p}");
    }
    assert!(
        parse_url("http://[::1")
            .unwrap_err()
            .starts_with("invalid URL")
    );
    assert_eq!(
        parse_url("https://h.example/SECRET").unwrap().path(),
        "/SECRET"
    );
    assert!(
        !parse_url("mailto:SECRET@example.com")
            .unwrap_err()
            .contains("SECRET")
    );
}

#[test]
fn subscribers_dir_problems_name_the_file() {
    let files = Files::new();
    let subscribers = files.path("subscribers");
    std::fs::create_dir(&subscribers).unwrap();
    std::fs::write(subscribers.join("broken"), "not a url\n").unwrap();
    std::fs::write(subscribers.join("a"), "http://h/a\n").unwrap();
    let text = format!(
        "subscribers_dir = {}\n{}\n[[endpoints]]\nname = \"a\"\nurl = \"http://h/\"\n",
        files.toml("subscribers"),
        files.source()
    );
    let problems = files.problems(&text);
    let broken = problems
        .iter()
        .find(|p| p.path == subscribers.join("broken"))
        .expect("the broken file");
    assert_eq!((broken.line, broken.column), (None, None));
    assert!(
        broken
            .message
            .starts_with("subscriber \"broken\": invalid URL"),
        "{broken}"
    );
    let clash = problems
        .iter()
        .find(|p| p.message.contains("has the name of an endpoint"))
        .unwrap();
    assert_at(clash, &text, "\"", "subscribers_dir");

    let text = format!(
        "subscribers_dir = \"/nonexistent/kfp-subscribers\"\n{}",
        files.source()
    );
    assert_at(
        &files.problems(&text)[0],
        &text,
        "\"/nonexistent",
        "cannot read /nonexistent/kfp-subscribers",
    );
}

#[test]
fn a_misplaced_top_level_key_gets_a_hint() {
    let files = Files::new();
    let text = format!(
        "{}\n[[endpoints]]\nname = \"a\"\nurl = \"http://h/\"\n[endpoints.retry]\nmax_attempts = 2\nsubscribers_dir = \"/x\"\n",
        files.source()
    );
    let problems = files.problems(&text);
    assert_at(
        &problems[0],
        &text,
        "subscribers_dir",
        "unknown field `subscribers_dir`",
    );
    assert!(
        problems[0]
            .message
            .contains("`subscribers_dir` is a top-level key"),
        "{}",
        problems[0]
    );
    assert_eq!(
        hint("unknown field `bogus`\n"),
        "unknown field `bogus`",
        "no hint for other keys"
    );
}

#[test]
fn the_replay_source_needs_a_readable_path() {
    let files = Files::new();
    let text = "[source]\nkind = \"replay\"\n";
    assert_at(
        &files.problems(text)[0],
        text,
        "\"replay\"",
        "needs the path of a recording",
    );
    let text = "[source]\nkind = \"replay\"\npath = \"/nonexistent/run.jsonl\"\n";
    assert_at(
        &files.problems(text)[0],
        text,
        "\"/nonexistent",
        "is not a readable file",
    );
}

#[test]
fn line_and_column_count_characters() {
    assert_eq!(line_column("abc", 0), (1, 1));
    assert_eq!(line_column("abc", 2), (1, 3));
    assert_eq!(line_column("a\nbc", 2), (2, 1));
    assert_eq!(
        line_column("a\n\u{e9}\u{e9}=x", "a\n\u{e9}\u{e9}".len()),
        (2, 3),
        "é is one column"
    );
    assert_eq!(line_column("a\r\nb", 3), (2, 1));
    assert_eq!(line_column("ab", 99), (1, 3), "clamped to the end");
    let d = Diagnostic {
        path: "r.toml".into(),
        line: None,
        column: None,
        message: "m".into(),
    };
    assert_eq!(d.to_string(), "r.toml: m");
    let e = ConfigError::Invalid(vec![
        Diagnostic {
            line: Some(1),
            column: Some(2),
            ..d.clone()
        },
        d,
    ]);
    assert_eq!(e.to_string(), "r.toml:1:2: m\nr.toml: m");
}

#[test]
fn secrets_come_from_env_or_file_and_nothing_else() {
    let parse = |value: &str| {
        let text = format!(
            "[source]\nkind = \"replay\"\n[[endpoints]]\nname = \"a\"\nurl = \"http://h/\"\nsigning_secret = {value}\n"
        );
        toml::from_str::<ConfigFile>(&text).map(|f| {
            f.endpoints[0]
                .signing_secret
                .as_ref()
                .unwrap()
                .get_ref()
                .clone()
        })
    };
    assert_eq!(
        parse("{ env = \"HOOK_SECRET\" }").unwrap(),
        secret::SecretSource::Env("HOOK_SECRET".into())
    );
    assert_eq!(
        parse("{ file = \"/var/run/secrets/hook\" }").unwrap(),
        secret::SecretSource::File("/var/run/secrets/hook".into())
    );
    assert!(
        parse("\"whsec_inline\"").is_err(),
        "an inline secret is refused"
    );
    // The router's own error names the place, and not the secret.
    let text = "[source]\nkind = \"replay\"\npath = \"r.jsonl\"\n[[endpoints]]\nname = \"a\"\n\
                url = \"http://h/\"\nsigning_secret = \"whsec_INLINE\"\n";
    let problems = Files::new().problems(text);
    assert_at(&problems[0], text, "\"whsec_", "never inline");
    assert!(
        !problems[0].to_string().contains("INLINE"),
        "{}",
        problems[0]
    );
    assert!(parse("{ env = \"A\", file = \"/b\" }").is_err());
    assert!(parse("{ vault = \"x\" }").is_err());
}

#[test]
fn the_postgres_backend_takes_its_url_from_env_or_file() {
    let files = Files::new();
    let url = "postgresql://router:pa55word@db.example:5432/router";
    std::fs::write(files.path("database-url"), format!("{url}\n")).unwrap();
    let text = format!(
        "{}\n[state]\ndir = \"/tmp/s\"\nbackend = \"postgres\"\nurl = {{ file = {} }}\n",
        files.source(),
        files.toml("database-url")
    );
    let config = files.parse(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.state.dir, Path::new("/tmp/s"));
    assert_eq!(
        config.state.backend,
        Backend::Postgres {
            url: Secret::new(url.into()),
            tls: DatabaseTls::default(),
        }
    );
    let shown = format!("{config:?}");
    assert!(!shown.contains("pa55word"), "{shown}");
    assert!(!shown.contains("db.example"), "{shown}");

    let text = format!(
        "{}\n[state]\nbackend = \"postgres\"\nurl = {{ env = \"KFP_ROUTER_TEST_UNSET_DATABASE_URL\" }}\n",
        files.source()
    );
    let problems = files.problems(&text);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_at(
        &problems[0],
        &text,
        "{ env",
        "state.url: environment variable KFP_ROUTER_TEST_UNSET_DATABASE_URL is not set",
    );
}

#[test]
fn reasons_is_the_endpoint_filter_and_event_types_its_other_name() {
    let files = Files::new();
    for key in ["reasons", "event_types"] {
        let text = format!(
            "{}\n[[endpoints]]\nname = \"a\"\nurl = \"http://127.0.0.1:1/\"\n{key} = [\"WorkflowFailed\"]\n",
            files.source()
        );
        let config = files.parse(&text).unwrap();
        let route = &config.endpoints[0].route;
        assert!(route.accepts("WorkflowFailed", "kubeflow"), "{key}");
        assert!(!route.accepts("WorkflowRunning", "kubeflow"), "{key}");
    }
    let both = format!(
        "{}\n[[endpoints]]\nname = \"a\"\nurl = \"http://127.0.0.1:1/\"\nreasons = []\nevent_types = []\n",
        files.source()
    );
    let problems = files.problems(&both);
    assert!(
        problems[0].message.contains("duplicate field"),
        "{problems:?}"
    );
}

#[test]
fn state_problems_point_at_their_key_and_never_show_the_url() {
    let files = Files::new();
    let state = |lines: &str| format!("{}\n[state]\n{lines}", files.source());
    let write = |name: &str, url: &str| {
        std::fs::write(files.path(name), url).unwrap();
        files.toml(name)
    };

    let text = state("backend = \"sqlite\"\n");
    assert_at(
        &files.problems(&text)[0],
        &text,
        "\"sqlite\"",
        "unknown variant `sqlite`",
    );

    let text = state("backend = \"postgres\"\n");
    assert_at(
        &files.problems(&text)[0],
        &text,
        "\"postgres\"",
        "state.url: required with backend = \"postgres\"",
    );

    let text = state(&format!(
        "url = {{ file = {} }}\n",
        write("u1", "postgresql://h/db")
    ));
    assert_at(
        &files.problems(&text)[0],
        &text,
        "{ file",
        "state.url: only for backend = \"postgres\"",
    );

    let text = state("backend = \"postgres\"\nurl = \"postgresql://u:SECRET-PW@h/db\"\n");
    let problems = files.problems(&text);
    assert_at(
        &problems[0],
        &text,
        "\"postgresql",
        "the URL may hold a password",
    );
    assert!(
        !problems[0].to_string().contains("SECRET"),
        "{}",
        problems[0]
    );
    let text = state("backend = \"postgres\"\nurl = { vault = \"x\" }\n");
    assert_at(
        &files.problems(&text)[0],
        &text,
        "vault",
        "expected `env` or `file`",
    );

    for (url, message) in [
        (
            "postgresql://u:SECRET-PW@h/db?sslmode=nonsense",
            "not a PostgreSQL connection URL",
        ),
        (
            "postgresql://u:SECRET-PW@h/db?frobnicate=1",
            "not a PostgreSQL connection URL",
        ),
        ("user=u password=SECRET-PW dbname=db", "names no host"),
    ] {
        let text = state(&format!(
            "backend = \"postgres\"\nurl = {{ file = {} }}\n",
            write("u2", url)
        ));
        let problems = files.problems(&text);
        assert_eq!(problems.len(), 1, "{url}: {problems:?}");
        assert_at(&problems[0], &text, "{ file", message);
        assert!(
            !problems[0].to_string().contains("SECRET"),
            "{}",
            problems[0]
        );
    }

    for url in [
        "postgresql://router@127.0.0.1:5432/router",
        "postgresql://router@db/router?sslmode=disable",
        "postgres://router:pw@db/router?sslmode=prefer&connect_timeout=3",
        "postgres://router:pw@db/router?sslmode=require",
        "postgres://router:pw@db/router?sslmode=verify-full",
        "host=db dbname=router sslmode=verify-ca",
        "host=/var/run/postgresql dbname=router",
    ] {
        let text = state(&format!(
            "backend = \"postgres\"\nurl = {{ file = {} }}\n",
            write("u3", url)
        ));
        files.parse(&text).unwrap_or_else(|e| panic!("{url}: {e}"));
    }
}

#[test]
fn state_tls_problems_point_at_their_key() {
    let files = Files::new();
    std::fs::write(files.path("url"), "postgresql://h/db?sslmode=require").unwrap();
    std::fs::write(files.path("not-pem"), "SECRET-KEY-BYTES").unwrap();
    let postgres = format!(
        "{}\n[state]\nbackend = \"postgres\"\nurl = {{ file = {} }}\n",
        files.source(),
        files.toml("url")
    );

    let text = format!(
        "{}\n[state]\n[state.tls]\nca = {}\n",
        files.source(),
        files.toml("not-pem")
    );
    assert_at(
        &files.problems(&text)[0],
        &text,
        &files.toml("not-pem"),
        "state.tls: only for backend = \"postgres\"",
    );

    let text = format!("{postgres}[state.tls]\nca = {}\n", files.toml("not-pem"));
    assert_at(
        &files.problems(&text)[0],
        &text,
        &files.toml("not-pem"),
        "state.tls: ca: no certificate in the file",
    );

    let text = format!("{postgres}[state.tls]\ncert = {}\n", files.toml("not-pem"));
    assert_at(
        &files.problems(&text)[0],
        &text,
        &files.toml("not-pem"),
        "state.tls: cert and key go together",
    );

    let text = format!(
        "{postgres}[state.tls]\ncert = {}\nkey = {{ file = {} }}\n",
        files.toml("not-pem"),
        files.toml("not-pem")
    );
    let problems = files.problems(&text);
    assert!(
        !problems[0].to_string().contains("SECRET"),
        "{}",
        problems[0]
    );
    assert!(
        problems[0]
            .to_string()
            .contains("state.tls: cert: no certificate"),
        "{}",
        problems[0]
    );

    let text = format!(
        "{postgres}[state.tls]\nca = {}\n",
        files.toml("missing.pem")
    );
    assert!(
        files.problems(&text)[0].to_string().contains("cannot read"),
        "{:?}",
        files.problems(&text)
    );
}

#[test]
fn jitter_out_of_range_is_an_error_at_its_place() {
    let files = Files::new();
    for bad in ["1.5", "-0.1"] {
        let text = format!(
            "{}\n[[endpoints]]\nname = \"a\"\nurl = \"http://127.0.0.1:1/\"\n[endpoints.retry]\njitter = {bad}\n",
            files.source()
        );
        let problems = files.problems(&text);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_at(&problems[0], &text, bad, "endpoints[0].retry.jitter: ");
    }
}

#[test]
fn offline_leaves_the_files_and_variables_a_config_names_unread() {
    let files = Files::new();
    let text = r#"subscribers_dir = "/nonexistent/subscribers"

[source]
kind = "replay"
path = "/nonexistent/run.jsonl"

[plugins]
dir = "/nonexistent/plugins"
chain = ["redact"]

[[endpoints]]
name = "a"
url = "https://hooks.example.com/"
signing_secret = { file = "/nonexistent/secrets/a" }
headers = { Authorization = { env = "KFP_ROUTER_UNIT_TEST_UNSET" } }
"#;
    let text = &text.replace(
        "[plugins]",
        "[state]\nbackend = \"postgres\"\nurl = { env = \"KFP_ROUTER_UNIT_TEST_UNSET_URL\" }\n\n[plugins]",
    );
    let path = files.path("pod.toml");
    std::fs::write(&path, text).unwrap();
    assert_eq!(
        files.problems(text).len(),
        6,
        "online, each missing file and variable is a problem"
    );
    let config = Config::load_offline(&path).expect("valid where it runs");
    assert_eq!(config.endpoints.len(), 1);
    assert!(
        config.endpoints[0].delivery.signing_key.is_none(),
        "not read"
    );
    // What does not depend on the pod is still checked.
    std::fs::write(&path, text.replace("https://", "ftp://")).unwrap();
    assert!(matches!(
        Config::load_offline(&path),
        Err(ConfigError::Invalid(problems)) if problems.len() == 1
    ));
}

#[test]
fn signing_secret_and_signing_secrets_exclude_each_other() {
    let files = Files::new();
    let text = format!(
        "{}\n[[endpoints]]\nname = \"a\"\nurl = \"http://127.0.0.1:1/\"\nsigning_secret = {{ file = {s} }}\nsigning_secrets = [{{ file = {s} }}]\n",
        files.source(),
        s = files.toml("signing")
    );
    let problems = files.problems(&text);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].message.contains("not both"), "{problems:?}");
    let rotation = text.replace(
        &format!("signing_secret = {{ file = {} }}\n", files.toml("signing")),
        "",
    );
    let config = files.parse(&rotation).unwrap();
    assert!(config.endpoints[0].delivery.signing_key.is_some());
}

#[test]
fn router_cluster_names_the_cluster_and_is_checked() {
    let files = Files::new();
    let config = files
        .parse(&format!(
            "{}\n[router]\ncluster = \"prod-eu-1\"\n",
            files.source()
        ))
        .unwrap();
    assert_eq!(config.cluster.as_deref(), Some("prod-eu-1"));
    assert_eq!(files.parse(&files.source()).unwrap().cluster, None);
    let bad = format!("{}\n[router]\ncluster = \"\"\n", files.source());
    let problems = files.problems(&bad);
    assert_at(
        &problems[0],
        &bad,
        "\"\"",
        "router.cluster: must be 1 to 253",
    );
}

#[test]
fn the_admin_token_comes_from_env_or_file_and_never_shows() {
    let files = Files::new();
    std::fs::write(files.path("admin-token"), "adm1n-S3CRET\n").unwrap();
    let server = |token: &str| {
        format!(
            "{}\n[server]\nlisten = \"127.0.0.1:0\"\nadmin_token = {token}\n",
            files.source()
        )
    };
    let config = files
        .parse(&server(&format!(
            "{{ file = {} }}",
            files.toml("admin-token")
        )))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.admin_token, Some(Secret::new("adm1n-S3CRET".into())));
    let shown = format!("{config:?}");
    assert!(!shown.contains("adm1n-S3CRET"), "{shown}");
    // Off by default.
    assert_eq!(files.parse(&files.source()).unwrap().admin_token, None);

    let text = server("\"adm1n-S3CRET\"");
    let problems = files.problems(&text);
    assert!(
        problems[0].message.contains("the token is a secret"),
        "{problems:?}"
    );
    assert!(
        !format!("{problems:?}").contains("adm1n-S3CRET"),
        "{problems:?}"
    );

    let text = server("{ env = \"KFP_ROUTER_TEST_UNSET_ADMIN_TOKEN\" }");
    assert_at(
        &files.problems(&text)[0],
        &text,
        "{ env",
        "server.admin_token: environment variable KFP_ROUTER_TEST_UNSET_ADMIN_TOKEN is not set",
    );
    std::fs::write(files.path("empty"), "\n").unwrap();
    let text = server(&format!("{{ file = {} }}", files.toml("empty")));
    assert_at(
        &files.problems(&text)[0],
        &text,
        "{ file",
        "server.admin_token: the token is empty",
    );
}

#[test]
fn the_console_history_is_a_bounded_count() {
    let files = Files::new();
    let server = |keep: &str| {
        format!(
            "{}\n[server]\nlisten = \"127.0.0.1:0\"\nconsole_history = {keep}\n",
            files.source()
        )
    };
    let parsed = files.parse(&files.source()).unwrap();
    assert_eq!(parsed.console_history, Config::DEFAULT_CONSOLE_HISTORY);
    assert_eq!(files.parse(&server("0")).unwrap().console_history, 0);
    assert_eq!(files.parse(&server("50")).unwrap().console_history, 50);
    for bad in ["-1", "100001"] {
        let text = server(bad);
        assert_at(
            &files.problems(&text)[0],
            &text,
            bad,
            "server.console_history: a whole number from 0 to 100000",
        );
    }
}

#[test]
fn a_claim_ttl_defaults_to_15s_and_is_at_least_3s() {
    let files = Files::new();
    let state = |lines: &str| format!("{}\n[state]\n{lines}", files.source());
    let config = files.parse(&state("")).unwrap();
    assert_eq!(config.state.claim_ttl, std::time::Duration::from_secs(15));
    let config = files.parse(&state("claim_ttl = \"30s\"\n")).unwrap();
    assert_eq!(config.state.claim_ttl, std::time::Duration::from_secs(30));
    let problems = files.problems(&state("claim_ttl = \"1s\"\n"));
    assert!(
        problems[0]
            .message
            .contains("state.claim_ttl: must be at least 3s"),
        "{problems:?}"
    );
}

#[test]
fn the_plugin_profiler_is_none_or_perfmap() {
    use crate::payload::plugins::settings::Profiler;
    let files = Files::new();
    let plugins = |lines: &str| format!("{}\n[plugins]\n{lines}", files.source());
    assert_eq!(
        files.parse(&plugins("")).unwrap().plugins.profiler,
        Profiler::None
    );
    let text = plugins("profiler = \"perfmap\"\n");
    assert_eq!(
        files.parse(&text).unwrap().plugins.profiler,
        Profiler::Perfmap
    );
    let text = plugins("profiler = \"none\"\n");
    assert_eq!(files.parse(&text).unwrap().plugins.profiler, Profiler::None);
    let text = plugins("profiler = \"jitdump\"\n");
    assert_at(
        &files.problems(&text)[0],
        &text,
        "\"jitdump\"",
        "unknown variant `jitdump`, expected `none` or `perfmap`",
    );
}

#[test]
fn a_reload_names_the_changes_that_wait_for_a_restart() {
    let files = Files::new();
    let config = |plugins: &str, router: &str| {
        let text = format!(
            "{}\n[router]\n{router}\n[plugins]\n{plugins}",
            files.source()
        );
        files.parse(&text).unwrap()
    };
    let base = config("", "");
    let changes = |new: &Config| super::watch::restart_only_changes(&base, new);
    assert!(changes(&config("", "")).is_empty());
    assert!(changes(&config("timeout = \"1s\"\n", "")).is_empty());
    let plugins =
        ["changes to plugins.max_total_memory and plugins.profiler take effect on the next start"];
    assert_eq!(changes(&config("profiler = \"perfmap\"\n", "")), plugins);
    assert_eq!(
        changes(&config("max_total_memory = \"2GiB\"\n", "")),
        plugins
    );
    assert_eq!(
        changes(&config("", "cluster = \"eu-1\"\n")),
        ["changes to [source], [state], [server] and [router] take effect on the next start"]
    );
}
