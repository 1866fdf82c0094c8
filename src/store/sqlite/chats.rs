//! Chats and their messages in the embedded store.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, Row, params};
use time::OffsetDateTime;

use super::*;

const CHAT_COLUMNS: &str = "id, user_id, title, created_at, updated_at";

const MESSAGE_COLUMNS: &str = "id, chat_id, user_id, role, content, created_at, status, model, charged, \
    usage_input, usage_output, usage_estimated";

#[async_trait]
impl ChatStore for SqliteStore {
    async fn insert_chat(&self, chat: &Chat) -> StoreResult<()> {
        let ch = chat.clone();
        self.write(move |c| {
            c.prepare_cached(&format!("INSERT INTO chats ({CHAT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5)"))?
                .execute(params![ch.id, ch.user_id, ch.title, millis(ch.created_at), millis(ch.updated_at)])
                .map(drop)
        })
        .await
    }

    async fn chat(&self, id: &str) -> StoreResult<Option<Chat>> {
        let id = id.to_owned();
        self.read(move |c| {
            c.prepare_cached(&format!("SELECT {CHAT_COLUMNS} FROM chats WHERE id = ?1"))?
                .query_row([id], chat_from_row)
                .optional()
        })
        .await
    }

    async fn chat_count(&self, user_id: &str) -> StoreResult<i64> {
        let user_id = user_id.to_owned();
        self.read(move |c| {
            c.prepare_cached("SELECT COUNT(*) FROM chats WHERE user_id = ?1")?
                .query_row([user_id], |r| r.get(0))
        })
        .await
    }

    async fn chats_page(
        &self,
        user_id: &str,
        before: Option<(OffsetDateTime, &str)>,
        limit: i64,
    ) -> StoreResult<Vec<Chat>> {
        let user_id = user_id.to_owned();
        let before = before.map(|(at, id)| (millis(at), id.to_owned()));
        self.read(move |c| match before {
            None => c
                .prepare_cached(&format!(
                    "SELECT {CHAT_COLUMNS} FROM chats WHERE user_id = ?1
                     ORDER BY updated_at DESC, id DESC LIMIT ?2"
                ))?
                .query_map(params![user_id, limit], chat_from_row)?
                .collect(),
            Some((at, id)) => c
                .prepare_cached(&format!(
                    "SELECT {CHAT_COLUMNS} FROM chats WHERE user_id = ?1
                       AND (updated_at < ?2 OR (updated_at = ?2 AND id < ?3))
                     ORDER BY updated_at DESC, id DESC LIMIT ?4"
                ))?
                .query_map(params![user_id, at, id, limit], chat_from_row)?
                .collect(),
        })
        .await
    }

    async fn touch_chat(&self, id: &str, now: OffsetDateTime) -> StoreResult<bool> {
        let id = id.to_owned();
        self.write(move |c| {
            c.prepare_cached("UPDATE chats SET updated_at = ?2 WHERE id = ?1")?
                .execute(params![id, millis(now)])
                .map(|n| n == 1)
        })
        .await
    }

    async fn rename_chat(&self, id: &str, title: &str) -> StoreResult<Option<Chat>> {
        let (id, title) = (id.to_owned(), title.to_owned());
        self.write(move |c| {
            c.prepare_cached(&format!("UPDATE chats SET title = ?2 WHERE id = ?1 RETURNING {CHAT_COLUMNS}"))?
                .query_row(params![id, title], chat_from_row)
                .optional()
        })
        .await
    }

    async fn delete_chat(&self, id: &str) -> StoreResult<bool> {
        let id = id.to_owned();
        // One savepoint: the chat and its messages go together or not at all.
        self.write(move |c| {
            c.prepare_cached("DELETE FROM messages WHERE chat_id = ?1")?.execute([&id])?;
            c.prepare_cached("DELETE FROM chats WHERE id = ?1")?.execute([&id]).map(|n| n == 1)
        })
        .await
    }

