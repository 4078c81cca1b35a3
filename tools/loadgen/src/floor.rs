//! The floor: a do-nothing HTTP/1.1 endpoint (hyper, keep-alive, TCP_NODELAY, the same
//! server settings as featstore's) that reads each request and answers 200 with the
//! same pre-built body of a fixed size. Driving it with featstore's requests and
//! featstore's response size shows the HTTP limit of the machine: what featstore
//! would reach if computing the answer were free.
//!
//! Thread-safety: the body is an immutable `Bytes` shared by every connection task.

use std::convert::Infallible;
use std::future::Future;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Largest body the floor serves.
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// A body of exactly `n` bytes that is valid JSON when `n >= 10`
/// (`{"pad":"xxx"}`), else `n` spaces.
pub fn body_of(n: usize) -> Bytes {
    const OPEN: &[u8] = b"{\"pad\":\"";
    const CLOSE: &[u8] = b"\"}";
    if n < OPEN.len() + CLOSE.len() {
        return Bytes::from(vec![b' '; n]);
    }
    let mut body = Vec::with_capacity(n);
    body.extend_from_slice(OPEN);
    body.resize(n - CLOSE.len(), b'x');
    body.extend_from_slice(CLOSE);
    Bytes::from(body)
}

/// Serves `body` to every request on `listener` until `shutdown` completes. Request
/// bodies are read and discarded.
pub async fn serve(
    listener: TcpListener,
    body: Bytes,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        eprintln!("floor: accept failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let body = body.clone();
                connections.spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let body = body.clone();
                        async move {
                            // Read the request like a real server would; its content is ignored.
                            let _ = req.into_body().collect().await;
                            let mut resp = Response::new(Full::new(body));
                            resp.headers_mut().insert(
                                CONTENT_TYPE,
                                HeaderValue::from_static("application/json"),
                            );
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        }
        while connections.try_join_next().is_some() {}
    }
    connections.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_have_the_exact_size() {
        for n in [0, 1, 9, 10, 11, 12, 100, 4321] {
            let body = body_of(n);
            assert_eq!(body.len(), n);
            if n >= 10 {
                let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
                assert!(v["pad"].is_string());
            }
        }
    }
}
