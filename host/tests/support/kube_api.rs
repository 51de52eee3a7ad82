//! A small Kubernetes API server on 127.0.0.1 that speaks the list/watch protocol for the
//! resources the router uses: core/v1 Events and ConfigMaps, argoproj.io/v1alpha1 Workflows,
//! coordination.k8s.io/v1 Leases. A real kube client (the router's) talks to it over HTTP.
//!
//! What it does as the real one does:
//! - one cluster-wide `resourceVersion` counter; every create/update/delete gets the next one;
//! - lists with `limit`/`continue` (a consistent snapshot per list), `fieldSelector`
//!   (`source=`, `involvedObject.kind=`, `metadata.name=`, any dotted path; `=`, `==`, `!=`)
//!   and `labelSelector` (`k=v`, `k!=v`, `k`, `!k`);
//! - `?watch=true` streams newline-delimited JSON watch events from `resourceVersion` (backlog
//!   first), with `BOOKMARK`s when `allowWatchBookmarks=true`, closing after `timeoutSeconds`;
//!   a `resourceVersion` older than the last [`KubeApi::compact`] gets
//!   `{"type":"ERROR","object":{"kind":"Status","code":410,...}}`;
//! - create (409 AlreadyExists), update (409 Conflict on a stale `resourceVersion`), get (404).
//!
//! And what tests need: [`KubeApi::drop_watches`] breaks every open watch connection,
//! [`KubeApi::set_latency`] delays every answer, [`KubeApi::fail_next`] fails the next few
//! requests of a kind with an error status, [`KubeApi::trouble`] stalls or throttles one
//! client's requests on a resource (a client is told by its token, see
//! [`KubeApi::kubeconfig_as`]), [`KubeApi::requests`] counts requests by verb and resource,
//! [`KubeApi::kubeconfig`] writes a kubeconfig pointing at it, [`KubeApi::put`] stores objects
//! as a recording has them (their own uids and timestamps).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

/// The resources this server serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Res {
    Events,
    Workflows,
    Leases,
    ConfigMaps,
}

impl Res {
    fn parse(group: &str, plural: &str) -> Option<Self> {
        match (group, plural) {
            ("", "events") => Some(Self::Events),
            ("argoproj.io", "workflows") => Some(Self::Workflows),
            ("coordination.k8s.io", "leases") => Some(Self::Leases),
            ("", "configmaps") => Some(Self::ConfigMaps),
            _ => None,
        }
    }

    /// The resource as the router's metric and RBAC name it: `events`, `workflows.argoproj.io`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Events => "events",
            Self::Workflows => "workflows.argoproj.io",
            Self::Leases => "leases.coordination.k8s.io",
            Self::ConfigMaps => "configmaps",
        }
    }

    fn kind(self) -> &'static str {
        match self {
            Self::Events => "Event",
            Self::Workflows => "Workflow",
            Self::Leases => "Lease",
            Self::ConfigMaps => "ConfigMap",
        }
    }

    fn api_version(self) -> &'static str {
        match self {
            Self::Events | Self::ConfigMaps => "v1",
            Self::Workflows => "argoproj.io/v1alpha1",
            Self::Leases => "coordination.k8s.io/v1",
        }
    }
}

/// How the server mistreats one client's requests on a resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trouble {
    /// Never answers (the client gives up, or waits forever).
    Stall,
    /// Answers `429 Too Many Requests` with `Retry-After: <seconds>`.
    TooManyRequests { retry_after: u64 },
}

/// One change, as a watch reports it.
#[derive(Clone, Debug)]
struct Change {
    rv: u64,
    kind: &'static str,
    res: Res,
    object: Value,
}

