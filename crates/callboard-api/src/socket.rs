//! GraphQL over WebSocket (`graphql-transport-ws`, and the older protocol) with the limits HTTP
//! has: queries and mutations sent over a socket get the request timeout, a connection that
//! never says `connection_init` is closed, and a server holds a bounded number of sockets.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_graphql::parser::types::OperationType;
use async_graphql::{Data, Executor, Request, Response, ServerError};
use futures::StreamExt;
use futures::stream::BoxStream;

use callboard_catalog::ErrorCode;

use crate::CatalogSchema;

/// The operation a request selects, if its query parses and names one.
pub(crate) fn operation_type(request: &Request) -> Option<OperationType> {
    let document = async_graphql::parser::parse_query(&request.query).ok()?;
    document
        .operations
        .iter()
        .find(|(name, _)| match &request.operation_name {
            Some(wanted) => name.is_some_and(|n| n.as_str() == wanted),
            None => true,
        })
        .map(|(_, operation)| operation.node.ty)
}

/// The answer to a request that ran out of time.
pub(crate) fn timed_out(timeout: Duration) -> Response {
    let mut error = ServerError::new(
        format!("the request took longer than {} s", timeout.as_secs_f64()),
        None,
    );
    error
        .extensions
        .get_or_insert_with(Default::default)
        .set("code", ErrorCode::Timeout.as_str());
    Response::from_errors(vec![error])
}

/// The schema, with the request timeout applied to every query and mutation — subscriptions
/// are meant to last, and are bounded by the connection's budget instead. A timed-out
/// operation's work is dropped, not left running.
#[derive(Clone)]
pub(crate) struct Timed {
    pub schema: CatalogSchema,
    pub timeout: Duration,
}

impl Executor for Timed {
    async fn execute(&self, request: Request) -> Response {
        match tokio::time::timeout(self.timeout, self.schema.execute(request)).await {
            Ok(response) => response,
            Err(_) => timed_out(self.timeout),
        }
    }

    fn execute_stream(&self, request: Request, session_data: Option<Arc<Data>>) -> BoxStream<'static, Response> {
        if operation_type(&request) == Some(OperationType::Subscription) {
            return Executor::execute_stream(&self.schema, request, session_data);
        }
        let (schema, timeout) = (self.schema.clone(), self.timeout);
        futures::stream::once(async move {
            let mut answers = Executor::execute_stream(&schema, request, session_data);
            match tokio::time::timeout(timeout, answers.next()).await {
                Ok(Some(response)) => response,
                Ok(None) => Response::default(),
                Err(_) => {
                    tracing::warn!(?timeout, "an operation over a WebSocket took too long");
                    timed_out(timeout)
                }
            }
        })
        .boxed()
    }
}

/// Serves one upgraded socket: closes it when `connection_init` has not come within
/// `init_deadline`.
pub(crate) async fn serve(
    socket: axum::extract::ws::WebSocket,
    executor: Timed,
    protocol: async_graphql_axum::GraphQLProtocol,
    data: Data,
    init_deadline: Duration,
) {
    let initialised = Arc::new(AtomicBool::new(false));
    let flag = initialised.clone();
    let serving = async_graphql_axum::GraphQLWebSocket::new(socket, executor, protocol)
        .with_data(data)
        .on_connection_init(move |_| {
            flag.store(true, Ordering::SeqCst);
            futures::future::ready(Ok(Data::default()))
        })
        .serve();
    let deadline = async {
        tokio::time::sleep(init_deadline).await;
        if initialised.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        () = serving => {}
        () = deadline => tracing::info!(?init_deadline, "closed a WebSocket that sent no connection_init in time"),
    }
}
