//! What only the page shows, made for each request of `/status`: the search box's results (the
//! message trail), the dead letters with their retry and drop buttons, and the notice after a
//! button was pressed. `/metrics` reads none of it.

use std::path::Path;

use super::zone::{local_zone, unix_s};
use super::{gather, StatusSnapshot};
use crate::buffer::operator;
use crate::listener::State;
use crate::trail::query::{self, Entry, Filter};

/// Trail entries one search shows.
pub const SEARCH_LIMIT: usize = 20;
/// Dead letters listed per route (the rest are counted; `prefront queue list --dead` has all).
pub const DEAD_PER_ROUTE: usize = 20;
/// Longest search text taken.
pub const MAX_Q: usize = 256;
/// Longest query string of `/status` read.
const MAX_QUERY: usize = 2048;

/// What only the page shows.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PageView {
    /// The search box's text and what it found; `None` when nothing was searched.
    pub search: Option<Search>,
    /// The dead letters, at most `DEAD_PER_ROUTE` of each route, routes in the order of
    /// `buffer_routes`, oldest first within a route.
    pub dead_letters: Vec<DeadLetterRow>,
    /// Why the dead letters could not be listed.
    pub dead_letters_error: Option<String>,
    /// What the last button did (`/status?done=…`).
    pub notice: Option<Notice>,
    /// The key every form post must carry (`None`: this process could not make one, and the
    /// buttons are off).
    pub form_key: Option<String>,
    /// `[admin] token_file` is set: the forms ask for the token.
    pub token_required: bool,
}

impl PageView {
    /// The page reloads itself every 5 s unless it shows something to read or to fill in: search
    /// results, a notice, or dead letters whose buttons need the token typed.
    pub fn refreshes(&self) -> bool {
        self.search.is_none()
            && self.notice.is_none()
            && (!self.token_required || self.dead_letters.is_empty())
    }
}

/// A search over the trail: by request id, else by business key.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Search {
    /// The text searched for, as typed (trimmed).
    pub q: String,
    /// `request_id` or `key`: what matched; `None` when nothing did.
    pub by: Option<&'static str>,
    pub entries: Vec<SearchRow>,
    /// Why nothing could be searched (the trail is off, the text is not searchable).
    pub problem: Option<String>,
}

/// One trail entry with its time for people.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchRow {
    pub entry: Entry,
    /// Unix milliseconds of `entry.time`.
    pub at_ms: u64,
    pub utc_offset_s: i32,
}

/// One dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterRow {
    /// The stored route (`cloud:prefront/…`).
    pub route: String,
    /// The buffer's record id (what the API's `/api/queue/messages/ID` takes).
    pub id: u64,
    pub request_id: String,
    /// Seconds since the call arrived.
    pub age_s: u64,
    pub attempts: u32,
    /// Why it is dead (never patient data).
    pub reason: String,
}

/// What the page says after a button (`/status?done=…`). Fixed texts only: a link to the page
/// cannot put words of its own on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    Retried(u64),
    Dropped(u64),
    NotFound(u64),
    /// Retry of a message that is queued, not dead.
    NotDead(u64),
    /// The store refused (disk trouble); nothing changed.
    Failed(u64),
    /// The token typed was not `[admin] token_file`'s; nothing changed.
    WrongToken,
}

impl Notice {
    /// The `done` parameter.
    pub fn param(self) -> String {
        match self {
            Notice::Retried(id) => format!("retried-{id}"),
            Notice::Dropped(id) => format!("dropped-{id}"),
            Notice::NotFound(id) => format!("missing-{id}"),
            Notice::NotDead(id) => format!("notdead-{id}"),
            Notice::Failed(id) => format!("failed-{id}"),
            Notice::WrongToken => "token".to_string(),
        }
    }

    pub fn parse(text: &str) -> Option<Notice> {
        if text == "token" {
            return Some(Notice::WrongToken);
        }
        let (what, id) = text.split_once('-')?;
        let id: u64 = id.parse().ok()?;
        Some(match what {
            "retried" => Notice::Retried(id),
            "dropped" => Notice::Dropped(id),
            "missing" => Notice::NotFound(id),
            "notdead" => Notice::NotDead(id),
            "failed" => Notice::Failed(id),
            _ => return None,
        })
    }

