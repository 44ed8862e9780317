//! Configuration layers of the real binary: embedded defaults, the TOML file, `NEONEX_*`
//! variables and flags, each overriding the last; and every kind of rejection, which
//! must name the key (and the line, in a file) and stop the server.

use std::io::Write;

use neonex_testkit::binary::{run_neonex, Server};
use neonex_testkit::client::Client;
use neonex_testkit::http::http_call;

fn file(text: &str) -> tempfile_lite::TempFile {
    tempfile_lite::TempFile::with(text)
}

/// A minimal temporary file, removed when dropped.
mod tempfile_lite {
    pub struct TempFile(pub std::path::PathBuf);

    impl TempFile {
        pub fn with(text: &str) -> TempFile {
            use std::sync::atomic::{AtomicU32, Ordering};
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path =
                std::env::temp_dir().join(format!("neonex-test-{}-{n}.toml", std::process::id()));
            let mut f = std::fs::File::create(&path).unwrap();
            super::Write::write_all(&mut f, text.as_bytes()).unwrap();
            TempFile(path)
        }

        pub fn path(&self) -> &str {
            self.0.to_str().unwrap()
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

fn value(printed: &str, key: &str) -> String {
    printed
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key} = ")))
        .unwrap_or_else(|| panic!("no {key} in:\n{printed}"))
        .to_owned()
}

#[test]
fn without_a_file_the_embedded_defaults_apply() {
    let (code, out, err) = run_neonex(&["config"], &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(value(&out, "listen"), "\"0.0.0.0:3000\"");
    assert_eq!(value(&out, "ping_interval"), "\"54s\"");
    assert_eq!(value(&out, "max_message_size"), "\"512KiB\"");
    assert_eq!(value(&out, "create"), "[\"general\", \"random\"]");
    assert_eq!(value(&out, "scope"), "\"all\"");
    let shards: usize = value(&out, "shards").parse().unwrap();
    assert_eq!(shards, std::thread::available_parallelism().unwrap().get());
}

#[test]
fn file_then_environment_then_flags_each_override_the_last() {
    let f = file(
        "listen = \"127.0.0.1:4000\"\nshards = 3\n[hub]\nping_interval = \"20s\"\npong_timeout = \"25s\"\n[presence]\nscope = \"rooms\"\n[auth]\njwt_secret = \"from-file\"\n",
    );
    let (code, out, err) = run_neonex(
        &["config", "--config", f.path(), "--listen", "127.0.0.1:5000"],
        &[
            ("NEONEX_LISTEN", "127.0.0.1:4500"),
            ("NEONEX_SHARDS", "5"),
            ("NEONEX_HUB_PONG_TIMEOUT", "30s"),
            ("NEONEX_ROOMS_CREATE", "lobby,general"),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(value(&out, "listen"), "\"127.0.0.1:5000\"", "the flag wins");
    assert_eq!(value(&out, "shards"), "5", "the environment beats the file");
    assert_eq!(
        value(&out, "ping_interval"),
        "\"20s\"",
        "the file beats the default"
    );
    assert_eq!(value(&out, "pong_timeout"), "\"30s\"");
    assert_eq!(value(&out, "scope"), "\"rooms\"");
    assert_eq!(value(&out, "create"), "[\"lobby\", \"general\"]");
    assert_eq!(
        value(&out, "jwt_secret"),
        "\"********\"",
        "secrets are masked"
    );
    assert!(!out.contains("from-file"));

    // Every flag beats the environment.
    let (code, out, err) = run_neonex(
        &["config", "--shards", "7", "--epoll", "--log-format", "json"],
        &[
            ("NEONEX_SHARDS", "5"),
            ("NEONEX_HUB_DRIVER", "auto"),
            ("NEONEX_LOG_FORMAT", "text"),
            ("NEONEX_LOG_LEVEL", "debug"),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(value(&out, "shards"), "7");
    assert_eq!(value(&out, "driver"), "\"epoll\"");
    assert_eq!(value(&out, "format"), "\"json\"");
    assert_eq!(
        value(&out, "level"),
        "\"debug\"",
        "the environment beats the default"
    );
}

#[test]
fn the_shipped_example_file_is_valid_and_changes_nothing() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/neonex.example.toml");
    let (code, with_file, err) = run_neonex(&["config", "--config", example], &[]);
    assert_eq!(code, 0, "{err}");
    let (_, without, _) = run_neonex(&["config"], &[]);
    assert_eq!(with_file, without);
}

#[test]
fn mistakes_stop_the_server_with_a_message_naming_the_key() {
    /// Environment, file text, and what the message must mention.
    type Case<'a> = (Vec<(&'a str, &'a str)>, Option<&'a str>, &'a [&'a str]);
    let cases: Vec<Case> = vec![
        (
            vec![],
            Some("[hub]\nping_intervall = \"3s\"\n"),
            &["line 2", "ping_intervall"],
        ),
        (
            vec![],
            Some("[hub]\nping_interval = \"soon\"\n"),
            &["line 2", "invalid duration"],
        ),
        (
            vec![],
            Some("listen = \"nowhere\"\n"),
            &["line 1", "socket address"],
        ),
        (
            vec![],
            Some("[hub]\nmax_message_size = \"lots\"\n"),
            &["line 2", "invalid size"],
        ),
        (vec![], Some("[limits]\nburst = -1\n"), &["line 2", "burst"]),
        (
            vec![],
            Some("[presence]\nscope = \"some\"\n"),
            &["line 2", "scope"],
        ),
        (
            vec![],
            Some("[rooms]\nautojoin = [\"lobby\"]\n"),
            &["rooms.autojoin", "lobby"],
        ),
        (
            vec![],
            Some("[hub]\npong_timeout = \"0s\"\n"),
            &["hub.pong_timeout"],
        ),
        (
            vec![],
            Some("[limits]\nmax_connections = 0\n"),
            &["limits.max_connections"],
        ),
        (
            vec![],
            Some("allowed_origins = [\"example.com\"]\n"),
            &["allowed_origins"],
        ),
        (
            vec![("NEONEX_LOG_LEVEL", "neonex=loud")],
            None,
            &["log.level", "loud"],
        ),
        (
            vec![],
            Some("[log]\nlevel = \"warning\"\n"),
            &["log.level", "\"warning\" is not a level"],
        ),
        (
            vec![("NEONEX_LOG_LEVEL", "verbose")],
            None,
            &["log.level", "verbose"],
        ),
        (
            vec![],
            Some("[log]\ncolor = \"sometimes\"\n"),
            &["line 2", "color"],
        ),
        (
            vec![("NEONEX_HTTP_TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/40")],
            None,
            &["http.trusted_proxies", "10.0.0.0/40"],
        ),
        (
            vec![],
            Some("[hub]\nsubprotocols = [\"neonex v1\"]\n"),
            &["hub.subprotocols", "neonex v1"],
        ),
        (
            vec![("NEONEX_HUB_PING", "1s")],
            None,
            &["NEONEX_HUB_PING", "no such setting"],
        ),
        (
            vec![("NEONEX_SHARDS", "many")],
            None,
            &["NEONEX_SHARDS (shards)", "whole number"],
        ),
        (
            vec![("NEONEX_HUB_WRITE_TIMEOUT", "fast")],
            None,
            &[
                "NEONEX_HUB_WRITE_TIMEOUT (hub.write_timeout)",
                "invalid duration",
            ],
        ),
        (
            vec![("NEONEX_AUTH_JWT_PUBLIC_KEY", "/nonexistent/key.pem")],
            None,
            &["auth.jwt_public_key", "/nonexistent/key.pem"],
        ),
    ];
    for (env, text, expected) in cases {
        let f = text.map(file);
        let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
        if let Some(f) = &f {
            args.extend(["--config", f.path()]);
        }
        let (code, out, err) = run_neonex(&args, &env);
        assert_eq!(code, 2, "{env:?} {text:?}: exit {code}\n{out}\n{err}");
        for needle in expected {
            assert!(
                err.contains(needle),
                "{env:?} {text:?}: the message should mention {needle:?}:\n{err}"
            );
        }
        assert!(!out.contains("serving"), "it must not start: {out}");
    }
    let (code, _, err) = run_neonex(&["serve", "--config", "/nonexistent.toml"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent.toml"), "{err}");
}

#[tokio::test]
async fn settings_reach_the_running_server() {
    let f = file("[rooms]\ncreate = [\"lobby\"]\nautojoin = [\"lobby\"]\n");
    let (_server, addr) = Server::spawn(
        &["--config", f.path()],
        &[
            ("NEONEX_HUB_MAX_MESSAGE_SIZE", "1KiB"),
            ("NEONEX_HUB_SEND_QUEUE_BYTES", "64KiB"),
            // The send queue must hold an API broadcast of the largest body.
            ("NEONEX_API_MAX_BODY", "32KiB"),
        ],
    )
    .await;
    let body = format!(r#"{{"pad":"{}"}}"#, "x".repeat(33 * 1024));
    let big = http_call(addr, "POST", "/api/broadcast", "", &body).await;
    assert_eq!(
        big.status, 413,
        "api.max_body came from the environment: {big:?}"
    );
    let mut client = Client::connect(addr, Some("cfg"), &["lobby".to_owned()]).await;
    client
        .send_text(&format!(
            r#"{{"type":"message","room":"lobby","message":"{}"}}"#,
            "x".repeat(2000)
        ))
        .await;
    assert_eq!(
        client.expect_close().await.0,
        1009,
        "max_message_size came from the environment"
    );
}

#[test]
fn history_and_conflation_settings_are_read_and_checked() {
    let (code, out, err) = run_neonex(
        &["config"],
        &[
            ("NEONEX_HISTORY_SIZE", "500"),
            ("NEONEX_HISTORY_TTL", "2m"),
            ("NEONEX_ROOMS_CONFLATE", "ticker.*,scores"),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("[history]\nsize = 500\nttl = \"2m\"\nmax_recover = 300"),
        "{out}"
    );
    assert!(
        out.contains("conflate = [\"ticker.*\", \"scores\"]"),
        "{out}"
    );
    for (key, value, named) in [
        ("NEONEX_ROOMS_CONFLATE", "bad name", "rooms.conflate"),
        ("NEONEX_ROOMS_CONFLATE", "a*b", "rooms.conflate"),
        ("NEONEX_HISTORY_MAX_RECOVER", "0", "history.max_recover"),
        ("NEONEX_HISTORY_TTL", "0s", "history.ttl"),
    ] {
        let (code, _, err) = run_neonex(&["config"], &[("NEONEX_HISTORY_SIZE", "5"), (key, value)]);
        assert_eq!(code, 2, "{key}={value}: {err}");
        assert!(err.contains(named), "{key}={value}: {err}");
    }
}

#[test]
fn cluster_settings_are_read_and_checked() {
    let (code, out, err) = run_neonex(
        &["config", "--cluster", "nats://127.0.0.1:4222"],
        &[
            ("NEONEX_CLUSTER_NODE_ID", "web-1"),
            ("NEONEX_CLUSTER_SUBJECT_PREFIX", "acme.neonex"),
            ("NEONEX_CLUSTER_NODE_TIMEOUT", "5s"),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(
            "[cluster]\nnats_url = \"nats://127.0.0.1:4222\"\nnode_id = \"web-1\"\nsubject_prefix = \"acme.neonex\"\nnode_timeout = \"5s\""
        ),
        "{out}"
    );
    for (key, value, named) in [
        (
            "NEONEX_CLUSTER_NATS_URL",
            "http://127.0.0.1:4222",
            "cluster.nats_url",
        ),
        ("NEONEX_CLUSTER_NATS_URL", "nats://:x", "cluster.nats_url"),
        ("NEONEX_CLUSTER_NODE_ID", "web 1", "cluster.node_id"),
        (
            "NEONEX_CLUSTER_SUBJECT_PREFIX",
            "a..b",
            "cluster.subject_prefix",
        ),
        (
            "NEONEX_CLUSTER_SUBJECT_PREFIX",
            "a.>",
            "cluster.subject_prefix",
        ),
        (
            "NEONEX_CLUSTER_NODE_TIMEOUT",
            "500ms",
            "cluster.node_timeout",
        ),
    ] {
        let env = [
            ("NEONEX_CLUSTER_NATS_URL", "nats://127.0.0.1:4222"),
            (key, value),
        ];
        let (code, _, err) = run_neonex(&["config"], &env);
        assert_eq!(code, 2, "{key}={value}: {err}");
        assert!(err.contains(named), "{key}={value}: {err}");
    }
}

#[test]
fn proxy_settings_are_read_and_checked() {
    let (code, out, err) = run_neonex(&["config"], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("[proxy]\ntimeout = \"2s\""), "{out}");
    let (code, out, err) = run_neonex(
        &["config"],
        &[
            ("NEONEX_PROXY_CONNECT_URL", "http://127.0.0.1:8080/connect"),
            ("NEONEX_PROXY_JOIN_URL", "http://backend:9000/join"),
            ("NEONEX_PROXY_PUBLISH_URL", "http://backend/publish"),
            ("NEONEX_PROXY_RPC_URL", "http://[::1]:8080/rpc"),
            ("NEONEX_PROXY_TIMEOUT", "500ms"),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(
            "[proxy]\nconnect_url = \"http://127.0.0.1:8080/connect\"\njoin_url = \"http://backend:9000/join\"\npublish_url = \"http://backend/publish\"\nrpc_url = \"http://[::1]:8080/rpc\"\ntimeout = \"500ms\""
        ),
        "{out}"
    );
    for (key, value, named) in [
        (
            "NEONEX_PROXY_CONNECT_URL",
            "https://backend/connect",
            "https is not supported",
        ),
        ("NEONEX_PROXY_JOIN_URL", "backend/join", "proxy.join_url"),
        (
            "NEONEX_PROXY_PUBLISH_URL",
            "ws://backend/x",
            "proxy.publish_url",
        ),
        ("NEONEX_PROXY_RPC_URL", "http://", "proxy.rpc_url"),
        ("NEONEX_PROXY_TIMEOUT", "0s", "proxy.timeout"),
        ("NEONEX_PROXY_TIMEOUT", "2d", "proxy.timeout"),
        ("NEONEX_PROXY_TIMEOUT", "soon", "proxy.timeout"),
    ] {
        let (code, _, err) = run_neonex(&["config"], &[(key, value)]);
        assert_eq!(code, 2, "{key}={value}: {err}");
        assert!(err.contains(named), "{key}={value}: {err}");
    }
    let (code, _, err) = run_neonex(
        &["config"],
        &[("NEONEX_PROXY_CONNECT_URL", "https://backend/connect")],
    );
    assert_eq!(code, 2);
    assert!(err.contains("proxy.connect_url"), "{err}");
}
