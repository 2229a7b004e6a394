//! Traces and logs of real processes: an OTLP/gRPC receiver (the collector
//! service from the OpenTelemetry protocol) runs in the test; the edge and
//! nodes export to it; the test follows one request edge → node → store.
//! Also: SIGHUP reloads at the edge, JSON logs carrying trace ids.

use crate::procs::*;
use domicile_proto::v1 as pb;
use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::{AnyValue, KeyValue, any_value::Value},
    trace::v1::Span,
};
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

/// Spans received, with their service name.
#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<(String, Span)>>>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut got = self.0.lock().unwrap();
        for rs in req.into_inner().resource_spans {
            let service = rs
                .resource
                .as_ref()
                .and_then(|r| attr(&r.attributes, "service.name"))
                .unwrap_or_default();
            for ss in rs.scope_spans {
                got.extend(ss.spans.into_iter().map(|s| (service.clone(), s)));
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn text(v: &AnyValue) -> String {
    match &v.value {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(Value::BytesValue(b)) => String::from_utf8_lossy(b).into_owned(),
        Some(Value::ArrayValue(a)) => a.values.iter().map(text).collect::<Vec<_>>().join(","),
        Some(Value::KvlistValue(l)) => l
            .values
            .iter()
            .map(|kv| {
                format!(
                    "{}={}",
                    kv.key,
                    kv.value.as_ref().map(text).unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join(","),
        None => String::new(),
    }
}

fn attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref().map(text))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Everything a span exports as text: name, attributes, events.
fn exported_text(s: &Span) -> String {
    let mut t = s.name.clone();
    for kv in s
        .attributes
        .iter()
        .chain(s.events.iter().flat_map(|e| e.attributes.iter()))
    {
        t += &format!(
            " {}={}",
            kv.key,
            kv.value.as_ref().map(text).unwrap_or_default()
        );
    }
    for e in &s.events {
        t += &format!(" event:{}", e.name);
    }
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_runs_edge_to_node_to_store_and_exports_no_secrets() {
    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(receiver.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let mut fed = Federation::start_with(Options {
        global_args: vec!["--log-format".into(), "json".into()],
        env: vec![("OTEL_EXPORTER_OTLP_ENDPOINT".into(), endpoint)],
        ..Options::default()
    });
    let mut edge = fed.client().await;
    let email = "traced.person@example.org";
    let password = "a traced password";
    let reg = edge
        .register(from(
            "203.0.113.41",
            pb::RegisterRequest {
                email: email.into(),
                password: password.into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let reg_trace = reg
        .metadata()
        .get("domicile-trace-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let reg = reg.into_inner();
    assert_eq!(reg.region, "ap");
    // A client that is itself traced: the edge continues its trace.
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let mut req = from(
        "203.0.113.41",
        pb::LoginRequest {
            email: email.into(),
            password: password.into(),
        },
    );
    req.metadata_mut().insert(
        "traceparent",
        format!("00-{caller_trace}-{caller_span}-01")
            .parse()
            .unwrap(),
    );
    let login = edge.login(req).await.unwrap();
    assert_eq!(
        login.metadata().get("domicile-trace-id").unwrap(),
        caller_trace
    );
    let login = login.into_inner();
    fed.stop_all();

    let spans = receiver.0.lock().unwrap().clone();
    let in_trace = |t: &str| -> Vec<(String, Span)> {
        spans
            .iter()
            .filter(|(_, s)| hex(&s.trace_id) == t)
            .cloned()
            .collect()
    };
    for (trace, rpc) in [(reg_trace.as_str(), "Register"), (caller_trace, "Login")] {
        let trace_spans = in_trace(trace);
        let names: Vec<String> = trace_spans
            .iter()
            .map(|(svc, s)| format!("{svc}:{}", s.name))
            .collect();
        let find = |svc: &str, name: &str| {
            trace_spans
                .iter()
                .find(|(s, sp)| s == svc && sp.name == name)
                .map(|(_, sp)| sp.clone())
                .unwrap_or_else(|| panic!("no {svc}:{name} in trace {trace}: {names:?}"))
        };
        let edge_span = find(
            "domicile-edge",
            &format!("edge /domicile.v1.Identity/{rpc}"),
        );
        let node_span = find("domicile-node", &format!("domicile.v1.Identity/{rpc}"));
        assert_eq!(
            node_span.parent_span_id, edge_span.span_id,
            "node continues the edge's span"
        );
        assert_eq!(attr(&edge_span.attributes, "region").as_deref(), Some("ap"));
        assert_eq!(attr(&node_span.attributes, "region").as_deref(), Some("ap"));
        let store: Vec<&Span> = trace_spans
            .iter()
            .filter(|(svc, s)| svc == "domicile-node" && s.name.starts_with("store."))
            .map(|(_, s)| s)
            .collect();
        assert!(!store.is_empty(), "store calls in the trace: {names:?}");
        for s in &store {
            assert_eq!(
                s.parent_span_id, node_span.span_id,
                "{} under the rpc",
                s.name
            );
            assert_eq!(attr(&s.attributes, "region").as_deref(), Some("ap"));
        }
        let hashing = if rpc == "Register" { "hash" } else { "verify" };
        assert_eq!(
            find("domicile-node", hashing).parent_span_id,
            node_span.span_id
        );
        if rpc == "Login" {
            assert_eq!(
                hex(&edge_span.parent_span_id),
                caller_span,
                "the edge continues the caller"
            );
        }
    }

    // Nothing exported names the person or carries a secret.
    let secrets = [
        email.to_owned(),
        "traced.person".to_owned(),
        password.to_owned(),
        reg.access_token.clone(),
        reg.refresh_token.clone(),
        login.access_token.clone(),
        login.refresh_token.clone(),
    ];
    let exported: String = spans
        .iter()
        .map(|(svc, s)| format!("{svc} {}\n", exported_text(s)))
        .collect();
    assert!(exported.contains("store.insert_user"), "{exported}");
    assert_no_leak("exported spans", &exported, &secrets);

    // JSON logs carry the trace id of the request they belong to.
    let logs = fed.logs();
    let traced_lines = logs
        .lines()
        .filter(|l| l.starts_with('{') && l.contains(&format!("\"trace_id\":\"{caller_trace}\"")))
        .count();
    assert!(
        traced_lines > 0,
        "no log line carries the trace id:\n{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_edge_and_a_broken_file_changes_nothing() {
    let mut fed = Federation::start();
    let good = std::fs::read_to_string(&fed.config).unwrap();
    let admin: std::net::SocketAddr = good
        .lines()
        .find_map(|l| l.strip_prefix("admin_listen = "))
        .unwrap()
        .trim_matches('"')
        .parse()
        .unwrap();
    // Waits until the edge has counted one reload with this outcome.
    let counted = async |result: &str| {
        let prefix = format!("domicile_edge_config_reloads_total{{result=\"{result}\"}} ");
        for _ in 0..100 {
            let (_, text) = http_get(admin, "/metrics").await;
            if text
                .lines()
                .any(|l| l.strip_prefix(prefix.as_str()) == Some("1"))
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no reload was {result}");
    };
    // Broken: refused, logged, counted; the edge keeps routing.
    std::fs::write(&fed.config, "[federation\n").unwrap();
    fed.hangup_edge();
    counted("refused").await;
    let mut edge = fed.client().await;
    let r = edge
        .register(from("198.51.100.9", register("after.hup@example.org")))
        .await
        .unwrap();
    assert_eq!(route_of(r.metadata()).0, "us");
    // Valid again (the same federation with us at a different weight): applied.
    std::fs::write(&fed.config, good.replacen("\" }]", "\", weight = 50 }]", 1)).unwrap();
    fed.hangup_edge();
    counted("applied").await;
    fed.stop_all();
    let logs = fed.logs();
    assert!(
        logs.contains("reload refused; the running configuration stays"),
        "{logs}"
    );
    assert!(logs.contains("unclosed table"), "the log says why:\n{logs}");
    assert!(logs.contains("configuration reloaded"), "{logs}");
}