    /// Whether it reports something done (else nothing changed).
    pub fn is_success(self) -> bool {
        matches!(self, Notice::Retried(_) | Notice::Dropped(_))
    }
}

/// `q` and `done` of the page's query string; anything else is ignored.
fn page_params(query: Option<&str>) -> (Option<String>, Option<Notice>) {
    let query = query.unwrap_or("");
    if query.len() > MAX_QUERY {
        return (None, None);
    }
    let mut q = None;
    let mut done = None;
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match k.as_ref() {
            "q" if q.is_none() => q = Some(v.trim().to_string()),
            "done" if done.is_none() => done = Notice::parse(&v),
            _ => {}
        }
    }
    (q.filter(|q| !q.is_empty()), done)
}

/// The snapshot `/status` shows for `query` (its query string). Blocks on the buffer store and
/// the trail's files: call it off the async runtime.
pub fn gather_page(state: &State, query: Option<&str>) -> StatusSnapshot {
    let mut s = gather(state);
    let (q, notice) = page_params(query);
    let (dead_letters, dead_letters_error) = dead_letters(state, &s);
    s.page = PageView {
        search: q.map(|q| {
            if state.config.trail.enabled {
                search(&state.config.trail.path, &q)
            } else {
                Search {
                    q,
                    problem: Some(
                        "the trail is off ([trail] enabled = false): nothing to search".into(),
                    ),
                    ..Search::default()
                }
            }
        }),
        dead_letters,
        dead_letters_error,
        notice,
        form_key: crate::listener::admin::form::form_key().map(str::to_string),
        token_required: state
            .config
            .admin
            .as_ref()
            .is_some_and(|a| a.token.is_some()),
    };
    s
}

fn dead_letters(state: &State, s: &StatusSnapshot) -> (Vec<DeadLetterRow>, Option<String>) {
    let now = s.now_ms;
    let mut rows = Vec::new();
    for r in s.buffer_routes.iter().filter(|r| r.dead > 0) {
        match operator::messages(
            state.outbox.store(),
            true,
            Some(&r.route),
            None,
            DEAD_PER_ROUTE,
        ) {
            Ok(v) => rows.extend(v.messages.into_iter().map(|m| DeadLetterRow {
                age_s: now.saturating_sub(m.queued_at_ms) / 1000,
                reason: m.dead_reason.or(m.last_error).unwrap_or_default(),
                route: m.route,
                id: m.id,
                request_id: m.request_id,
                attempts: m.attempts,
            })),
            Err(e) => return (rows, Some(e.to_string())),
        }
    }
    (rows, None)
}

