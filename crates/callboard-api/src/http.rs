//! GraphQL over HTTP on `/graphql`: POST and GET (queries only), WebSocket subscriptions
//! (`graphql-transport-ws`) on the same path, and the GraphiQL IDE for browsers.

use std::sync::Arc;

use async_graphql::http::{ALL_WEBSOCKET_PROTOCOLS, GraphiQLSource};
use async_graphql::parser::types::OperationType;
use async_graphql::{BatchRequest, BatchResponse, Request, ServerError};
use async_graphql_axum::GraphQLProtocol;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequestParts, State, WebSocketUpgrade};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use callboard_catalog::Principal;

use crate::{CatalogSchema, Limits};

const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";

/// How a request's principal is found from its headers: the one place a transport decides who
/// is asking. Until sign-in exists, [`anonymous`] says nobody; a deployment (or a test) that
/// vouches for callers another way passes its own.
pub type PrincipalResolver = Arc<dyn Fn(&HeaderMap) -> Principal + Send + Sync>;

/// Every request is anonymous.
pub fn anonymous() -> PrincipalResolver {
    Arc::new(|_| Principal::Anonymous)
}

#[derive(Clone)]
struct App {
    schema: CatalogSchema,
    limits: Arc<Limits>,
    principal: PrincipalResolver,
    /// One permit per open WebSocket.
    sockets: Arc<tokio::sync::Semaphore>,
}

/// The `/graphql` routes (and `/graphiql`, the IDE), with the request limits applied and each
/// request's principal resolved by `principal`.
pub fn routes(schema: CatalogSchema, limits: &Limits, principal: PrincipalResolver) -> Router {
    let app = App {
        schema,
        limits: Arc::new(limits.clone()),
        principal,
        sockets: Arc::new(tokio::sync::Semaphore::new(limits.websockets)),
    };
    Router::new()
        .route("/graphql", get(get_graphql).post(post_graphql))
        .route("/graphiql", get(ide))
        .layer(DefaultBodyLimit::max(limits.body_bytes))
        .with_state(app)
}

async fn ide() -> Html<String> {
    Html(
        GraphiQLSource::build()
            .endpoint("/graphql")
            .subscription_endpoint("/graphql")
            .title("Callboard")
            .finish(),
    )
}

/// Which media type the client wants: the GraphQL-over-HTTP one, or plain JSON (the default).
fn wants_graphql_response(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| {
            let graphql = accept.find(GRAPHQL_RESPONSE);
            let json = accept
                .split(',')
                .position(|part| part.trim().starts_with("application/json"));
            match (graphql, json) {
                (Some(_), None) => true,
                (Some(g), Some(j)) => {
                    // The one listed first wins.
                    let g_index = accept[..g].matches(',').count();
                    g_index <= j
                }
                _ => false,
            }
        })
}

fn request_error(status_for_graphql_response: StatusCode, wants_graphql: bool, message: String) -> Response {
    let body = serde_json::json!({"errors": [{"message": message}]});
    let (status, content_type) = if wants_graphql {
        (status_for_graphql_response, GRAPHQL_RESPONSE)
    } else {
        (StatusCode::BAD_REQUEST, "application/json")
    };
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body.to_string(),
    )
        .into_response()
}

async fn execute(app: &App, request: BatchRequest, principal: Principal, wants_graphql: bool) -> Response {
    let request = request.data(principal);
    let response = match tokio::time::timeout(app.limits.timeout, app.schema.execute_batch(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(timeout = ?app.limits.timeout, "a request took too long");
            BatchResponse::Single(crate::socket::timed_out(app.limits.timeout))
        }
    };
    let mut response = response;
    match &mut response {
        BatchResponse::Single(r) => r.errors.iter_mut().for_each(tidy),
        BatchResponse::Batch(all) => all.iter_mut().flat_map(|r| r.errors.iter_mut()).for_each(tidy),
    }
    // A request that failed before execution (parse or validation error) has no data.
    let failed_before_execution = match &response {
        BatchResponse::Single(r) => r.is_err() && r.data == async_graphql::Value::Null,
        BatchResponse::Batch(_) => false,
    };
    let (status, content_type) = if wants_graphql {
        let status = if failed_before_execution {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        };
        (status, GRAPHQL_RESPONSE)
    } else {
        (StatusCode::OK, "application/json")
    };
    let body =
        serde_json::to_string(&response).unwrap_or_else(|_| r#"{"errors":[{"message":"internal error"}]}"#.into());
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response()
}

/// Parse errors come from the parser formatted for a terminal, with the query line echoed — for
/// a hostile query, megabytes. Clients get the position and the reason only.
fn tidy(error: &mut ServerError) {
    let message = &error.message;
    if !message.trim_start().starts_with("-->") {
        return;
    }
    let at = message
        .trim_start()
        .trim_start_matches("-->")
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_owned();
    let reason = message
        .lines()
        .rev()
        .find_map(|line| line.trim().strip_prefix("= "))
        .unwrap_or("syntax error")
        .to_owned();
    let hint = if reason.contains("stack limit") {
        " (the query is nested too deeply)"
    } else {
        ""
    };
    error.message = format!("query parse error at {at}: {reason}{hint}");
}

#[tracing::instrument(name = "graphql", skip_all, fields(method = "POST"))]
async fn post_graphql(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let wants_graphql = wants_graphql_response(&headers);
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if media != "application/json" && media != "application/graphql-request+json" {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("send GraphQL requests as application/json (got {content_type:?})"),
        )
            .into_response();
    }
    let request: BatchRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            return request_error(
                StatusCode::BAD_REQUEST,
                wants_graphql,
                format!("the body is not a GraphQL request: {e}"),
            );
        }
    };
    if let BatchRequest::Batch(operations) = &request
        && operations.len() > app.limits.batch
    {
        return request_error(
            StatusCode::BAD_REQUEST,
            wants_graphql,
            format!(
                "a batch of {} operations is more than the {} allowed (--max-batch)",
                operations.len(),
                app.limits.batch
            ),
        );
    }
    let principal = (app.principal)(&headers);
    execute(&app, request, principal, wants_graphql).await
}