#[derive(Default)]
struct Inner {
    rv: u64,
    uids: u64,
    objects: BTreeMap<(Res, String, String), Value>,
    log: Vec<Arc<Change>>,
    compacted: u64,
    requests: BTreeMap<(String, String), u64>,
    latency: Duration,
    lists: HashMap<String, (Vec<Value>, u64)>,
    watching: HashMap<Res, i64>,
    drops: u64,
    bookmark_every: Option<Duration>,
    /// Per (verb, resource): how many of the next requests fail, and with which status code.
    faults: HashMap<(String, Res), (u32, u16)>,
    /// Per (client token, resource): how its requests are mistreated.
    troubles: HashMap<(String, Res), Trouble>,
}

struct Shared {
    inner: Mutex<Inner>,
    changes: broadcast::Sender<Arc<Change>>,
    drops: tokio::sync::watch::Sender<u64>,
}

/// The running server; stops when dropped.
pub struct KubeApi {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for KubeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// RFC 3339 with seconds, as Kubernetes writes times.
pub fn now() -> String {
    Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

impl KubeApi {
    /// Starts a server on a free port of 127.0.0.1.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the API server");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                bookmark_every: Some(Duration::from_millis(500)),
                ..Inner::default()
            }),
            changes: broadcast::channel(65_536).0,
            drops: tokio::sync::watch::channel(0).0,
        });
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, shared, task }
    }

    /// The server's URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Writes a kubeconfig for this server (default namespace `namespace`) into `dir`.
    pub fn kubeconfig(&self, dir: &Path, namespace: &str) -> PathBuf {
        self.write_kubeconfig(&dir.join("kubeconfig"), namespace, "test-token")
    }

    /// Writes a kubeconfig of client `user` (its token) into `dir`, as `kubeconfig-<user>`:
    /// what [`KubeApi::trouble`] tells clients apart by.
    pub fn kubeconfig_as(&self, dir: &Path, namespace: &str, user: &str) -> PathBuf {
        self.write_kubeconfig(&dir.join(format!("kubeconfig-{user}")), namespace, user)
    }

    fn write_kubeconfig(&self, path: &Path, namespace: &str, token: &str) -> PathBuf {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: test\n    namespace: {namespace}\ncurrent-context: test\nusers:\n- name: test\n  user:\n    token: {token}\n",
            self.url()
        );
        std::fs::write(path, text).unwrap();
        path.to_owned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.shared.inner.lock().unwrap()
    }

    /// Stores a new object (its metadata completed) and returns it.
    pub fn create(&self, res: Res, namespace: &str, object: Value) -> Value {
        let mut inner = self.lock();
        create(&mut inner, &self.shared.changes, res, namespace, object).expect("the object is new")
    }

    /// Stores `object` as given, as a watch reports it: `ADDED` when it is new, else `MODIFIED`
    /// (replacing the stored version). Unlike [`KubeApi::create`], it keeps the object's own
    /// `uid` and `creationTimestamp` (a recording's, or those of a controller whose clock is off).
    pub fn put(&self, res: Res, namespace: &str, mut object: Value) -> Value {
        let mut inner = self.lock();
        let name = object["metadata"]["name"]
            .as_str()
            .expect("a name")
            .to_owned();
        let key = (res, namespace.to_owned(), name);
        let kind = match inner.objects.get(&key) {
            Some(current) => {
                object["metadata"]["uid"] = current["metadata"]["uid"].clone();
                "MODIFIED"
            }
            None => {
                if object["metadata"]["uid"].as_str().is_none() {
                    inner.uids += 1;
                    object["metadata"]["uid"] =
                        json!(format!("00000000-0000-4000-8000-{:012x}", inner.uids));
                }
                if object["metadata"]["creationTimestamp"].as_str().is_none() {
                    object["metadata"]["creationTimestamp"] = json!(now());
                }
                "ADDED"
            }
        };
        object["metadata"]["namespace"] = json!(namespace);
        object["apiVersion"] = json!(res.api_version());
        object["kind"] = json!(res.kind());
        commit(&mut inner, &self.shared.changes, res, kind, object)
    }

    /// Changes an object; returns it.
    pub fn update(
        &self,
        res: Res,
        namespace: &str,
        name: &str,
        change: impl FnOnce(&mut Value),
    ) -> Value {
        let mut inner = self.lock();
        let key = (res, namespace.to_owned(), name.to_owned());
        let mut object = inner.objects.get(&key).cloned().expect("the object exists");
        change(&mut object);
        commit(&mut inner, &self.shared.changes, res, "MODIFIED", object)
    }

    /// Deletes an object.
    pub fn delete(&self, res: Res, namespace: &str, name: &str) {
        let mut inner = self.lock();
        let key = (res, namespace.to_owned(), name.to_owned());
        let object = inner.objects.remove(&key).expect("the object exists");
        commit(&mut inner, &self.shared.changes, res, "DELETED", object);
    }

    /// An object, as stored.
    pub fn get(&self, res: Res, namespace: &str, name: &str) -> Option<Value> {
        self.lock()
            .objects
            .get(&(res, namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Repeats an Event, as the recorder does: `count` + 1, a new `lastTimestamp` (and, with
    /// `combined`, the aggregator's rolled-up message without node annotations).
    pub fn bump_event(&self, namespace: &str, name: &str, combined: bool) -> Value {
        self.update(Res::Events, namespace, name, |e| {
            let count = e["count"].as_i64().unwrap_or(1);
            e["count"] = json!(count + 1);
            e["lastTimestamp"] = json!(now());
            if combined {
                let message = e["message"].as_str().unwrap_or_default().to_owned();
                e["message"] = json!(format!("(combined from similar events): {message}"));
                e["metadata"]["annotations"] = json!({});
            }
        })
    }

    /// Forgets the change history: a watch resuming from any `resourceVersion` seen so far
    /// gets `410 Gone` and must list again.
    pub fn compact(&self) {
        let mut inner = self.lock();
        inner.compacted = inner.rv + 1;
        inner.log.clear();
    }

    /// Breaks every open watch connection (mid-stream, without a clean end).
    pub fn drop_watches(&self) {
        let mut inner = self.lock();
        inner.drops += 1;
        self.shared.drops.send_replace(inner.drops);
    }

    /// Delays every answer (and the start of every watch) by `latency`.
    pub fn set_latency(&self, latency: Duration) {
        self.lock().latency = latency;
    }

    /// How often open watches send a bookmark (`None`: never).
    pub fn set_bookmarks(&self, every: Option<Duration>) {
        self.lock().bookmark_every = every;
    }

    /// Answers the next `times` requests with `verb` on `res` with an error status `code`
    /// (counted as requests all the same), as a failing API server would.
    pub fn fail_next(&self, verb: &str, res: Res, times: u32, code: u16) {
        self.lock()
            .faults
            .insert((verb.to_owned(), res), (times, code));
    }

    /// From now on, mistreats the requests on `res` of the client with token `user` as
    /// `trouble` says (`None`: serves them again). They are counted all the same.
    pub fn trouble(&self, user: &str, res: Res, trouble: Option<Trouble>) {
        let mut inner = self.lock();
        let key = (user.to_owned(), res);
        match trouble {
            Some(trouble) => inner.troubles.insert(key, trouble),
            None => inner.troubles.remove(&key),
        };
    }

    /// Requests so far with `verb` (`get`, `list`, `watch`, `create`, `update`, `delete`) on `res`.
    pub fn requests(&self, verb: &str, res: Res) -> u64 {
        self.lock()
            .requests
            .get(&(verb.to_owned(), res.name().to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// Every (verb, resource) requested so far, with counts.
    pub fn all_requests(&self) -> BTreeMap<(String, String), u64> {
        self.lock().requests.clone()
    }

    /// Watches of `res` open right now.
    pub fn open_watches(&self, res: Res) -> i64 {
        self.lock().watching.get(&res).copied().unwrap_or(0)
    }

    /// Waits until `n` watches of `res` are open, or panics after `timeout`.
    pub async fn wait_for_watches(&self, res: Res, n: i64, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.open_watches(res) < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} watches of {res:?} after {timeout:?}",
                self.open_watches(res)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code
    })
}

fn reply(code: u16, body: &Value) -> Response {
    let mut response = (StatusCode::from_u16(code).unwrap(), body.to_string()).into_response();
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    response
}

/// Creates `object` in `namespace`: the next resourceVersion, a uid, a creation time.
fn create(
    inner: &mut Inner,
    changes: &broadcast::Sender<Arc<Change>>,
    res: Res,
    namespace: &str,
    mut object: Value,
) -> Result<Value, Value> {
    if object["metadata"]["name"].as_str().is_none() {
        let prefix = object["metadata"]["generateName"]
            .as_str()
            .unwrap_or("object-")
            .to_owned();
        inner.uids += 1;
        object["metadata"]["name"] = json!(format!("{prefix}{:05x}", inner.uids));
    }
    let name = object["metadata"]["name"].as_str().unwrap().to_owned();
    if inner
        .objects
        .contains_key(&(res, namespace.to_owned(), name.clone()))
    {
        return Err(status(
            409,
            "AlreadyExists",
            &format!("{} \"{name}\" already exists", res.name()),
        ));
    }
    inner.uids += 1;
    let uid = format!("00000000-0000-4000-8000-{:012x}", inner.uids);
    let meta = &mut object["metadata"];
    meta["namespace"] = json!(namespace);
    if meta["uid"].as_str().is_none() {
        meta["uid"] = json!(uid);
    }
    meta["creationTimestamp"] = json!(now());
    object["apiVersion"] = json!(res.api_version());
    object["kind"] = json!(res.kind());
    Ok(commit(inner, changes, res, "ADDED", object))
}

/// Gives `object` the next resourceVersion, stores (or removes) it and tells the watches.
fn commit(
    inner: &mut Inner,
    changes: &broadcast::Sender<Arc<Change>>,
    res: Res,
    kind: &'static str,
    mut object: Value,
) -> Value {
    inner.rv += 1;
    object["metadata"]["resourceVersion"] = json!(inner.rv.to_string());
    let key = (
        res,
        object["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    );
    match kind {
        "DELETED" => {
            inner.objects.remove(&key);
        }
        _ => {
            inner.objects.insert(key, object.clone());
        }
    }
    let change = Arc::new(Change {
        rv: inner.rv,
        kind,
        res,
        object: object.clone(),
    });
    inner.log.push(Arc::clone(&change));
    let _ = changes.send(change);
    object
}

/// A request's target: the resource, namespace and name, from the path.
struct Target {
    res: Res,
    namespace: Option<String>,
    name: Option<String>,
}

fn target(path: &str) -> Option<Target> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match segments.as_slice() {
        ["api", "v1", rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some((*ns).to_owned()), rest),
        rest => (None, rest),
    };
    let (plural, name) = match rest {
        [plural] => (*plural, None),
        [plural, name] => (*plural, Some((*name).to_owned())),
        _ => return None,
    };
    Some(Target {
        res: Res::parse(group, plural)?,
        namespace,
        name,
    })
}

/// A parsed `fieldSelector` or `labelSelector`.
#[derive(Clone, Debug, Default)]
struct Selector {
    /// (key, value or none for existence, negated)
    terms: Vec<(String, Option<String>, bool)>,
}

impl Selector {
    fn parse(text: Option<&str>) -> Self {
        let terms = text
            .unwrap_or_default()
            .split(',')
            .filter(|t| !t.is_empty())
            .map(|term| {
                if let Some((k, v)) = term.split_once("!=") {
                    (k.to_owned(), Some(v.to_owned()), true)
                } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('='))
                {
                    (k.to_owned(), Some(v.to_owned()), false)
                } else if let Some(k) = term.strip_prefix('!') {
                    (k.to_owned(), None, true)
                } else {
                    (term.to_owned(), None, false)
                }
            })
            .collect();
        Self { terms }
    }

    fn matches(&self, lookup: impl Fn(&str) -> Option<String>) -> bool {
        self.terms.iter().all(|(key, value, negated)| {
            let found = lookup(key);
            let hit = match value {
                Some(v) => found.as_deref().unwrap_or_default() == v,
                None => found.is_some(),
            };
            hit != *negated
        })
    }
}

/// A field of an object by selector key: `source` is `source.component`, the rest are paths.
fn field(object: &Value, key: &str) -> Option<String> {
    let path = match key {
        "source" => "source.component",
        other => other,
    };
    let mut at = object;
    for part in path.split('.') {
        at = at.get(part)?;
    }
    match at {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

fn label(object: &Value, key: &str) -> Option<String> {
    object["metadata"]["labels"]
        .get(key)?
        .as_str()
        .map(str::to_owned)
}

/// What a list or watch selects.
#[derive(Clone)]
struct Filter {
    res: Res,
    namespace: Option<String>,
    fields: Selector,
    labels: Selector,
}

impl Filter {
    fn matches(&self, res: Res, object: &Value) -> bool {
        res == self.res
            && self
                .namespace
                .as_deref()
                .is_none_or(|ns| object["metadata"]["namespace"].as_str() == Some(ns))
            && self.fields.matches(|k| field(object, k))
            && self.labels.matches(|k| label(object, k))
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(target) = target(uri.path()) else {
        return reply(
            404,
            &status(404, "NotFound", &format!("no route {}", uri.path())),
        );
    };
    let query: HashMap<String, String> =
        url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let watch = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    let verb = match (&method, &target.name, watch) {
        (&Method::GET, _, true) => "watch",
        (&Method::GET, Some(_), _) => "get",
        (&Method::GET, None, _) => "list",
        (&Method::POST, _, _) => "create",
        (&Method::PUT, _, _) => "update",
        (&Method::DELETE, _, _) => "delete",
        _ => "other",
    };
    let user = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    let (latency, fault, trouble) = {
        let mut inner = shared.inner.lock().unwrap();
        *inner
            .requests
            .entry((verb.to_owned(), target.res.name().to_owned()))
            .or_default() += 1;
        let trouble = inner.troubles.get(&(user, target.res)).copied();
        let fault = match inner.faults.get_mut(&(verb.to_owned(), target.res)) {
            Some((times, code)) if *times > 0 => {
                *times -= 1;
                Some(*code)
            }
            _ => None,
        };
        (inner.latency, fault, trouble)
    };
    match trouble {
        Some(Trouble::Stall) => std::future::pending::<()>().await,
        Some(Trouble::TooManyRequests { retry_after }) => {
            let mut response = reply(
                429,
                &status(429, "TooManyRequests", "throttled by the test"),
            );
            response
                .headers_mut()
                .insert("retry-after", retry_after.to_string().parse().unwrap());
            return response;
        }
        None => {}
    }
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if let Some(code) = fault {
        let reason = match code {
            404 => "NotFound",
            409 => "Conflict",
            429 => "TooManyRequests",
            503 => "ServiceUnavailable",
            504 => "Timeout",
            _ => "InternalError",
        };
        return reply(code, &status(code, reason, "a fault injected by the test"));
    }
    let filter = Filter {
        res: target.res,
        namespace: target.namespace.clone(),
        fields: Selector::parse(query.get("fieldSelector").map(String::as_str)),
        labels: Selector::parse(query.get("labelSelector").map(String::as_str)),
    };
    match verb {
        "watch" => watch_stream(shared, filter, &query),
        "list" => list(&shared, &filter, &query),
        "get" => {
            let inner = shared.inner.lock().unwrap();
            let key = (
                target.res,
                target.namespace.unwrap_or_default(),
                target.name.unwrap_or_default(),
            );
            match inner.objects.get(&key) {
                Some(object) => reply(200, object),
                None => reply(
                    404,
                    &status(
                        404,
                        "NotFound",
                        &format!("{} \"{}\" not found", target.res.name(), key.2),
                    ),
                ),
            }
        }
        "create" => {
            let Ok(object) = serde_json::from_slice::<Value>(&body) else {
                return reply(400, &status(400, "BadRequest", "invalid JSON"));
            };
            let mut inner = shared.inner.lock().unwrap();
            match create(
                &mut inner,
                &shared.changes,
                target.res,
                &target.namespace.unwrap_or_default(),
                object,
            ) {
                Ok(created) => reply(201, &created),
                Err(error) => reply(409, &error),
            }
        }
        "update" => {
            let Ok(mut object) = serde_json::from_slice::<Value>(&body) else {
                return reply(400, &status(400, "BadRequest", "invalid JSON"));
            };
            let mut inner = shared.inner.lock().unwrap();
            let namespace = target.namespace.unwrap_or_default();
            let name = target.name.unwrap_or_default();
            let Some(current) = inner
                .objects
                .get(&(target.res, namespace.clone(), name.clone()))
                .cloned()
            else {
                return reply(
                    404,
                    &status(
                        404,
                        "NotFound",
                        &format!("{} \"{name}\" not found", target.res.name()),
                    ),
                );
            };
            let theirs = object["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or_default();
            if !theirs.is_empty() && Some(theirs) != current["metadata"]["resourceVersion"].as_str()
            {
                let message = format!(
                    "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                    target.res.name()
                );
                return reply(409, &status(409, "Conflict", &message));
            }
            object["metadata"]["uid"] = current["metadata"]["uid"].clone();
            object["metadata"]["creationTimestamp"] =
                current["metadata"]["creationTimestamp"].clone();
            object["metadata"]["namespace"] = json!(namespace);
            object["metadata"]["name"] = json!(name);
            object["apiVersion"] = json!(target.res.api_version());
            object["kind"] = json!(target.res.kind());
            let updated = commit(&mut inner, &shared.changes, target.res, "MODIFIED", object);
            reply(200, &updated)
        }
        "delete" => {
            let mut inner = shared.inner.lock().unwrap();
            let key = (
                target.res,
                target.namespace.unwrap_or_default(),
                target.name.unwrap_or_default(),
            );
            match inner.objects.get(&key).cloned() {
                Some(object) => {
                    let deleted =
                        commit(&mut inner, &shared.changes, target.res, "DELETED", object);
                    reply(200, &deleted)
                }
                None => reply(404, &status(404, "NotFound", "not found")),
            }
        }
        _ => reply(405, &status(405, "MethodNotAllowed", "not supported here")),
    }
}

/// A list, paged with `limit` and `continue` over one snapshot.
fn list(shared: &Shared, filter: &Filter, query: &HashMap<String, String>) -> Response {
    let mut inner = shared.inner.lock().unwrap();
    let (items, rv, offset) = match query.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => {
            let Some((id, offset)) = token.split_once(':') else {
                return reply(400, &status(400, "BadRequest", "bad continue token"));
            };
            let Some((items, rv)) = inner.lists.get(id).cloned() else {
                return reply(410, &status(410, "Expired", "the continue token expired"));
            };
            (items, rv, offset.parse::<usize>().unwrap_or(0))
        }
        None => {
            let items: Vec<Value> = inner
                .objects
                .iter()
                .filter(|((res, _, _), object)| filter.matches(*res, object))
                .map(|(_, object)| object.clone())
                .collect();
            (items, inner.rv, 0)
        }
    };
    let limit = query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    let end = offset.saturating_add(limit).min(items.len());
    let page = items[offset..end].to_vec();
    let continue_token = if end < items.len() {
        inner.uids += 1;
        let id = format!("l{}", inner.uids);
        inner.lists.insert(id.clone(), (items, rv));
        Some(format!("{id}:{end}"))
    } else {
        None
    };
    let mut metadata = json!({ "resourceVersion": rv.to_string() });
    if let Some(token) = continue_token {
        metadata["continue"] = json!(token);
    }
    reply(
        200,
        &json!({
            "kind": format!("{}List", filter.res.kind()),
            "apiVersion": filter.res.api_version(),
            "metadata": metadata,
            "items": page,
        }),
    )
}

fn line(kind: &str, object: &Value) -> Bytes {
    let mut text = json!({ "type": kind, "object": object }).to_string();
    text.push('\n');
    Bytes::from(text)
}

/// A watch: the backlog after `resourceVersion`, then live changes, as chunked JSON lines.
fn watch_stream(shared: Arc<Shared>, filter: Filter, query: &HashMap<String, String>) -> Response {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(1024);
    let bookmarks = matches!(
        query.get("allowWatchBookmarks").map(String::as_str),
        Some("true" | "1")
    );
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs);
    let requested = query.get("resourceVersion").cloned().unwrap_or_default();
    let (backlog, mut changes, start, gone, bookmark_every) = {
        let mut inner = shared.inner.lock().unwrap();
        let changes = shared.changes.subscribe();
        let mut backlog = Vec::new();
        let mut gone = false;
        let start = match requested.as_str() {
            "" | "0" => {
                for ((res, _, _), object) in &inner.objects {
                    if filter.matches(*res, object) {
                        backlog.push(line("ADDED", object));
                    }
                }
                inner.rv
            }
            rv => {
                let from = rv.parse::<u64>().unwrap_or(0);
                if from < inner.compacted {
                    gone = true;
                } else {
                    for change in inner.log.iter().filter(|c| c.rv > from) {
                        if filter.matches(change.res, &change.object) {
                            backlog.push(line(change.kind, &change.object));
                        }
                    }
                }
                from.max(inner.log.last().map_or(from, |c| c.rv))
            }
        };
        if !gone {
            *inner.watching.entry(filter.res).or_default() += 1;
        }
        (backlog, changes, start, gone, inner.bookmark_every)
    };
    let mut drops = shared.drops.subscribe();
    drops.mark_unchanged();
    tokio::spawn(async move {
        if gone {
            let error = status(
                410,
                "Expired",
                &format!("too old resource version: {requested}"),
            );
            let _ = tx.send(Ok(line("ERROR", &error))).await;
            return;
        }
        let res = filter.res;
        let _open = OpenWatch {
            shared: Arc::clone(&shared),
            res,
        };
        for bytes in backlog {
            if tx.send(Ok(bytes)).await.is_err() {
                return;
            }
        }
        let mut last = start;
        let deadline = tokio::time::sleep(timeout.unwrap_or(Duration::from_secs(3600)));
        let mut deadline = std::pin::pin!(deadline);
        let mut tick = tokio::time::interval(bookmark_every.unwrap_or(Duration::from_secs(3600)));
        tick.tick().await;
        loop {
            tokio::select! {
                change = changes.recv() => match change {
                    Ok(change) => {
                        if change.rv <= last {
                            continue;
                        }
                        last = change.rv;
                        if filter.matches(change.res, &change.object)
                            && tx.send(Ok(line(change.kind, &change.object))).await.is_err()
                        {
                            return;
                        }
                    }
                    // Too slow a reader: end the watch, as the API server does.
                    Err(_) => return,
                },
                _ = tick.tick(), if bookmarks && bookmark_every.is_some() => {
                    let bookmark = json!({
                        "kind": res.kind(), "apiVersion": res.api_version(),
                        "metadata": { "resourceVersion": last.to_string() }
                    });
                    if tx.send(Ok(line("BOOKMARK", &bookmark))).await.is_err() {
                        return;
                    }
                }
                _ = drops.changed() => {
                    let _ = tx.send(Err(std::io::Error::other("connection dropped by the test"))).await;
                    return;
                }
                () = &mut deadline => return,
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let mut response = Response::new(Body::from_stream(stream));
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    response
}

/// Counts an open watch while it lives.
struct OpenWatch {
    shared: Arc<Shared>,
    res: Res,
}

impl Drop for OpenWatch {
    fn drop(&mut self) {
        *self
            .shared
            .inner
            .lock()
            .unwrap()
            .watching
            .entry(self.res)
            .or_default() -= 1;
    }
}

// ---- objects as Argo and KFP make them ---------------------------------------------------

/// An Argo Workflow of a KFP v2 run `run_id`, with `nodes` (`(id, short name, phase)`).
pub fn workflow(name: &str, run_id: &str, nodes: &[(&str, &str, &str)]) -> Value {
    let mut status_nodes = serde_json::Map::new();
    status_nodes.insert(
        name.to_owned(),
        json!({"id": name, "name": name, "displayName": name, "type": "DAG", "phase": "Running",
               "templateName": "main", "startedAt": "2026-11-20T10:00:00Z"}),
    );
    for (id, short, phase) in nodes {
        status_nodes.insert(
            (*id).to_owned(),
            json!({"id": id, "name": format!("{name}.{short}"), "displayName": short, "type": "Pod",
                   "phase": phase, "templateName": format!("{short}-template"),
                   "startedAt": "2026-11-20T10:00:01Z", "message": format!("{short} says hi")}),
        );
    }
    json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
        "metadata": {
            "name": name, "generateName": "my-pipeline-",
            "labels": {"pipeline/runid": run_id, "workflows.argoproj.io/phase": "Running"},
            "annotations": {"pipelines.kubeflow.org/run_name": format!("run of {name}")}
        },
        "spec": {"arguments": {"parameters": [{"name": "lr", "value": "0.1"}]}},
        "status": {"phase": "Running", "startedAt": "2026-11-20T10:00:00Z", "nodes": status_nodes}
    })
}

/// A workflow-controller Event about Workflow `wf` (`wf_uid`): `reason`, and for a node event
/// `(node id, short name)` with Argo's node annotations.
pub fn event(
    name: &str,
    wf: &str,
    wf_uid: &str,
    reason: &str,
    node: Option<(&str, &str)>,
) -> Value {
    let at = now();
    let (message, annotations) = match node {
        Some((id, short)) => {
            let phase = reason.strip_prefix("WorkflowNode").unwrap_or("Running");
            (
                format!("{phase} node {wf}.{short}"),
                json!({
                    "workflows.argoproj.io/node-name": format!("{wf}.{short}"),
                    "workflows.argoproj.io/node-id": id,
                    "workflows.argoproj.io/node-type": "Pod",
                }),
            )
        }
        None => ("Workflow Running".to_owned(), json!({})),
    };
    json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": name, "annotations": annotations},
        "involvedObject": {"kind": "Workflow", "name": wf, "uid": wf_uid,
                           "apiVersion": "argoproj.io/v1alpha1"},
        "reason": reason, "message": message, "type": "Normal",
        "source": {"component": "workflow-controller"},
        "reportingComponent": "workflow-controller", "reportingInstance": "",
        "firstTimestamp": at, "lastTimestamp": at, "count": 1
    })
}

/// The `webhook-id` the router derives for an Event occurrence: a UUID v5 of its uid and
/// count.
pub fn webhook_id(event: &Value) -> String {
    let uid = event["metadata"]["uid"].as_str().unwrap();
    let count = event["count"].as_i64().unwrap_or(1);
    let id = uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_OID,
        format!("{uid}/{count}").as_bytes(),
    );
    format!("msg_{id}")
}
