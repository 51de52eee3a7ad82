//! Test fixture for the host: a plugin that misbehaves on demand.
//!
//! The behaviour is chosen by the init config `{"mode": "..."}` (default `pass`):
//!
//! | mode | `init` / `handle` does |
//! |---|---|
//! | `pass` | returns `Pass` (measures call overhead) |
//! | `loop` | loops forever |
//! | `alloc` | allocates (and touches) 16 MiB blocks until allocation fails, up to 1 GiB; `Err` if 1 GiB was reached |
//! | `trap` | panics (a trap: plugins are built with `panic = "abort"`) |
//! | `huge-output` | `Replace` with a 100 MiB body of `x` |
//! | `open-file` | reads `/etc/passwd`: `Replace` with its contents, else `Err(<io error>)` |
//! | `read-env` | `Replace` with all `K=V` env vars joined by `\n`, else `Err("no env")` |
//! | `socket` | connects TCP to `127.0.0.1:9`: `Replace` with `connected`, else `Err(<io error>)` |
//! | `init-fail` | `init` returns `Err("refusing to start")` |
//! | `echo` | `Replace` with a JSON body describing the received event and payload (see [`echo`]) |
//! | `tag` | `Replace` with the original body and content type, plus header `x-plugin-version: <tag>` (config `"tag"`, default `v1`) |
//! | `sleep` | sleeps 10 s through WASI (`std::thread::sleep`), then `Pass` |
//! | `poll` | asks the WASI clock for the time until 10 s have passed, then `Pass` |
//! | `remember` | `Replace` with `{"endpoint": <this call's>, "previous": <the last call's, in this instance>}` |
//! | `forbidden-headers` | `Replace` with the original body and every header only the router may set, plus `x-allowed: yes` |
//! | `log-control` | logs a record with a newline, a terminal escape sequence and 5000 `x`, then `Pass` |

use kfp_event_router_sdk::serde_json::{Value, json};
use kfp_event_router_sdk::{Action, Config, Event, Payload, Plugin, log};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(default)]
struct Settings {
    mode: String,
    tag: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            mode: "pass".to_owned(),
            tag: "v1".to_owned(),
        }
    }
}

const MODES: &[&str] = &[
    "pass",
    "loop",
    "alloc",
    "trap",
    "huge-output",
    "open-file",
    "read-env",
    "socket",
    "init-fail",
    "echo",
    "tag",
    "sleep",
    "poll",
    "remember",
    "forbidden-headers",
    "log-control",
];

/// The endpoint of the last `remember` call in this instance.
static PREVIOUS: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

/// The fixture plugin.
pub struct Hostile {
    settings: Settings,
}

impl Plugin for Hostile {
    fn init(config: Config) -> Result<Self, String> {
        let settings: Settings = config.parse()?;
        if !MODES.contains(&settings.mode.as_str()) {
            return Err(format!("unknown mode {:?}", settings.mode));
        }
        if settings.mode == "init-fail" {
            return Err("refusing to start".to_owned());
        }
        Ok(Self { settings })
    }

