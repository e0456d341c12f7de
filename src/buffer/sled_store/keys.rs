//! How the store's entries are keyed: one sled tree, one-byte prefixes (the table in
//! `mod.rs`). Keys sort by route, then by id (big-endian), so a prefix scan reads a route's
//! queue in order.

use crate::buffer::RecordId;

pub(super) const QUEUED: u8 = b'q';
pub(super) const KEYED: u8 = b'k';
pub(super) const RESULT: u8 = b'r';
pub(super) const DEAD: u8 = b'd';
pub(super) const MARK: u8 = b'm';
pub(super) const TOMB: u8 = b't';
pub(super) const STATE_KEY: &[u8] = b"S";
pub(super) const IDENT_KEY: &[u8] = b"I";

pub(super) fn key2(prefix: u8, a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + a.len() + b.len());
    k.push(prefix);
    k.extend_from_slice(a);
    k.push(0);
    k.extend_from_slice(b);
    k
}

pub(super) fn queued_key(route: &str, id: RecordId) -> Vec<u8> {
    key2(QUEUED, route.as_bytes(), &id.to_be_bytes())
}

pub(super) fn route_prefix(route: &str) -> Vec<u8> {
    key2(QUEUED, route.as_bytes(), &[])
}

pub(super) fn id_key(prefix: u8, id: RecordId) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(prefix);
    k.extend_from_slice(&id.to_be_bytes());
    k
}

pub(super) fn keyed_key(prefix: u8, route: &str, key: &str) -> Vec<u8> {
    key2(prefix, route.as_bytes(), key.as_bytes())
}

pub(super) fn mark_key(route: &str) -> Vec<u8> {
    let mut k = vec![MARK];
    k.extend_from_slice(route.as_bytes());
    k
}

/// Route and id out of a `q` key.
pub(super) fn split_queued_key(k: &[u8]) -> Option<(String, RecordId)> {
    if k.len() < 10 || k[0] != QUEUED || k[k.len() - 9] != 0 {
        return None;
    }
    let id = u64::from_be_bytes(k[k.len() - 8..].try_into().ok()?);
    let route = String::from_utf8_lossy(&k[1..k.len() - 9]).into_owned();
    Some((route, id))
}

/// The ids in a `k` entry: the queued records holding the key, oldest first.
pub(super) fn ids_in(v: &[u8]) -> impl Iterator<Item = RecordId> + '_ {
    v.chunks_exact(8)
        .filter_map(|c| c.try_into().ok().map(u64::from_be_bytes))
}

pub(super) fn ids_value(ids: &[RecordId]) -> Vec<u8> {
    ids.iter().flat_map(|id| id.to_be_bytes()).collect()
}
