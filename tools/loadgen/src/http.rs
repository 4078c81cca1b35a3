//! One keep-alive HTTP/1.1 client connection (hyper's low-level `client::conn`), for
//! featstore and the floor.
//!
//! The connection is driven by its own task; [`HttpConn::send`] waits for the whole
//! response body, so latency includes the transfer. A connection that failed (broken,
//! timed out mid-response) must be dropped and reopened: the caller does so.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Either, Empty, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::stats::ErrorClass;
use crate::workload::HttpRequest;

type Body = Either<Full<Bytes>, Empty<Bytes>>;

/// A failed exchange: its class and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Error class.
    pub class: ErrorClass,
    /// What happened.
    pub message: String,
    /// Whether the connection may be reused (an HTTP error answer: yes).
    pub reusable: bool,
    /// The status of an HTTP error answer.
    pub status: Option<StatusCode>,
}

/// An answered request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Status.
    pub status: StatusCode,
    /// Body.
    pub body: Bytes,
}

/// One open connection.
#[derive(Debug)]
pub struct HttpConn {
    sender: SendRequest<Body>,
    host: HeaderValue,
    /// `Bearer <token>` from [`BEARER_TOKEN_VAR`], sent with every request when set.
    authorization: Option<HeaderValue>,
}

/// The environment variable whose token every request sends (`Authorization: Bearer`).
pub const BEARER_TOKEN_VAR: &str = "LOADGEN_BEARER_TOKEN";

impl HttpConn {
    /// Connects to `addr` (TCP_NODELAY) and completes the HTTP/1.1 handshake.
    pub async fn connect(addr: SocketAddr) -> Result<HttpConn, Failure> {
        let connect_failure = |e: &dyn std::fmt::Display| Failure {
            class: ErrorClass::Connect,
            message: format!("connect {addr}: {e}"),
            reusable: false,
            status: None,
        };
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| connect_failure(&e))?;
        // Not fatal: latency would only be worse, and the exchange still works.
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| connect_failure(&e))?;
        tokio::spawn(async move {
            // The connection ends when the sender is dropped or the peer closes.
            let _ = conn.await;
        });
        let host = HeaderValue::from_str(&addr.to_string()).map_err(|e| connect_failure(&e))?;
        // A server with a token file: `LOADGEN_BEARER_TOKEN` is sent with every request.
        let authorization = match std::env::var(BEARER_TOKEN_VAR) {
            Ok(token) if !token.trim().is_empty() => Some(
                HeaderValue::from_str(&format!("Bearer {}", token.trim()))
                    .map_err(|e| connect_failure(&e))?,
            ),
            _ => None,
        };
        Ok(HttpConn {
            sender,
            host,
            authorization,
        })
    }

    /// Sends `req` and reads the whole answer. A 2xx answer is `Ok`; any other status is
    /// a reusable [`Failure`] of class 4xx/5xx; transport errors are not reusable.
    pub async fn send(&mut self, req: &HttpRequest) -> Result<Answer, Failure> {
        let protocol = |e: &dyn std::fmt::Display| Failure {
            class: ErrorClass::Protocol,
            message: e.to_string(),
            reusable: false,
            status: None,
        };
        self.sender.ready().await.map_err(|e| protocol(&e))?;
        let body = match &req.body {
            Some(bytes) => Either::Left(Full::new(bytes.clone())),
            None => Either::Right(Empty::new()),
        };
        let mut request = Request::builder()
            .method(req.method.clone())
            .uri(req.path.as_str())
            .body(body)
            .map_err(|e| protocol(&e))?;
        request.headers_mut().insert(HOST, self.host.clone());
        if let Some(value) = &self.authorization {
            request.headers_mut().insert(AUTHORIZATION, value.clone());
        }
        if req.body.is_some() {
            request
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        if let Some(accept) = req.accept {
            request
                .headers_mut()
                .insert(ACCEPT, HeaderValue::from_static(accept));
        }
        let response = self
            .sender
            .send_request(request)
            .await
            .map_err(|e| protocol(&e))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| protocol(&e))?
            .to_bytes();
        if status.is_success() {
            Ok(Answer { status, body })
        } else {
            Err(Failure {
                class: ErrorClass::of_status(status.as_u16()),
                message: format!(
                    "{} {} -> {status}: {}",
                    req.method,
                    req.path.split('?').next().unwrap_or_default(),
                    String::from_utf8_lossy(&body[..body.len().min(200)])
                ),
                reusable: true,
                status: Some(status),
            })
        }
    }
}
