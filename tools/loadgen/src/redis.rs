//! One Redis connection: writes a pipeline of commands and reads their replies.
//!
//! Replies are measured with [`resp::scan`] (no allocation). A connection whose
//! exchange failed midway (timeout, broken pipe, malformed reply) holds an unknown
//! number of unread replies and must be dropped: the caller does so.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::http::Failure;
use crate::resp::{self, Reply};
use crate::stats::ErrorClass;

/// Read buffer growth step.
const READ_CHUNK: usize = 64 * 1024;

/// One open connection.
#[derive(Debug)]
pub struct RedisConn {
    stream: TcpStream,
    buf: Vec<u8>,
}

fn failure(class: ErrorClass, message: String) -> Failure {
    Failure {
        class,
        message,
        reusable: false,
        status: None,
    }
}

impl RedisConn {
    /// Connects to `addr` (TCP_NODELAY).
    pub async fn connect(addr: SocketAddr) -> Result<RedisConn, Failure> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| failure(ErrorClass::Connect, format!("connect {addr}: {e}")))?;
        let _ = stream.set_nodelay(true);
        Ok(RedisConn {
            stream,
            buf: Vec::with_capacity(READ_CHUNK),
        })
    }

    /// Sends `pipeline` (`commands` encoded commands) and reads as many replies.
    /// Returns the reply bytes; an error reply among them is a reusable
    /// [`ErrorClass::Protocol`] failure (the replies were all read).
    pub async fn exchange(&mut self, pipeline: &[u8], commands: usize) -> Result<usize, Failure> {
        let io = |e: std::io::Error| failure(ErrorClass::Protocol, format!("redis I/O: {e}"));
        self.stream.write_all(pipeline).await.map_err(io)?;
        self.buf.clear();
        let mut parsed = 0;
        let mut at = 0;
        let mut error = false;
        while parsed < commands {
            match resp::scan(&self.buf[at..]) {
                Ok(Some(s)) => {
                    at += s.len;
                    parsed += 1;
                    error |= s.error;
                    continue;
                }
                Ok(None) => {}
                Err(e) => return Err(failure(ErrorClass::Protocol, e.to_string())),
            }
            let len = self.buf.len();
            self.buf.resize(len + READ_CHUNK, 0);
            let n = self.stream.read(&mut self.buf[len..]).await.map_err(io)?;
            self.buf.truncate(len + n);
            if n == 0 {
                return Err(failure(
                    ErrorClass::Protocol,
                    "redis closed the connection".to_owned(),
                ));
            }
        }
        if at != self.buf.len() {
            return Err(failure(
                ErrorClass::Protocol,
                format!("{} unexpected bytes after the replies", self.buf.len() - at),
            ));
        }
        if error {
            let first = self.first_error(at);
            return Err(Failure {
                class: ErrorClass::Protocol,
                message: format!("redis error reply: {first}"),
                reusable: true,
                status: None,
            });
        }
        Ok(at)
    }

    /// The text of the first error reply in the read buffer (for messages).
    fn first_error(&self, end: usize) -> String {
        let mut at = 0;
        while at < end {
            match resp::decode(&self.buf[at..end]) {
                Ok(Some((Reply::Error(text), _))) => return text,
                Ok(Some((Reply::Array(Some(items)), used))) => {
                    if let Some(Reply::Error(text)) =
                        items.into_iter().find(|r| matches!(r, Reply::Error(_)))
                    {
                        return text;
                    }
                    at += used;
                }
                Ok(Some((_, used))) => at += used,
                _ => break,
            }
        }
        "unknown".to_owned()
    }
}
