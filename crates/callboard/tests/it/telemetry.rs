//! Trace export: `callboard serve` with an OTLP endpoint configured the standard way sends its
//! request spans over OTLP/HTTP; the receiver here decodes them with the OpenTelemetry protocol's
//! own message types.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use serde_json::json;

use crate::serve::Server;

/// An OTLP/HTTP receiver: answers every POST with 200 and hands over (path, content type, body).
fn receiver() -> (String, mpsc::Receiver<(String, String, Vec<u8>)>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut stream = stream;
                // Keep-alive: several requests per connection.
                loop {
                    let mut request_line = String::new();
                    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                        return;
                    }
                    let path = request_line.split(' ').nth(1).unwrap_or_default().to_owned();
                    let (mut length, mut content_type) = (0usize, String::new());
                    loop {
                        let mut header = String::new();
                        if reader.read_line(&mut header).unwrap_or(0) == 0 {
                            return;
                        }
                        let header = header.trim_end();
                        if header.is_empty() {
                            break;
                        }
                        if let Some((name, value)) = header.split_once(':') {
                            match name.trim().to_ascii_lowercase().as_str() {
                                "content-length" => length = value.trim().parse().unwrap_or(0),
                                "content-type" => content_type = value.trim().to_owned(),
                                _ => {}
                            }
                        }
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
                    let _ = tx.send((path, content_type, body));
                }
            });
        }
    });
    (addr, rx)
}

#[test]
fn request_spans_are_exported_over_otlp() {
    let (collector, exports) = receiver();
    let data = tempfile::tempdir().expect("tempdir");
    let endpoint = format!("http://{collector}");
    let server = Server::start_with_env(
        &["--data-dir", &data.path().display().to_string()],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("CALLBOARD_LOG", "info"),
        ],
    );
    server.data("{ locations { target } }", json!({}));

    // Wait for a batch holding the GraphQL request's span.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let (path, content_type, body) = exports.recv_timeout(left).expect("an OTLP export arrives");
        assert_eq!(path, "/v1/traces");
        assert_eq!(content_type, "application/x-protobuf");
        let request = ExportTraceServiceRequest::decode(body.as_slice()).expect("an OTLP trace export");
        for resource_spans in &request.resource_spans {
            let service = resource_spans
                .resource
                .as_ref()
                .and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"))
                .and_then(|a| a.value.as_ref()?.value.clone());
            let spans = resource_spans.scope_spans.iter().flat_map(|s| s.spans.iter());
            for span in spans {
                let graphql_request = span.name == "request"
                    && span.attributes.iter().any(|a| {
                        a.key == "path"
                            && matches!(a.value.as_ref().and_then(|v| v.value.as_ref()),
                                Some(AnyValue::StringValue(p)) if p == "/graphql")
                    });
                if graphql_request {
                    assert_eq!(service, Some(AnyValue::StringValue("callboard".into())));
                    assert_eq!(span.trace_id.len(), 16, "a real trace id");
                    return;
                }
            }
        }
    }
}