    fn handle(&self, event: &Event, payload: Payload) -> Result<Action, String> {
        match self.settings.mode.as_str() {
            "loop" => {
                let mut n = 0u64;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "alloc" => {
                const BLOCK: usize = 16 << 20;
                let mut blocks: Vec<Vec<u8>> = Vec::new();
                while blocks.len() * BLOCK < 1 << 30 {
                    blocks.push(vec![0xA5; BLOCK]);
                    std::hint::black_box(&blocks);
                }
                Err(format!(
                    "allocated {} MiB without hitting a limit",
                    blocks.len() * 16
                ))
            }
            "trap" => panic!("hostile plugin: trap on purpose"),
            "huge-output" => Ok(Action::replace(
                vec![b'x'; 100 << 20],
                "application/octet-stream",
            )),
            "open-file" => match std::fs::read("/etc/passwd") {
                Ok(contents) => Ok(Action::replace(contents, "text/plain")),
                Err(e) => Err(format!("open /etc/passwd: {e}")),
            },
            "read-env" => {
                let vars: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
                if vars.is_empty() {
                    Err("no env".to_owned())
                } else {
                    Ok(Action::replace(vars.join("\n"), "text/plain"))
                }
            }
            "socket" => match std::net::TcpStream::connect("127.0.0.1:9") {
                Ok(_) => Ok(Action::replace("connected", "text/plain")),
                Err(e) => Err(format!("connect 127.0.0.1:9: {e}")),
            },
            "echo" => Action::json(&echo(event, &payload)),
            "sleep" => {
                std::thread::sleep(std::time::Duration::from_secs(10));
                Ok(Action::Pass)
            }
            "poll" => {
                let started = std::time::Instant::now();
                while started.elapsed() < std::time::Duration::from_secs(10) {
                    std::hint::black_box(started.elapsed());
                }
                Ok(Action::Pass)
            }
            "remember" => {
                let mut previous = PREVIOUS.lock().unwrap_or_else(|e| e.into_inner());
                let body = json!({"endpoint": event.endpoint, "previous": *previous});
                *previous = event.endpoint.clone();
                Action::json(&body)
            }
            "forbidden-headers" => {
                let forbidden = [
                    "webhook-id",
                    "Webhook-Timestamp",
                    "webhook-signature",
                    "Authorization",
                    "Host",
                    "Content-Length",
                ];
                let mut headers: Vec<(String, String)> = forbidden
                    .iter()
                    .map(|h| (h.to_string(), "forged".to_owned()))
                    .collect();
                headers.push(("x-allowed".to_owned(), "yes".to_owned()));
                Ok(Action::Replace {
                    body: payload.body,
                    content_type: payload.content_type,
                    headers,
                })
            }
            "log-control" => {
                log::warn(format!(
                    "line one\nFAKE level=ERROR forged line\u{1b}[31mred{}",
                    "x".repeat(5000)
                ));
                Ok(Action::Pass)
            }
            "tag" => Ok(Action::Replace {
                body: payload.body,
                content_type: payload.content_type,
                headers: vec![("x-plugin-version".to_owned(), self.settings.tag.clone())],
            }),
            _ => Ok(Action::Pass),
        }
    }
}

/// The `echo` body: the 0.1 [`Event`] fields under their WIT names, labels as
/// `[[key, value], ...]` in received order, the whole event under `event` (Rust field
/// names), and the payload as
/// `{"content-type", "body" (UTF-8, lossy), "body-len"}`.
pub fn echo(event: &Event, payload: &Payload) -> Value {
    json!({
        "reason": event.reason,
        "event-type": event.event_type,
        "message": event.message,
        "namespace": event.namespace,
        "workflow-name": event.workflow_name,
        "run-id": event.run_id,
        "run-name": event.run_name,
        "node-name": event.node_name,
        "node-type": event.node_type,
        "phase": event.phase,
        "event-time": event.event_time,
        "labels": event.labels,
        "endpoint": event.endpoint,
        "synthesized": event.synthesized,
        "event": event,
        "payload": {
            "content-type": payload.content_type,
            "body": String::from_utf8_lossy(&payload.body),
            "body-len": payload.body.len(),
        },
    })
}

kfp_event_router_sdk::export_plugin!(Hostile);

#[cfg(test)]
mod tests {
    use super::*;

    fn init(config: Value) -> Result<Hostile, String> {
        Hostile::init(Config::from(config))
    }

    #[test]
    fn modes() {
        assert_eq!(
            init(json!({"mode": "init-fail"})).err().unwrap(),
            "refusing to start"
        );
        assert!(init(json!({"mode": "nope"})).is_err());
        let p = init(json!({})).unwrap();
        assert_eq!(
            p.handle(&Event::default(), Payload::default()),
            Ok(Action::Pass)
        );
        let p = init(json!({"mode": "tag", "tag": "v2"})).unwrap();
        let a = p
            .handle(&Event::default(), Payload::new("b", "text/plain"))
            .unwrap();
        assert_eq!(a.header("x-plugin-version"), Some("v2"));
        let p = init(json!({"mode": "echo"})).unwrap();
        let event = Event {
            labels: vec![("a".into(), "1".into())],
            synthesized: true,
            ..Event::default()
        };
        let body = p
            .handle(&event, Payload::new("hi", "text/plain"))
            .unwrap()
            .json_body()
            .unwrap();
        assert_eq!(body["labels"], json!([["a", "1"]]));
        assert_eq!(body["synthesized"], true);
        assert_eq!(body["payload"]["body"], "hi");
    }
}
