//! Which calls may wait in the buffer, under what key, and what a caller whose call waits is
//! told (DESIGN.md §3). Decided here, from the catalogue's own facts (the interface's kind, its
//! idempotency fields, its `queued_code`) and `[[cloud.route]] delivery`; the listeners ask.

use crate::catalog::{Entry, Kind};
use crate::config::Delivery;
use crate::outcome::Code;

/// One buffer queue (one FIFO). Records store it as text; this type is the one place that
/// spells that text, so nothing else builds or takes apart a prefixed string.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Route(String);

impl Route {
    /// Stored routes of HIS → cloud calls start with this; the rest is the catalogue path.
    pub const CLOUD_PREFIX: &'static str = "cloud:";

    /// The queue of HIS → cloud calls to the catalogue path `path`.
    pub fn cloud(path: &str) -> Route {
        Route(format!("{}{path}", Route::CLOUD_PREFIX))
    }

    /// A route as a record stores it.
    pub fn from_stored(stored: &str) -> Route {
        Route(stored.to_string())
    }

    /// The text records store.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The catalogue path, for a route whose calls go to the cloud; `None` for a route this
    /// version does not know how to deliver (such records go to the dead letters).
    pub fn cloud_path(&self) -> Option<&str> {
        self.0.strip_prefix(Route::CLOUD_PREFIX)
    }

    /// The name shown to an operator: the catalogue path for a cloud route.
    pub fn display_name(stored: &str) -> &str {
        stored.strip_prefix(Route::CLOUD_PREFIX).unwrap_or(stored)
    }
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether a call may wait in the buffer when the cloud cannot take it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wait {
    /// It may not: a query, a file, a route set to `direct`, or a business call without its
    /// idempotency key (it could not be deduplicated). With the link down it fails at once.
    No,
    /// It may, deduplicated by `key` when it has one (`refundNo=R1`).
    Yes { key: Option<String> },
}

/// How a call to the interface `entry` may wait; `key` is its business key
/// (`idempotency_key`), `delivery` the route's `[[cloud.route]] delivery`, if set.
pub fn wait(entry: &Entry, delivery: Option<Delivery>, key: Option<&str>) -> Wait {
    let key = key.map(str::to_string);
    match (delivery, entry.kind) {
        (Some(Delivery::Direct), _) | (_, Kind::Query | Kind::File) => Wait::No,
        (None | Some(Delivery::Buffer), Kind::Notify) => Wait::Yes { key: None },
        (None, Kind::Business) => match key {
            Some(key) => Wait::Yes { key: Some(key) },
            None => Wait::No,
        },
        // Set to buffer by the operator: waits even without a key (not deduplicated then).
        (Some(Delivery::Buffer), Kind::Business) => Wait::Yes { key },
    }
}

/// The code a caller gets when its call waits: 10001 for a notify call (delivery is the box's
/// job now), the catalogue's `queued_code` for the refunds (10002, "state unknown, retry with
/// the same number"), 40004 for any other business call.
pub fn queued_code(entry: &Entry) -> Code {
    match (entry.kind, entry.queued_code.as_deref()) {
        (Kind::Notify, _) => Code::Success,
        (_, Some("10002")) => Code::StateUnknown,
        _ => Code::Accepted,
    }
}

/// The business key of a call (`refundNo=R1`), from the catalogue's idempotency fields; `None`
/// when the body lacks one of them.
pub fn idempotency_key(entry: &Entry, body: &[u8]) -> Option<String> {
    if entry.idempotency_key.is_empty() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let mut parts = Vec::new();
    for field in &entry.idempotency_key {
        let mut cur = &v;
        for seg in field.split('.') {
            cur = match cur {
                serde_json::Value::Array(a) => a.first()?.get(seg)?,
                other => other.get(seg)?,
            };
        }
        let text = match cur {
            serde_json::Value::String(s) if !s.trim().is_empty() => s.trim().to_string(),
            serde_json::Value::Number(n) => n.to_string(),
            _ => return None,
        };
        parts.push(format!("{field}={text}"));
    }
    Some(parts.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;

    fn entry(path: &str) -> &'static Entry {
        match Catalog::get().by_request_path(path) {
            Some(e) => e,
            None => panic!("{path} is not in the catalogue"),
        }
    }

    #[test]
    fn routes_round_trip_and_only_cloud_routes_have_a_path() {
        let r = Route::cloud("prefront/sendTipMessage/payment");
        assert_eq!(r.as_str(), "cloud:prefront/sendTipMessage/payment");
        assert_eq!(
            Route::from_stored(r.as_str()).cloud_path(),
            Some("prefront/sendTipMessage/payment")
        );
        assert_eq!(Route::from_stored("his:x").cloud_path(), None);
        assert_eq!(
            Route::display_name(r.as_str()),
            "prefront/sendTipMessage/payment"
        );
    }

    #[test]
    fn what_may_wait_follows_the_catalogue_and_the_route_setting() {
        let notify = Catalog::get()
            .entries()
            .iter()
            .find(|e| e.kind == Kind::Notify && e.path.is_some())
            .map(|e| e.path.clone().unwrap_or_default());
        let notify = entry(&format!("/{}", notify.unwrap_or_default()));
        assert_eq!(wait(notify, None, None), Wait::Yes { key: None });
        assert_eq!(wait(notify, Some(Delivery::Direct), None), Wait::No);

        let refund = Catalog::get()
            .entries()
            .iter()
            .find(|e| e.queued_code.as_deref() == Some("10002") && e.path.is_some())
            .map(|e| format!("/{}", e.path.clone().unwrap_or_default()));
        let refund = entry(&refund.unwrap_or_default());
        assert_eq!(queued_code(refund), Code::StateUnknown);
        let field = refund.idempotency_key.first().cloned().unwrap_or_default();
        let body = serde_json::json!({ field.clone(): "RF-1" }).to_string();
        let key = idempotency_key(refund, body.as_bytes());
        assert_eq!(key, Some(format!("{field}=RF-1")));
        assert_eq!(
            wait(refund, None, key.as_deref()),
            Wait::Yes {
                key: Some(format!("{field}=RF-1"))
            }
        );
        // Without its key a business call cannot be deduplicated, so it does not wait…
        assert_eq!(idempotency_key(refund, b"{}"), None);
        assert_eq!(wait(refund, None, None), Wait::No);
        // …unless the operator set the route to buffer.
        assert_eq!(
            wait(refund, Some(Delivery::Buffer), None),
            Wait::Yes { key: None }
        );
        assert_eq!(queued_code(notify), Code::Success);
    }
}
