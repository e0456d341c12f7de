//! The result cache and recording deliveries: what a delivered keyed call leaves behind, so a
//! caller retrying with the same key gets the cloud's answer instead of a second delivery.

use super::*;

impl SledOutbox {
    /// The result cache's answer for (route, key), if it has one that has not expired (an
    /// expired one is removed).
    pub(super) fn cached(
        &self,
        inner: &mut Inner,
        db: &sled::Db,
        route: &str,
        key: &str,
    ) -> Result<Option<Vec<u8>>, OutboxError> {
        let rk = keyed_key(RESULT, route, key);
        let Some(v) = self.get_raw(db, &rk)? else {
            return Ok(None);
        };
        match codec::decode_result(&v) {
            Ok((expires, answer)) if expires > now_ms() => Ok(Some(answer)),
            _ => {
                let mut batch = sled::Batch::default();
                batch.remove(rk);
                self.apply(inner, db, batch)?;
                inner.used = inner.used.saturating_sub(v.len() as u64);
                Ok(None)
            }
        }
    }

    pub(super) fn record_delivery(
        &self,
        inner: &mut Inner,
        record: &Record,
        answer: &[u8],
    ) -> Result<(), OutboxError> {
        let open = self.open_store()?;
        let db = &open.db;
        let qk = queued_key(&record.route, record.id);
        if record.key.is_none() {
            return self.record_plain_delivery(inner, db, &qk, record);
        }
        let Some(old) = self.get_raw(db, &qk)? else {
            return Err(OutboxError::NotFound(record.id));
        };
        let mut batch = sled::Batch::default();
        let (added, marked) =
            delivery_batch(db, &mut batch, inner, &self.shared, &qk, record, answer)?;
        inner.live = inner.live.saturating_sub(1);
        self.apply(inner, db, batch)?;
        if let Some(upto) = marked {
            inner.marks.insert(record.route.clone(), upto);
        }
        inner.used = add_signed(inner.used.saturating_sub(old.len() as u64), added);
        dec_depth(inner, &record.route);
        Ok(())
    }
}

impl SledOutbox {
    /// The common delivery, a record without a key: two single writes instead of a batch (sled
    /// serialises a batch against every reader; the forwarders read all the time). The record
    /// goes first, then the route's mark (or a tombstone); a crash between them leaves stale
    /// copies of the record in the log without a mark over them, which only a salvage reads,
    /// and a salvage then sends the record once more (at least once).
    pub(super) fn record_plain_delivery(
        &self,
        inner: &mut Inner,
        db: &sled::Db,
        qk: &[u8],
        record: &Record,
    ) -> Result<(), OutboxError> {
        // Judged before the record leaves: it is the head only while it is there.
        let (key, value, marked) = delivery_end(db, inner, qk, record)?;
        let old = match db.remove(qk) {
            Ok(Some(old)) => old,
            Ok(None) => return Err(OutboxError::NotFound(record.id)),
            Err(e) => return Err(self.failed(inner, "cannot write the buffer", e)),
        };
        inner.seq += 1;
        if let Err(e) = db.insert(key, value) {
            return Err(self.failed(inner, "cannot write the buffer", e));
        }
        if let Some(upto) = marked {
            inner.marks.insert(record.route.clone(), upto);
        }
        inner.dirty = true;
        inner.live = inner.live.saturating_sub(1);
        inner.used = inner.used.saturating_sub(old.len() as u64);
        dec_depth(inner, &record.route);
        Ok(())
    }
}

/// The entry that ends a delivered record: key, frame, and the route's new mark if it moved.
type DeliveryEnd = (Vec<u8>, Vec<u8>, Option<RecordId>);

/// What ends a delivered record in the log: the route's mark moved up to it when it is the
/// route's head and above the mark (kept in memory, as in the tree), else a tombstone of its own
/// (a record salvaged in behind delivered ones). The key, the frame, and the new mark if any.
/// Call it while the record is still queued, with `inner.seq` not yet moved for this change.
fn delivery_end(
    db: &sled::Db,
    inner: &Inner,
    qk: &[u8],
    record: &Record,
) -> Result<DeliveryEnd, OutboxError> {
    let is_head = match db.scan_prefix(route_prefix(&record.route)).next() {
        Some(Ok((k, _))) => &k[..] == qk,
        Some(Err(e)) => return Err(storage("cannot read the buffer", e)),
        None => false,
    };
    let current = inner.marks.get(&record.route).copied().unwrap_or(0);
    let seq = inner.seq + 1;
    if is_head && record.id > current {
        let mark = Mark {
            route: record.route.clone(),
            upto: record.id,
            seq,
        };
        Ok((
            mark_key(&record.route),
            codec::json_frame(Kind::Mark, &mark),
            Some(record.id),
        ))
    } else {
        let t = Tomb {
            id: record.id,
            seq,
            at_ms: now_ms(),
        };
        Ok((
            id_key(TOMB, record.id),
            codec::json_frame(Kind::Tomb, &t),
            None,
        ))
    }
}

/// The writes that record a delivery: the record out of its queue, the route's mark, the answer
/// in the result cache for a keyed record. Returns the bytes the result adds to the quota and the
/// mark, if the route's moved.
pub(super) fn delivery_batch(
    db: &sled::Db,
    batch: &mut sled::Batch,
    inner: &Inner,
    sh: &Shared,
    qk: &[u8],
    record: &Record,
    answer: &[u8],
) -> Result<(i64, Option<RecordId>), OutboxError> {
    let (key, value, marked) = delivery_end(db, inner, qk, record)?;
    remove_queued(db, batch, qk, record)?;
    batch.insert(key, value);
    let mut added = 0i64;
    if let (Some(key), false) = (&record.key, sh.result_ttl.is_zero()) {
        let meta = ResultMeta {
            route: record.route.clone(),
            key: key.clone(),
            expires_ms: now_ms().saturating_add(sh.result_ttl.as_millis() as u64),
        };
        let v = codec::encode_result(&meta, answer);
        let rk = keyed_key(RESULT, &record.route, key);
        // A result it replaces leaves the quota.
        let replaced = db
            .get(&rk)
            .map_err(|e| storage("cannot read the buffer", e))?
            .map_or(0, |old| old.len() as i64);
        added = v.len() as i64 - replaced;
        batch.insert(rk, v);
    }
    Ok((added, marked))
}
