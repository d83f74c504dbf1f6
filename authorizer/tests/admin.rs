//! The admin HTTP server over real loopback HTTP: a fake `AdminSource`, a bare HTTP/1.1 client
//! on a `TcpStream` (one request per connection, read to the end).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use authorizer::admin::{
    self, AccountView, AdminSource, LinkView, Metrics, StateCounts, StateView,
};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

struct FakeSource {
    ready: AtomicBool,
    accounts: HashMap<String, AccountView>,
}

impl AdminSource for FakeSource {
    fn ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    fn state(&self) -> StateView {
        let mut view = StateView {
            instance_id: "auth-a".to_owned(),
            ready: self.ready(),
            state_hash: "00ff".repeat(8),
            counts: StateCounts {
                accounts: 2,
                cards: 3,
                holds: 1,
            },
            links: vec![LinkView {
                address: "127.0.0.1:18583".to_owned(),
                state: "signed_on".to_owned(),
            }],
            spool_events: 4,
            ..StateView::default()
        };
        view.set_offset("account-updates", 0, 1234);
        view.set_offset("authorizations", 0, 987);
        view
    }

    fn account(&self, account_id: &str) -> Option<AccountView> {
        self.accounts.get(account_id).cloned()
    }
}

struct Server {
    address: std::net::SocketAddr,
    source: Arc<FakeSource>,
    metrics: Arc<Metrics>,
    stop: watch::Sender<bool>,
    task: JoinHandle<std::io::Result<()>>,
}

async fn start() -> Server {
    let account = AccountView {
        account_id: "acc-000123".to_owned(),
        status: "active".to_owned(),
        currency: "986".to_owned(),
        credit_limit: 500_000,
        posted_balance: 120_000,
        held: 30_000,
        open_to_buy: 350_000,
        holds: 1,
    };
    let source = Arc::new(FakeSource {
        ready: AtomicBool::new(false),
        accounts: HashMap::from([(account.account_id.clone(), account)]),
    });
    let metrics = Arc::new(Metrics::new());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(admin::serve(
        listener,
        source.clone(),
        metrics.clone(),
        stopped,
    ));
    Server {
        address,
        source,
        metrics,
        stop,
        task,
    }
}

/// One GET over a fresh connection: the status code, the headers (lowercase names) and the body.
async fn get(server: &Server, path: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(server.address).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8(answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    let status_line = head.lines().next().unwrap();
    let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_owned())
}

fn json_body(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[tokio::test]
async fn live_answers_200() {
    let server = start().await;
    assert_eq!(get(&server, "/health/live").await.0, 200);
}

#[tokio::test]
async fn ready_answers_503_then_200_once_the_source_is_ready_then_503_while_stopping() {
    let server = start().await;
    assert_eq!(get(&server, "/health/ready").await.0, 503);
    server.source.ready.store(true, Ordering::SeqCst);
    assert_eq!(get(&server, "/health/ready").await.0, 200);
    server.source.ready.store(false, Ordering::SeqCst);
    assert_eq!(get(&server, "/health/ready").await.0, 503);
}

#[tokio::test]
async fn state_is_json_with_every_field_typed() {
    let server = start().await;
    server.source.ready.store(true, Ordering::SeqCst);
    let (status, head, body) = get(&server, "/state").await;
    assert_eq!(status, 200);
    assert!(head.contains("content-type: application/json"), "{head}");
    let state = json_body(&body);
    let object = state.as_object().unwrap();
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "counts",
            "instance_id",
            "links",
            "offsets",
            "ready",
            "spool_events",
            "state_hash"
        ]
    );
    assert_eq!(state["instance_id"], "auth-a");
    assert_eq!(state["ready"], true);
    assert!(state["state_hash"].is_string());
    assert_eq!(state["offsets"]["account-updates/0"], 1234);
    assert_eq!(state["offsets"]["authorizations/0"], 987);
    assert_eq!(state["counts"]["accounts"], 2);
    assert_eq!(state["counts"]["cards"], 3);
    assert_eq!(state["counts"]["holds"], 1);
    let links = state["links"].as_array().unwrap();
    assert_eq!(links.len(), 1);
    assert_eq!(links[0]["address"], "127.0.0.1:18583");
    assert_eq!(links[0]["state"], "signed_on");
    assert!(state["spool_events"].is_u64());
    assert_eq!(state["spool_events"], 4);
}

