//! The audit record of each admin request: dispatch makes a [`Pending`] record for
//! every route that needs the `admin` scope (reading the audit log aside), whatever
//! the outcome — refused for lack of a token, forbidden, failed or done — and appends
//! it to the store's audit log (`crate::audit`) before the answer is sent.
//!
//! A handler adds detail through the request's [`AuditNote`] (a forced activation's
//! `by` and reason). If the log cannot be written the action's answer is still sent
//! (the action happened) and the failure is logged at error level.
//!
//! Thread-safety: a `Pending` belongs to one request; its note is shared with the
//! handler through a mutex held for one assignment.

use std::sync::Arc;

use parking_lot::Mutex;

use super::access::{Caller, required_scope};
use super::handlers::{AppState, HttpResponse};
use super::router::Route;
use super::url::UrlError;
use crate::audit::AuditEntry;
use crate::auth::Scope;

/// Detail a handler adds to its request's audit record.
#[derive(Debug, Clone, Default)]
pub struct AuditNote(Arc<Mutex<String>>);

impl AuditNote {
    /// Sets the record's detail.
    pub fn set(&self, detail: impl Into<String>) {
        *self.0.lock() = detail.into();
    }
}

/// The action name of an audited route.
pub fn action(route: Route) -> Option<&'static str> {
    if route == Route::AuditLog || required_scope(route) != Some(Scope::Admin) {
        return None;
    }
    Some(match route {
        Route::ApplyDefinitions => "apply_definitions",
        Route::Load => "load",
        Route::Activate => "activate",
        Route::Rollback => "rollback",
        Route::DropOldVersions => "drop_old_versions",
        Route::ApplyRegistry => "apply_registry",
        Route::DeleteDefinition => "delete_definition",
        Route::RetireService => "retire_service",
        Route::ServingLogExport => "serving_log_export",
        Route::HistoryExports => "export_history",
        Route::DeleteEntity => "delete_entity",
        _ => route.template(),
    })
}

/// An audit record waiting for its request's outcome.
#[derive(Debug)]
pub struct Pending {
    action: &'static str,
    target: String,
    principal: String,
    team: Option<String>,
    request_id: String,
    /// Shared with the handler.
    pub note: AuditNote,
}

impl Pending {
    /// The pending record of a request for `route`, when the route is audited.
    /// `caller` is `None` when the request was not authenticated.
    pub fn of(
        route: Route,
        params: &Result<Vec<String>, UrlError>,
        caller: Option<&Caller>,
        request_id: String,
    ) -> Option<Pending> {
        let action = action(route)?;
        let names = route
            .template()
            .split('/')
            .filter(|s| s.starts_with('{'))
            .map(|s| s.trim_matches(|c| c == '{' || c == '}'));
        let target = match params {
            Ok(values) => names
                .zip(values)
                .map(|(n, v)| format!("{n}={v}"))
                .collect::<Vec<_>>()
                .join(" "),
            Err(_) => "(bad path)".to_owned(),
        };
        let (principal, team) = match caller {
            Some(c) => (c.id().to_owned(), c.team().map(str::to_owned)),
            None => ("unauthenticated".to_owned(), None),
        };
        Some(Pending {
            action,
            target,
            principal,
            team,
            request_id,
            note: AuditNote::default(),
        })
    }

    /// Appends the record of `response` (durably) and hands the response back.
    pub async fn record(self, state: &AppState, response: HttpResponse) -> HttpResponse {
        let status = response.status();
        let outcome = if status.is_success() {
            "ok"
        } else if status.is_client_error() {
            "refused"
        } else {
            "failed"
        };
        let detail = std::mem::take(&mut *self.note.0.lock());
        let entry = AuditEntry {
            principal: self.principal,
            team: self.team,
            request_id: Some(self.request_id),
            action: self.action.to_owned(),
            target: self.target,
            outcome: outcome.to_owned(),
            status: Some(status.as_u16()),
            detail,
        };
        let log = state.audit.clone();
        match tokio::task::spawn_blocking(move || log.append(entry)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "could not write the audit record"),
            Err(e) => tracing::error!(error = %e, "audit record task failed"),
        }
        response
    }
}
