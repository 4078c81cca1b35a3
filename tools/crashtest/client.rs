//! A blocking HTTP client for one server life: every answer is a status and a body, and
//! a request the server never answered (killed, refused, timed out) is an error string.

use std::time::Duration;

/// An answered request.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Body as text.
    pub body: String,
}

impl Reply {
    /// The body as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The `error` message of a JSON error body, else the body.
    pub fn error(&self) -> String {
        match self.json().get("error").and_then(|e| e.as_str()) {
            Some(message) => message.to_owned(),
            None => self.body.clone(),
        }
    }
}

/// A client of `http://127.0.0.1:PORT`.
#[derive(Clone)]
pub struct Client {
    base: String,
    agent: ureq::Agent,
}

impl Client {
    /// A client of `base` (`http://127.0.0.1:PORT`) whose requests give up after
    /// `timeout`.
    pub fn new(base: &str, timeout: Duration) -> Client {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .build()
            .into();
        Client {
            base: base.to_owned(),
            agent,
        }
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Result<Reply, String> {
        let response = self
            .agent
            .get(format!("{}{path}", self.base))
            .call()
            .map_err(|e| e.to_string())?;
        Self::reply(response)
    }

    /// `POST path` with a JSON body.
    pub fn post(&self, path: &str, body: &str) -> Result<Reply, String> {
        let response = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .send(body.as_bytes())
            .map_err(|e| e.to_string())?;
        Self::reply(response)
    }

    fn reply(mut response: ureq::http::Response<ureq::Body>) -> Result<Reply, String> {
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .map_err(|e| e.to_string())?;
        Ok(Reply { status, body })
    }
}
