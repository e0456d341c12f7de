//! How the buffer's values are written: every value the store keeps is one *frame* that carries
//! its own magic, kind, length and CRC-32, so that
//! - a damaged value is recognised as damaged (never read as a different record), and
//! - a store sled can no longer open can still be read as plain bytes: a scan for the magic finds
//!   every intact frame in the log and blob files (`salvage.rs`).
//!
//! `[magic 4][kind 1][payload length u32 LE][crc32 u32 LE][payload]`; the CRC covers kind, length
//! and payload. The magic starts with 0xF0 0x70, which is not UTF-8, so a JSON body held in a
//! record cannot contain it.

use serde::{Deserialize, Serialize};

use super::{Record, RecordId};

pub const MAGIC: [u8; 4] = [0xF0, b'p', b'f', 0x02];
pub const HEADER_LEN: usize = 13;
/// No frame is larger: a length above it in a header found by a scan is damage.
pub const MAX_FRAME: usize = 256 << 20;

/// What a frame holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A buffered call, queued or dead: `[meta length u32 LE][meta JSON][body]`.
    Record = 1,
    /// The store's running state ([`State`]), rewritten by every change of the record set.
    State = 2,
    /// A route's delivery mark ([`Mark`]): every record of the route up to `upto` was delivered.
    Mark = 3,
    /// A record that ended without delivery (dropped, retried under a new id, expired): [`Tomb`].
    Tomb = 4,
    /// A delivered business call's answer in the result cache: `[meta length][ResultMeta][answer]`.
    Result = 5,
    /// The store's identity ([`StoreIdent`]).
    Ident = 6,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Record,
            2 => Kind::State,
            3 => Kind::Mark,
            4 => Kind::Tomb,
            5 => Kind::Result,
            6 => Kind::Ident,
            _ => return None,
        })
    }
}

fn crc(kind: u8, len: [u8; 4], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&[kind]);
    h.update(&len);
    h.update(payload);
    h.finalize()
}