#[tokio::test]
async fn an_unknown_account_is_404_and_a_known_one_has_its_fields() {
    let server = start().await;
    assert_eq!(get(&server, "/accounts/acc-unknown").await.0, 404);
    let (status, _, body) = get(&server, "/accounts/acc-000123").await;
    assert_eq!(status, 200);
    let account = json_body(&body);
    assert_eq!(account.as_object().unwrap().len(), 8, "{body}");
    assert_eq!(account["account_id"], "acc-000123");
    assert_eq!(account["status"], "active");
    assert_eq!(account["currency"], "986");
    assert_eq!(account["credit_limit"], 500_000);
    assert_eq!(account["posted_balance"], 120_000);
    assert_eq!(account["held"], 30_000);
    assert_eq!(account["open_to_buy"], 350_000);
    assert_eq!(account["holds"], 1);
}

#[tokio::test]
async fn metrics_has_every_family_with_its_type_and_the_samples_recorded() {
    let server = start().await;
    let m = &server.metrics;
    m.request_answered("0100", "00");
    m.observe_duration("total", 0.002);
    m.set_link_up("127.0.0.1:18583", true);
    m.link_reconnects
        .get_or_create(&admin::metrics::DeviceLabels {
            device: "127.0.0.1:18583".to_owned(),
        })
        .inc();
    m.bad_frames
        .get_or_create(&admin::metrics::BadFrameLabels {
            device: "127.0.0.1:18583".to_owned(),
            kind: "parse".to_owned(),
        })
        .inc();
    m.hsm_errors
        .get_or_create(&admin::metrics::KindLabels {
            kind: "session".to_owned(),
        })
        .inc();
    m.kafka_lag
        .get_or_create(&admin::metrics::PartitionLabels {
            topic: "authorizations".to_owned(),
            partition: 0,
        })
        .set(7);
    m.spool_events.set(3);
    m.dead_letters.inc();
    m.set_state_records("accounts", 2);

    let (status, head, body) = get(&server, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        head.contains("content-type: application/openmetrics-text"),
        "{head}"
    );
    // OpenMetrics names a counter's family without `_total` and its samples with it.
    for (family, kind, sample) in [
        (
            "authorizer_requests",
            "counter",
            r#"authorizer_requests_total{mti="0100",response_code="00"} 1"#,
        ),
        (
            "authorizer_request_duration_seconds",
            "histogram",
            r#"authorizer_request_duration_seconds_count{stage="total"} 1"#,
        ),
        (
            "authorizer_link_up",
            "gauge",
            r#"authorizer_link_up{device="127.0.0.1:18583"} 1"#,
        ),
        (
            "authorizer_link_reconnects",
            "counter",
            r#"authorizer_link_reconnects_total{device="127.0.0.1:18583"} 1"#,
        ),
        (
            "authorizer_bad_frames",
            "counter",
            r#"authorizer_bad_frames_total{device="127.0.0.1:18583",kind="parse"} 1"#,
        ),
        (
            "authorizer_hsm_errors",
            "counter",
            r#"authorizer_hsm_errors_total{kind="session"} 1"#,
        ),
        (
            "authorizer_kafka_lag_records",
            "gauge",
            r#"authorizer_kafka_lag_records{topic="authorizations",partition="0"} 7"#,
        ),
        (
            "authorizer_spool_events",
            "gauge",
            "authorizer_spool_events 3",
        ),
        (
            "authorizer_dead_letters",
            "counter",
            "authorizer_dead_letters_total 1",
        ),
        (
            "authorizer_state_records",
            "gauge",
            r#"authorizer_state_records{kind="accounts"} 2"#,
        ),
    ] {
        let type_line = format!("# TYPE {family} {kind}");
        assert!(
            body.lines().any(|l| l == type_line),
            "no `{type_line}` in:\n{body}"
        );
        assert!(
            body.lines().any(|l| l == sample),
            "no `{sample}` in:\n{body}"
        );
    }
    assert!(body.ends_with("# EOF\n"), "{body}");
}

#[tokio::test]
async fn an_unknown_path_is_404() {
    let server = start().await;
    assert_eq!(get(&server, "/nothing/here").await.0, 404);
    assert_eq!(get(&server, "/accounts").await.0, 404);
}

#[tokio::test]
async fn the_server_returns_once_told_to_stop() {
    let server = start().await;
    assert_eq!(get(&server, "/health/live").await.0, 200);
    server.stop.send(true).unwrap();
    server.task.await.unwrap().unwrap();
    assert!(TcpStream::connect(server.address).await.is_err());
}

#[tokio::test]
async fn another_method_on_a_known_path_is_405() {
    let server = start().await;
    let mut stream = TcpStream::connect(server.address).await.unwrap();
    stream
        .write_all(b"POST /health/ready HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 405 "),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

#[tokio::test]
async fn a_pan_typed_as_an_account_id_is_not_echoed() {
    let server = start().await;
    let (status, head, body) = get(&server, "/accounts/4111111111111111").await;
    assert_eq!(status, 404);
    assert!(
        !head.contains("4111") && !body.contains("4111"),
        "{head}\n{body}"
    );
}
