//! Signatures for many receivers: `v1` (HMAC) and `v1a` (ed25519) side by side while a key is
//! rotated, each checked by code independent of the router's: the `standardwebhooks` crate for
//! `v1`, `ed25519-dalek` over the specification's signed content for `v1a`.

mod support;

use base64::Engine;
use ed25519_dalek::{Signature, SigningKey, Verifier};
use support::router::{PATIENCE, RouterProcess, Scratch, run_command, toml_path, toml_str};
use support::sink::Sink;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_sends_a_v1a_and_a_v1_signature_and_each_verifies() {
    let scratch = Scratch::new();
    let sink = Sink::start().await;
    let b64 = base64::engine::general_purpose::STANDARD;
    let seed = [7u8; 32];
    let asymmetric = format!("whsk_{}", b64.encode(seed));
    let symmetric = format!("whsec_{}", b64.encode(b"the old key, still configured.."));
    let old_file = scratch.write("old-secret", &symmetric);
    let config = scratch.write(
        "router.toml",
        &format!(
            "{tables}[[endpoints]]\nname = \"rotating\"\nurl = {url}\n\
             signing_secrets = [{{ env = \"KFP_ROUTER_TEST_NEW_KEY\" }}, {{ file = {old} }}]\n",
            tables = scratch.tables(&support::quickstart_recording(), None),
            url = toml_str(&sink.url("/hook")),
            old = toml_path(&old_file),
        ),
    );
    let mut command = run_command(&config);
    command.env("KFP_ROUTER_TEST_NEW_KEY", &asymmetric);
    let mut router = RouterProcess::spawn(command);
    router.expect_success().await;

    let public = SigningKey::from_bytes(&seed).verifying_key();
    let v1 = standardwebhooks::Webhook::new(&symmetric).unwrap();
    let requests = sink.received_on("/hook");
    assert_eq!(requests.len(), 25);
    for r in &requests {
        let header = r.header("webhook-signature");
        let signatures: Vec<&str> = header.split(' ').collect();
        assert_eq!(signatures.len(), 2, "{header}");
        let v1a = signatures[0]
            .strip_prefix("v1a,")
            .expect("the current key's signature first");
        assert!(signatures[1].starts_with("v1,"), "{header}");

        let content = format!(
            "{}.{}.{}",
            r.header("webhook-id"),
            r.header("webhook-timestamp"),
            String::from_utf8_lossy(&r.body)
        );
        let signature = Signature::from_slice(&b64.decode(v1a).unwrap()).unwrap();
        public
            .verify(content.as_bytes(), &signature)
            .expect("v1a verifies with the public key");
        assert!(
            public
                .verify(format!("{content} ").as_bytes(), &signature)
                .is_err(),
            "a changed body fails"
        );
        v1.verify(&r.body, &r.headers)
            .expect("v1 verifies with the old symmetric key");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receive_checks_v1a_signatures_with_the_public_key() {
    let b64 = base64::engine::general_purpose::STANDARD;
    let seed = [9u8; 32];
    let public = SigningKey::from_bytes(&seed).verifying_key();
    let mut receive = support::router::command();
    receive
        .args(["receive", "--listen", "127.0.0.1:0", "--secret-env", "PK"])
        .args(["--exit-after", "25"])
        .env("PK", format!("whpk_{}", b64.encode(public.as_bytes())));
    let mut receiver = RouterProcess::spawn(receive);
    let line = receiver
        .wait_for_log("receiving webhooks on", PATIENCE)
        .await;
    let url = line.trim().rsplit(' ').next().unwrap().to_owned();

    let scratch = Scratch::new();
    let config = scratch.write(
        "router.toml",
        &format!(
            "{tables}[[endpoints]]\nname = \"receiver\"\nurl = {url}\n\
             signing_secret = {{ env = \"KFP_ROUTER_TEST_KEY\" }}\n",
            tables = scratch.tables(&support::quickstart_recording(), None),
            url = toml_str(&format!("{url}/hook")),
        ),
    );
    let mut command = run_command(&config);
    command.env("KFP_ROUTER_TEST_KEY", format!("whsk_{}", b64.encode(seed)));
    let mut router = RouterProcess::spawn(command);
    router.expect_success().await;
    receiver.expect_success().await;
    let printed = receiver.stdout();
    assert_eq!(printed.matches("signature: valid").count(), 25, "{printed}");
    assert!(!printed.contains("INVALID"));

    // A public key of the wrong length is refused, naming the problem, not the key.
    let bad = support::router::command()
        .args(["receive", "--listen", "127.0.0.1:0", "--secret-env", "PK"])
        .env("PK", "whpk_AAAA")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("32 bytes") && !err.contains("AAAA"), "{err}");
}
