//! The hub's own pages: the dashboard at `/admin`, guarded like `/api/*`, and the demo
//! chat at `/demo` with the JavaScript client it loads, each served only where its
//! setting turns it on, from the files embedded in the binary.

use neonex::config::{AdminConfig, ApiConfig};
use neonex::HubConfig;
use neonex_testkit::http::HttpResponse;
use neonex_testkit::hub::{config, TestHub};
use neonex_testkit::raw::RawClient;

async fn get(h: &TestHub, path: &str, headers: &str) -> HttpResponse {
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{headers}\r\n");
    RawClient::http(h.addr, &request).await
}

/// What an untrusted proxy in front of the hub would add for a remote visitor.
const RELAYED: &str = "X-Forwarded-For: 203.0.113.9\r\n";

fn hub(admin: AdminConfig, key: Option<&str>) -> TestHub {
    TestHub::start(HubConfig {
        admin,
        api: ApiConfig {
            key: key.map(str::to_owned),
            ..ApiConfig::default()
        },
        ..config()
    })
}

fn expect_page(response: &HttpResponse, content_type: &str, contains: &str) {
    assert_eq!(response.status, 200, "{response:?}");
    let served = response.header("content-type").unwrap_or_default();
    assert!(served.starts_with(content_type), "{served}");
    assert_eq!(response.header("x-frame-options").as_deref(), Some("DENY"));
    assert_eq!(
        response.header("cache-control").as_deref(),
        Some("no-cache")
    );
    assert!(response.body.contains(contains), "{response:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_answers_loopback_without_a_key_and_anyone_with_one() {
    let keyless = hub(AdminConfig::default(), None);
    for path in ["/admin", "/admin/", "/admin/index.html"] {
        expect_page(&get(&keyless, path, "").await, "text/html", "<html");
    }
    // A visitor relayed by a proxy the hub does not trust is not a loopback client.
    let relayed = get(&keyless, "/admin", RELAYED).await;
    assert_eq!(relayed.status, 403, "{relayed:?}");
    assert_eq!(relayed.json()["code"], "forbidden");

    // With a key the page is public: it holds no data, and asks for the key.
    let keyed = hub(AdminConfig::default(), Some("s3cret"));
    expect_page(&get(&keyed, "/admin", RELAYED).await, "text/html", "<html");
    let script = get(&keyed, "/admin/api.js", RELAYED).await;
    expect_page(&script, "text/javascript", "/api/");
    assert!(!script.body.contains("s3cret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_site_is_served_only_where_its_setting_turns_it_on() {
    let default = hub(AdminConfig::default(), None);
    for path in ["/demo", "/demo/neonex-client.js"] {
        assert_eq!(get(&default, path, "").await.status, 404, "{path}");
    }
    let off = hub(
        AdminConfig {
            enabled: false,
            demo: true,
        },
        None,
    );
    for path in ["/admin", "/admin/admin.js"] {
        assert_eq!(get(&off, path, "").await.status, 404, "{path}");
    }
    // The demo is public: it is a page for anyone to chat on.
    expect_page(&get(&off, "/demo", RELAYED).await, "text/html", "<html");
    let client = get(&off, "/demo/neonex-client.js", "").await;
    expect_page(&client, "text/javascript", "export class NeonexClient");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_path_leads_out_of_the_sites() {
    let h = hub(
        AdminConfig {
            enabled: true,
            demo: true,
        },
        None,
    );
    for path in [
        "/admin/../Cargo.toml",
        "/admin/%2e%2e/Cargo.toml",
        "/admin/.gitignore",
        "/admin/README.md",
        "/demo/../../src/lib.rs",
        "/demo/src/neonex-client.js",
        "/administrator",
        "/admin/nothing.js",
    ] {
        let response = get(&h, path, "").await;
        assert_eq!(response.status, 404, "{path}: {response:?}");
    }
}