/// One frame around `payload`.
pub fn frame(kind: Kind, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    let len = (payload.len() as u32).to_le_bytes();
    out.extend_from_slice(&MAGIC);
    out.push(kind as u8);
    out.extend_from_slice(&len);
    out.extend_from_slice(&crc(kind as u8, len, payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Why a value could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undecodable(pub String);

impl std::fmt::Display for Undecodable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The header of a frame at the start of `bytes`: its kind and payload length. Checks the magic
/// and the length bound, not the CRC (the payload may not be at hand yet).
pub fn header(bytes: &[u8]) -> Option<(u8, usize)> {
    if bytes.len() < HEADER_LEN || bytes[..4] != MAGIC {
        return None;
    }
    let len = u32::from_le_bytes(bytes[5..9].try_into().ok()?) as usize;
    (len <= MAX_FRAME).then_some((bytes[4], len))
}

/// A whole frame: its kind and payload, if the CRC holds.
pub fn unframe(bytes: &[u8]) -> Result<(Kind, &[u8]), Undecodable> {
    let (kind, len) = header(bytes).ok_or_else(|| Undecodable("no frame header".into()))?;
    let payload = bytes
        .get(HEADER_LEN..HEADER_LEN + len)
        .ok_or_else(|| Undecodable("truncated frame".into()))?;
    let stored = u32::from_le_bytes(
        bytes[9..13]
            .try_into()
            .map_err(|_| Undecodable("truncated frame".into()))?,
    );
    let len_bytes: [u8; 4] = bytes[5..9]
        .try_into()
        .map_err(|_| Undecodable("truncated frame".into()))?;
    if crc(kind, len_bytes, payload) != stored {
        return Err(Undecodable("checksum mismatch".into()));
    }
    let kind = Kind::from_u8(kind).ok_or_else(|| Undecodable(format!("unknown kind {kind}")))?;
    Ok((kind, payload))
}

/// Record metadata, stored as JSON before the raw body.
#[derive(Serialize, Deserialize)]
struct Meta {
    id: RecordId,
    route: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    request_id: String,
    enqueued_at_ms: u64,
    attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dead_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dead_at_ms: Option<u64>,
    /// The id the upstream sees, when it is not this store's (a salvaged record keeps its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message_id: Option<String>,
}

/// A record as a `Record` frame. `own_store` is this store's id: a record whose message id is
/// the default one for it (`<store>-<id>`) does not spell it out.
pub fn encode_record(record: &Record, dead: Option<(&str, u64)>, own_store: &str) -> Vec<u8> {
    let default_id = message_id(own_store, record.id);
    let meta = Meta {
        id: record.id,
        route: record.route.clone(),
        key: record.key.clone(),
        request_id: record.request_id.clone(),
        enqueued_at_ms: record.enqueued_at_ms,
        attempts: record.attempts,
        last_error: record.last_error.clone(),
        dead_reason: dead.map(|(r, _)| r.to_string()),
        dead_at_ms: dead.map(|(_, at)| at),
        message_id: (record.message_id != default_id).then(|| record.message_id.clone()),
    };
    // Serialising a struct of strings and integers cannot fail.
    let meta = serde_json::to_vec(&meta).unwrap_or_default();
    let mut payload = Vec::with_capacity(4 + meta.len() + record.body.len());
    payload.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    payload.extend_from_slice(&meta);
    payload.extend_from_slice(&record.body);
    frame(Kind::Record, &payload)
}

/// A decoded record and, for a dead one, its reason and time.
pub type Decoded = (Record, Option<(String, u64)>);

/// Reads a stored record: a `Record` frame, or the first release's unframed value
/// (`[1][meta length u32 LE][meta JSON][body]`, no checksum), which an upgraded box still holds.
pub fn decode_record(value: &[u8], own_store: &str) -> Result<Decoded, Undecodable> {
    if value.starts_with(&MAGIC) {
        match unframe(value)? {
            (Kind::Record, payload) => record_payload(payload, own_store),
            (other, _) => Err(Undecodable(format!("a {other:?} frame where a record was"))),
        }
    } else if value.first() == Some(&1) {
        record_payload(&value[1..], own_store)
    } else {
        Err(Undecodable("unknown record format".into()))
    }
}

/// The record inside a `Record` frame's payload.
pub fn record_payload(payload: &[u8], own_store: &str) -> Result<Decoded, Undecodable> {
    let (meta, body) = split_meta(payload)?;
    let meta: Meta =
        serde_json::from_slice(meta).map_err(|e| Undecodable(format!("bad metadata: {e}")))?;
    let dead = match (meta.dead_reason, meta.dead_at_ms) {
        (Some(r), Some(at)) => Some((r, at)),
        _ => None,
    };
    Ok((
        Record {
            id: meta.id,
            message_id: meta
                .message_id
                .unwrap_or_else(|| message_id(own_store, meta.id)),
            route: meta.route,
            key: meta.key,
            body: body.to_vec(),
            request_id: meta.request_id,
            enqueued_at_ms: meta.enqueued_at_ms,
            attempts: meta.attempts,
            last_error: meta.last_error,
        },
        dead,
    ))
}

fn split_meta(payload: &[u8]) -> Result<(&[u8], &[u8]), Undecodable> {
    let len_bytes: [u8; 4] = payload
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| Undecodable("truncated header".into()))?;
    let len = u32::from_le_bytes(len_bytes) as usize;
    let meta = payload
        .get(4..4usize.saturating_add(len))
        .ok_or_else(|| Undecodable("truncated metadata".into()))?;
    Ok((meta, payload.get(4 + len..).unwrap_or_default()))
}

/// The id the upstream sees for record `id` of store `store`: unique for ever, since every
/// store (a new one, a salvaged one, a reinstalled box's) draws a random id.
pub fn message_id(store: &str, id: RecordId) -> String {
    format!("{store}-{id}")
}

/// The store's running state, rewritten with every change of its record set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Increases with every change.
    pub seq: u64,
    /// Records held (queued and dead) after this change.
    pub live: u64,
    /// The highest record id handed out so far.
    pub max_id: RecordId,
    /// The highest `seq` known to be on the platter (fsync'd) when this state was written: what
    /// was acknowledged is the state at that `seq`.
    pub durable: u64,
}

/// Every record of `route` with an id up to `upto` was delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    pub route: String,
    pub upto: RecordId,
    pub seq: u64,
}

/// Record `id` ended without delivery (dropped, retried under a new id, expired).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tomb {
    pub id: RecordId,
    pub seq: u64,
    pub at_ms: u64,
}

/// A result cache entry's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultMeta {
    pub route: String,
    pub key: String,
    pub expires_ms: u64,
}

/// The store's identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreIdent {
    pub store_id: String,
}

/// A JSON payload frame.
pub fn json_frame<T: Serialize>(kind: Kind, value: &T) -> Vec<u8> {
    frame(kind, &serde_json::to_vec(value).unwrap_or_default())
}

