//! The credit ledger in the embedded store: entries under the unique `(user_id, seq)` index and
//! the cached balance on the user.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};
use time::OffsetDateTime;

use super::*;

const LEDGER_COLUMNS: &str = "id, user_id, seq, service_type, amount, balance_after, reference, actor_id, \
    refund_of, created_at, kind, model, usage_input, usage_output, usage_estimated, held_after, day_spent_after";

#[async_trait]
impl LedgerStore for SqliteStore {
    async fn last_ledger_entry(&self, user_id: &str) -> StoreResult<Option<LedgerEntry>> {
        let user_id = user_id.to_owned();
        self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT {LEDGER_COLUMNS} FROM ledger WHERE user_id = ?1 ORDER BY seq DESC LIMIT 1"
            ))?
            .query_row([user_id], ledger_from_row)
            .optional()
        })
        .await
    }

    async fn insert_ledger_entry(&self, entry: &LedgerEntry) -> StoreResult<()> {
        let e = entry.clone();
        self.write(move |c| insert_entry(c, &e)).await
    }

    async fn append_ledger_entry(&self, entry: &LedgerEntry) -> StoreResult<()> {
        // The entry and the cached balance in one write: one savepoint of one group commit.
        let e = entry.clone();
        self.write(move |c| {
            insert_entry(c, &e)?;
            set_cached_balance(c, &e.user_id, e.seq, e.balance_after)
        })
        .await
    }

    async fn cache_balance(&self, user_id: &str, seq: i64, balance: i64) -> StoreResult<()> {
        let user_id = user_id.to_owned();
        self.write(move |c| set_cached_balance(c, &user_id, seq, balance)).await
    }

    async fn repair_cached_balance(
        &self,
        user_id: &str,
        from: CachedBalance,
        to: CachedBalance,
    ) -> StoreResult<bool> {
        let user_id = user_id.to_owned();
        self.write(move |c| {
            c.prepare_cached(
                "UPDATE users SET credits = ?4, credits_seq = ?5 \
                 WHERE id = ?1 AND credits = ?2 AND credits_seq = ?3",
            )?
            .execute(params![user_id, from.credits, from.seq, to.credits, to.seq])
            .map(|changed| changed == 1)
        })
        .await
    }

    async fn ledger_page(
        &self,
        user_id: &str,
        before: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<LedgerEntry>> {
        let user_id = user_id.to_owned();
        self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT {LEDGER_COLUMNS} FROM ledger WHERE user_id = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3"
            ))?
            .query_map(params![user_id, before.unwrap_or(i64::MAX), limit], ledger_from_row)?
            .collect()
        })
        .await
    }

    async fn ledger_days(&self, user_id: Option<&str>, since: OffsetDateTime) -> StoreResult<Vec<LedgerDay>> {
        let (user_id, since) = (user_id.map(str::to_owned), millis(since));
        self.read(move |c| {
            // Summed by SQLite per day and kind over the `(user_id, created_at)` or `created_at`
            // index; only these few rows cross to Rust.
            let mut statement = c.prepare_cached(&format!(
                "SELECT created_at / {DAY_MILLIS} AS day, service_type, refund_of, SUM(amount) FROM ledger
                 WHERE created_at >= ?1 AND (?2 IS NULL OR user_id = ?2)
                 GROUP BY day, service_type, refund_of ORDER BY day"
            ))?;
            let mut rows = statement.query(params![since, user_id])?;
            let mut days: Vec<LedgerDay> = Vec::new();
            while let Some(r) = rows.next()? {
                let date = epoch_day(r.get(0)?);
                let service: String = r.get(1)?;
                let service =
                    ServiceType::parse(&service).ok_or_else(|| unknown_value(1, "service_type", &service))?;
                let refund_of = r.get::<_, Option<String>>(2)?.and_then(|s| ServiceType::parse(&s));
                if days.last().is_none_or(|d| d.date != date) {
                    days.push(LedgerDay::empty(date));
                }
                if let Some(day) = days.last_mut() {
                    day.add(service, refund_of, r.get(3)?);
                }
            }
            Ok(days)
        })
        .await
    }
}

fn insert_entry(c: &Connection, e: &LedgerEntry) -> rusqlite::Result<()> {
    c.prepare_cached(&format!(
        "INSERT INTO ledger ({LEDGER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)"
    ))?
    .execute(params![
        e.id,
        e.user_id,
        e.seq,
        e.service_type.as_str(),
        e.amount,
        e.balance_after,
        e.reference,
        e.actor_id,
        e.refund_of.map(ServiceType::as_str),
        millis(e.created_at),
        e.kind.as_str(),
        e.model,
        e.usage.map(|u| u.input_tokens as i64),
        e.usage.map(|u| u.output_tokens as i64),
        e.usage.map(|u| u.estimated),
        e.held_after,
        e.day_spent_after,
    ])
    .map(drop)
}

/// Refreshes the cached balance unless a newer entry already did.
fn set_cached_balance(c: &Connection, user_id: &str, seq: i64, balance: i64) -> rusqlite::Result<()> {
    c.prepare_cached("UPDATE users SET credits = ?3, credits_seq = ?2 WHERE id = ?1 AND credits_seq < ?2")?
        .execute(params![user_id, seq, balance])
        .map(drop)
}

fn ledger_from_row(r: &Row<'_>) -> rusqlite::Result<LedgerEntry> {
    let service: String = r.get(3)?;
    let service_type =
        ServiceType::parse(&service).ok_or_else(|| unknown_value(3, "service_type", &service))?;
    Ok(LedgerEntry {
        id: r.get(0)?,
        user_id: r.get(1)?,
        seq: r.get(2)?,
        service_type,
        amount: r.get(4)?,
        balance_after: r.get(5)?,
        reference: r.get(6)?,
        actor_id: r.get(7)?,
        refund_of: match r.get::<_, Option<String>>(8)? {
            Some(service) => {
                Some(ServiceType::parse(&service).ok_or_else(|| unknown_value(8, "refund_of", &service))?)
            }
            None => None,
        },
        created_at: from_millis(r.get(9)?),
        kind: match r.get::<_, Option<String>>(10)? {
            Some(kind) => EntryKind::parse(&kind).ok_or_else(|| unknown_value(10, "kind", &kind))?,
            // Stored before kinds were.
            None => EntryKind::of_legacy(service_type),
        },
        model: r.get(11)?,
        usage: match (r.get::<_, Option<i64>>(12)?, r.get::<_, Option<i64>>(13)?) {
            (Some(input), Some(output)) => Some(TokenUsage {
                input_tokens: input.max(0) as u64,
                output_tokens: output.max(0) as u64,
                estimated: r.get::<_, Option<bool>>(14)?.unwrap_or(false),
            }),
            _ => None,
        },
        held_after: r.get(15)?,
        day_spent_after: r.get(16)?,
    })
}