    async fn insert_message(&self, message: &ChatMessage) -> StoreResult<()> {
        let m = message.clone();
        self.write(move |c| {
            c.prepare_cached(&format!(
                "INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
            ))?
            .execute(params![
                m.id,
                m.chat_id,
                m.user_id,
                m.role.as_str(),
                m.content,
                millis(m.created_at),
                m.status.as_str(),
                m.model,
                m.charged,
                m.usage.map(|u| u.input_tokens as i64),
                m.usage.map(|u| u.output_tokens as i64),
                m.usage.map(|u| u.estimated),
            ])
            .map(drop)
        })
        .await
    }

    async fn finish_message(&self, id: &str, end: &MessageEnd) -> StoreResult<bool> {
        let (id, end) = (id.to_owned(), end.clone());
        self.write(move |c| {
            c.prepare_cached(
                "UPDATE messages SET content = ?2, status = ?3, charged = ?4, usage_input = ?5, \
                 usage_output = ?6, usage_estimated = ?7 WHERE id = ?1",
            )?
            .execute(params![
                id,
                end.content,
                end.status.as_str(),
                end.charged,
                end.usage.map(|u| u.input_tokens as i64),
                end.usage.map(|u| u.output_tokens as i64),
                end.usage.map(|u| u.estimated),
            ])
            .map(|n| n == 1)
        })
        .await
    }

    async fn delete_message(&self, id: &str) -> StoreResult<bool> {
        let id = id.to_owned();
        self.write(move |c| {
            c.prepare_cached("DELETE FROM messages WHERE id = ?1")?.execute([&id]).map(|n| n == 1)
        })
        .await
    }

    async fn message(&self, id: &str) -> StoreResult<Option<ChatMessage>> {
        let id = id.to_owned();
        self.read(move |c| {
            c.prepare_cached(&format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ?1"))?
                .query_row([id], message_from_row)
                .optional()
        })
        .await
    }

    async fn messages_page(
        &self,
        chat_id: &str,
        before: Option<&str>,
        limit: i64,
    ) -> StoreResult<Vec<ChatMessage>> {
        let (chat_id, before) = (chat_id.to_owned(), before.map(str::to_owned));
        self.read(move |c| {
            let mut newest_first = c
                .prepare_cached(&format!(
                    "SELECT {MESSAGE_COLUMNS} FROM messages WHERE chat_id = ?1 AND (?2 IS NULL OR id < ?2)
                     ORDER BY id DESC LIMIT ?3"
                ))?
                .query_map(params![chat_id, before, limit], message_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            newest_first.reverse();
            Ok(newest_first)
        })
        .await
    }
}

fn chat_from_row(r: &Row<'_>) -> rusqlite::Result<Chat> {
    Ok(Chat {
        id: r.get(0)?,
        user_id: r.get(1)?,
        title: r.get(2)?,
        created_at: from_millis(r.get(3)?),
        updated_at: from_millis(r.get(4)?),
    })
}

fn message_from_row(r: &Row<'_>) -> rusqlite::Result<ChatMessage> {
    let role: String = r.get(3)?;
    let role = MessageRole::parse(&role).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            3,
            rusqlite::types::Type::Text,
            format!("unknown role {role:?}").into(),
        )
    })?;
    Ok(ChatMessage {
        id: r.get(0)?,
        chat_id: r.get(1)?,
        user_id: r.get(2)?,
        role,
        content: r.get(4)?,
        created_at: from_millis(r.get(5)?),
        status: {
            let status: String = r.get(6)?;
            MessageStatus::parse(&status).ok_or_else(|| unknown_value(6, "status", &status))?
        },
        model: r.get(7)?,
        charged: r.get(8)?,
        usage: match (r.get::<_, Option<i64>>(9)?, r.get::<_, Option<i64>>(10)?) {
            (Some(input), Some(output)) => Some(TokenUsage {
                input_tokens: input.max(0) as u64,
                output_tokens: output.max(0) as u64,
                estimated: r.get::<_, Option<bool>>(11)?.unwrap_or(false),
            }),
            _ => None,
        },
    })
}