/// Whether a WebSocket upgrade may proceed: a browser's page may open one only from the
/// server's own origin or an allowed one, so that a page elsewhere cannot drive a server on the
/// developer's machine with the developer's network position. Requests without `Origin` do not
/// come from pages.
fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> Result<(), String> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin
        .to_str()
        .map_err(|_| "the Origin header is not text".to_owned())?;
    let normalized = origin.trim_end_matches('/').to_ascii_lowercase();
    if allowed
        .iter()
        .any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(&normalized))
    {
        return Ok(());
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let same_origin = ["http://", "https://"]
        .iter()
        .any(|scheme| !host.is_empty() && normalized == format!("{scheme}{host}"));
    if same_origin {
        Ok(())
    } else {
        Err(format!(
            "WebSocket connections from pages of {origin} are not allowed: add the origin with --allow-origin"
        ))
    }
}

#[tracing::instrument(name = "graphql", skip_all, fields(method = "GET"))]
async fn get_graphql(State(app): State<App>, request: axum::extract::Request) -> Response {
    let (mut parts, _) = request.into_parts();
    let is_upgrade = parts
        .headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if is_upgrade {
        if let Err(refused) = origin_allowed(&parts.headers, &app.limits.allowed_origins) {
            tracing::warn!(origin = ?parts.headers.get(header::ORIGIN), "a cross-origin WebSocket was refused");
            return (StatusCode::FORBIDDEN, refused).into_response();
        }
        let protocol = match GraphQLProtocol::from_request_parts(&mut parts, &()).await {
            Ok(protocol) => protocol,
            Err(e) => return e.into_response(),
        };
        let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
            Ok(upgrade) => upgrade,
            Err(e) => return e.into_response(),
        };
        let Ok(permit) = app.sockets.clone().try_acquire_owned() else {
            tracing::warn!(
                limit = app.limits.websockets,
                "a WebSocket was refused: the server holds its limit"
            );
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "the server holds as many WebSocket connections as it may; try again later",
            )
                .into_response();
        };
        let executor = crate::socket::Timed {
            schema: app.schema.clone(),
            timeout: app.limits.timeout,
        };
        let max = app.limits.subscriptions_per_connection;
        let init_deadline = app.limits.connection_init;
        let principal = (app.principal)(&parts.headers);
        return upgrade
            .protocols(ALL_WEBSOCKET_PROTOCOLS)
            .max_message_size(app.limits.body_bytes)
            .on_upgrade(move |socket| async move {
                let _permit = permit;
                let mut data = async_graphql::Data::default();
                data.insert(crate::ConnectionBudget::new(max));
                data.insert(principal);
                crate::socket::serve(socket, executor, protocol, data, init_deadline).await;
            });
    }
    let query = parts.uri.query().unwrap_or("");
    let wants_graphql = wants_graphql_response(&parts.headers);
    // A browser asking for the page without a query gets the IDE.
    let wants_html = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    if query.is_empty() && wants_html {
        return ide().await.into_response();
    }
    let request: Request = match async_graphql::http::parse_query_string(query) {
        Ok(request) => request,
        Err(e) => return request_error(StatusCode::BAD_REQUEST, wants_graphql, format!("invalid request: {e}")),
    };
    if request.query.is_empty() {
        return request_error(
            StatusCode::BAD_REQUEST,
            wants_graphql,
            "the query parameter is missing".into(),
        );
    }
    // GET must not change anything: refuse mutations (GraphQL over HTTP, §GET).
    if crate::socket::operation_type(&request).is_some_and(|ty| ty != OperationType::Query) {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, HeaderValue::from_static("POST"))],
            "mutations and subscriptions are not allowed over GET: use POST (or a WebSocket)",
        )
            .into_response();
    }
    let principal = (app.principal)(&parts.headers);
    execute(&app, BatchRequest::Single(request), principal, wants_graphql).await
}