/// The JSON payload of a frame of `kind`.
pub fn json_payload<T: for<'de> Deserialize<'de>>(
    kind: Kind,
    value: &[u8],
) -> Result<T, Undecodable> {
    match unframe(value)? {
        (k, payload) if k == kind => serde_json::from_slice(payload)
            .map_err(|e| Undecodable(format!("bad {kind:?} frame: {e}"))),
        (other, _) => Err(Undecodable(format!("a {other:?} frame where {kind:?} was"))),
    }
}

/// A result cache entry as a frame.
pub fn encode_result(meta: &ResultMeta, answer: &[u8]) -> Vec<u8> {
    let meta = serde_json::to_vec(meta).unwrap_or_default();
    let mut payload = Vec::with_capacity(4 + meta.len() + answer.len());
    payload.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    payload.extend_from_slice(&meta);
    payload.extend_from_slice(answer);
    frame(Kind::Result, &payload)
}

/// A result cache entry: its expiry and the answer. Reads the first release's unframed entries
/// (`[expiry u64 BE][answer]`) too.
pub fn decode_result(value: &[u8]) -> Result<(u64, Vec<u8>), Undecodable> {
    if !value.starts_with(&MAGIC) {
        let expiry = value
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_be_bytes)
            .ok_or_else(|| Undecodable("truncated result".into()))?;
        return Ok((expiry, value[8..].to_vec()));
    }
    match unframe(value)? {
        (Kind::Result, payload) => {
            let (meta, answer) = result_payload(payload)?;
            Ok((meta.expires_ms, answer.to_vec()))
        }
        (other, _) => Err(Undecodable(format!("a {other:?} frame where a result was"))),
    }
}

/// A `Result` frame's payload split into its metadata and the answer.
pub fn result_payload(payload: &[u8]) -> Result<(ResultMeta, &[u8]), Undecodable> {
    let (meta, answer) = split_meta(payload)?;
    let meta = serde_json::from_slice(meta)
        .map_err(|e| Undecodable(format!("bad result metadata: {e}")))?;
    Ok((meta, answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: RecordId) -> Record {
        Record {
            id,
            message_id: message_id("s1", id),
            route: "cloud:prefront/x".into(),
            key: Some("refundNo=R1".into()),
            body: br#"{"a":"\u59d3\u540d"}"#.to_vec(),
            request_id: "req".into(),
            enqueued_at_ms: 5,
            attempts: 2,
            last_error: Some("e".into()),
        }
    }

    #[test]
    fn a_record_round_trips_and_a_flipped_bit_is_refused() {
        let r = rec(7);
        let v = encode_record(&r, Some(("gone", 9)), "s1");
        let (back, dead) = decode_record(&v, "s1").unwrap();
        assert_eq!(back, r);
        assert_eq!(dead, Some(("gone".into(), 9)));
        for i in 0..v.len() {
            for bit in [0x01u8, 0x80] {
                let mut bad = v.clone();
                bad[i] ^= bit;
                // Every single flipped bit is either refused or (in the magic/version) not
                // taken for a record at all.
                assert!(
                    decode_record(&bad, "s1").is_err(),
                    "bit {bit:#x} at {i} not detected"
                );
            }
        }
    }

    #[test]
    fn a_salvaged_record_keeps_its_message_id_in_another_store() {
        let r = rec(3);
        let v = encode_record(&r, None, "s2");
        let (back, _) = decode_record(&v, "s2").unwrap();
        assert_eq!(back.message_id, "s1-3");
        // In its own store the default id is not spelled out.
        let own = encode_record(&r, None, "s1");
        assert!(own.len() < v.len());
    }

    #[test]
    fn first_release_values_are_still_read() {
        let meta = br#"{"id":4,"route":"r","request_id":"q","enqueued_at_ms":1,"attempts":0}"#;
        let mut v = vec![1u8];
        v.extend_from_slice(&(meta.len() as u32).to_le_bytes());
        v.extend_from_slice(meta);
        v.extend_from_slice(b"{}");
        let (r, dead) = decode_record(&v, "s").unwrap();
        assert_eq!((r.id, r.body.as_slice(), dead), (4, &b"{}"[..], None));
        let mut old_result = 99u64.to_be_bytes().to_vec();
        old_result.extend_from_slice(b"{\"ok\":1}");
        assert_eq!(
            decode_result(&old_result).unwrap(),
            (99, b"{\"ok\":1}".to_vec())
        );
    }
}