/// The trail entries for `q`: by request id, and if none, by business key (as the catalogue
/// spells it, `refundNo=RF-1`); newest first, at most `SEARCH_LIMIT`.
pub fn search(dir: &Path, q: &str) -> Search {
    let q = q.trim().to_string();
    if q.len() > MAX_Q || q.chars().any(char::is_control) {
        return Search {
            q: q.chars().take(MAX_Q).filter(|c| !c.is_control()).collect(),
            problem: Some(format!(
                "a request id or business key has at most {MAX_Q} characters and no control characters"
            )),
            ..Search::default()
        };
    }
    let zone = local_zone();
    let rows = |entries: Vec<Entry>| -> Vec<SearchRow> {
        entries
            .into_iter()
            .map(|entry| {
                let at_ms = entry
                    .time
                    .parse::<jiff::Timestamp>()
                    .ok()
                    .and_then(|t| u64::try_from(t.as_millisecond()).ok())
                    .unwrap_or(0);
                SearchRow {
                    utc_offset_s: zone.offset_at(unix_s(at_ms)),
                    at_ms,
                    entry,
                }
            })
            .collect()
    };
    for (by, filter) in [
        (
            "request_id",
            Filter {
                request_id: Some(q.clone()),
                limit: SEARCH_LIMIT,
                ..Filter::default()
            },
        ),
        (
            "key",
            Filter {
                key: Some(q.clone()),
                limit: SEARCH_LIMIT,
                ..Filter::default()
            },
        ),
    ] {
        let found = query::query(dir, &filter);
        if !found.is_empty() {
            return Search {
                q,
                by: Some(by),
                entries: rows(found),
                problem: None,
            };
        }
    }
    Search {
        q,
        ..Search::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trail::Line;

    #[test]
    fn notices_are_fixed_texts_with_an_id() {
        for n in [
            Notice::Retried(12),
            Notice::Dropped(1),
            Notice::NotFound(7),
            Notice::NotDead(3),
            Notice::Failed(4),
            Notice::WrongToken,
        ] {
            assert_eq!(Notice::parse(&n.param()), Some(n));
        }
        for bad in ["", "retried", "retried-", "retried-x", "hello-1", "token-1"] {
            assert_eq!(Notice::parse(bad), None, "{bad}");
        }
        assert_eq!(
            page_params(Some("q=%20pf-1%20&done=dropped-3&q=other")),
            (Some("pf-1".into()), Some(Notice::Dropped(3)))
        );
        assert_eq!(page_params(Some("q=&done=<b>")), (None, None));
    }

    #[test]
    fn the_page_refreshes_only_with_nothing_to_read_or_fill_in() {
        let row = DeadLetterRow {
            route: "cloud:prefront/x".into(),
            id: 1,
            request_id: "r".into(),
            age_s: 1,
            attempts: 1,
            reason: "x".into(),
        };
        assert!(PageView::default().refreshes());
        let buttons = PageView {
            dead_letters: vec![row],
            ..PageView::default()
        };
        assert!(buttons.refreshes(), "a click is quick; no token to type");
        assert!(!PageView {
            token_required: true,
            ..buttons
        }
        .refreshes());
        assert!(!PageView {
            search: Some(Search::default()),
            ..PageView::default()
        }
        .refreshes());
        assert!(!PageView {
            notice: Some(Notice::WrongToken),
            ..PageView::default()
        }
        .refreshes());
    }

    /// A request id is looked up first; a business key when no request id matches.
    #[test]
    fn a_search_finds_a_request_id_else_a_business_key() {
        let dir = std::env::temp_dir().join(format!("prefront-page-search-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_default();
        std::fs::write(dir.join("trail.key"), [9u8; 32]).unwrap_or_default();
        let kh = crate::trail::key_hash_in(&dir, "refundNo=RF-1");
        let t0 = 1_765_000_000_000u64;
        let lines = [
            Line {
                t: t0,
                ev: "call".into(),
                rid: "pf-a".into(),
                route: "prefront/refund".into(),
                out: "queued".into(),
                st: 200,
                key: Some("refundNo=RF-1".into()),
                kh: kh.clone(),
                id: Some(4),
                ..Line::default()
            },
            Line {
                t: t0 + 1,
                ev: "delivered".into(),
                rid: "pf-a".into(),
                route: "prefront/refund".into(),
                code: Some("10001".into()),
                kh,
                ..Line::default()
            },
        ];
        let text: String = lines
            .iter()
            .map(|l| serde_json::to_string(l).unwrap_or_default() + "\n")
            .collect();
        std::fs::write(dir.join(format!("trail-{t0:020}.jsonl")), text).unwrap_or_default();

        let by_id = search(&dir, " pf-a ");
        assert_eq!(by_id.by, Some("request_id"), "{by_id:#?}");
        assert_eq!(by_id.q, "pf-a");
        assert_eq!(by_id.entries.len(), 1);
        assert_eq!(by_id.entries[0].at_ms, t0);
        assert_eq!(by_id.entries[0].entry.outcome, "delivered");
        let by_key = search(&dir, "refundNo=RF-1");
        assert_eq!(by_key.by, Some("key"), "{by_key:#?}");
        assert_eq!(by_key.entries[0].entry.request_id, "pf-a");
        let none = search(&dir, "pf-b");
        assert_eq!((none.by, none.entries.len()), (None, 0));
        assert!(search(&dir, "a\u{7}b").problem.is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
