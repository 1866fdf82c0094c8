//! Chats and their messages in MongoDB.

use async_trait::async_trait;
use mongodb::bson::{Document, doc};
use mongodb::options::ReturnDocument;
use time::OffsetDateTime;

use super::*;

#[async_trait]
impl ChatStore for MongoStore {
    async fn insert_chat(&self, chat: &Chat) -> StoreResult<()> {
        self.insert(CHATS, chat_to_doc(chat)).await
    }

    async fn chat(&self, id: &str) -> StoreResult<Option<Chat>> {
        let found = self.coll(CHATS).find_one(doc! { "_id": id }).await.map_err(map_err)?;
        found.as_ref().map(doc_to_chat).transpose()
    }

    async fn chat_count(&self, user_id: &str) -> StoreResult<i64> {
        self.count(CHATS, doc! { "user_id": user_id }).await
    }

    async fn chats_page(
        &self,
        user_id: &str,
        before: Option<(OffsetDateTime, &str)>,
        limit: i64,
    ) -> StoreResult<Vec<Chat>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut filter = doc! { "user_id": user_id };
        if let Some((at, id)) = before {
            let at = bson_date(at);
            filter.insert(
                "$or",
                vec![doc! { "updated_at": { "$lt": at } }, doc! { "updated_at": at, "_id": { "$lt": id } }],
            );
        }
        let cursor = self
            .coll(CHATS)
            .find(filter)
            .sort(doc! { "updated_at": -1, "_id": -1 })
            .limit(mongo_limit(limit))
            .await
            .map_err(map_err)?;
        collect(cursor).await?.iter().map(doc_to_chat).collect()
    }

    async fn touch_chat(&self, id: &str, now: OffsetDateTime) -> StoreResult<bool> {
        // Filtered by `_id` alone, so FerretDB's read-modify-write cannot lose a condition;
        // two racing touches leave the later write, as SQLite does.
        let touched = self
            .coll(CHATS)
            .update_one(doc! { "_id": id }, doc! { "$set": { "updated_at": bson_date(now) } })
            .await
            .map_err(map_err)?;
        Ok(touched.matched_count == 1)
    }

    async fn rename_chat(&self, id: &str, title: &str) -> StoreResult<Option<Chat>> {
        let renamed = self
            .coll(CHATS)
            .find_one_and_update(doc! { "_id": id }, doc! { "$set": { "title": title } })
            .return_document(ReturnDocument::After)
            .await
            .map_err(map_err)?;
        renamed.as_ref().map(doc_to_chat).transpose()
    }

    async fn delete_chat(&self, id: &str) -> StoreResult<bool> {
        // No transactions: the chat goes first, so it vanishes from lists and its history at
        // once; then its messages, including any that a reply in flight stored meanwhile. Should
        // that second delete fail, the messages are unreachable (every read goes through the
        // chat) and the error is reported, so the caller may retry.
        let deleted = self.coll(CHATS).delete_one(doc! { "_id": id }).await.map_err(map_err)?;
        self.coll(MESSAGES).delete_many(doc! { "chat_id": id }).await.map_err(map_err)?;
        Ok(deleted.deleted_count == 1)
    }

    async fn insert_message(&self, message: &ChatMessage) -> StoreResult<()> {
        self.inserts.insert(MESSAGES, message_to_doc(message)).await
    }

    async fn finish_message(&self, id: &str, end: &MessageEnd) -> StoreResult<bool> {
        // Filtered by `_id` alone, so FerretDB's read-modify-write cannot lose a condition.
        let set = doc! {
            "content": &end.content,
            "status": end.status.as_str(),
            "charged": end.charged,
            "usage": end.usage.map(usage_to_doc),
        };
        let updated = self
            .coll(MESSAGES)
            .update_one(doc! { "_id": id }, doc! { "$set": set })
            .await
            .map_err(map_err)?;
        Ok(updated.matched_count == 1)
    }

    async fn delete_message(&self, id: &str) -> StoreResult<bool> {
        let deleted = self.coll(MESSAGES).delete_one(doc! { "_id": id }).await.map_err(map_err)?;
        Ok(deleted.deleted_count == 1)
    }

    async fn message(&self, id: &str) -> StoreResult<Option<ChatMessage>> {
        let found = self.coll(MESSAGES).find_one(doc! { "_id": id }).await.map_err(map_err)?;
        found.as_ref().map(doc_to_message).transpose()
    }

    async fn messages_page(
        &self,
        chat_id: &str,
        before: Option<&str>,
        limit: i64,
    ) -> StoreResult<Vec<ChatMessage>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let cursor = self
            .coll(MESSAGES)
            .find(before_filter("chat_id", chat_id, before))
            .sort(doc! { "_id": -1 })
            .limit(mongo_limit(limit))
            .await
            .map_err(map_err)?;
        let mut newest_first =
            collect(cursor).await?.iter().map(doc_to_message).collect::<StoreResult<Vec<_>>>()?;
        newest_first.reverse();
        Ok(newest_first)
    }
}

fn chat_to_doc(c: &Chat) -> Document {
    doc! {
        "_id": &c.id,
        "user_id": &c.user_id,
        "title": &c.title,
        "created_at": bson_date(c.created_at),
        "updated_at": bson_date(c.updated_at),
    }
}

fn doc_to_chat(d: &Document) -> StoreResult<Chat> {
    Ok(Chat {
        id: str_field(d, "_id")?,
        user_id: str_field(d, "user_id")?,
        title: str_field(d, "title")?,
        created_at: date_field(d, "created_at")?,
        updated_at: date_field(d, "updated_at")?,
    })
}

fn message_to_doc(m: &ChatMessage) -> Document {
    doc! {
        "_id": &m.id,
        "chat_id": &m.chat_id,
        "user_id": &m.user_id,
        "role": m.role.as_str(),
        "content": &m.content,
        "created_at": bson_date(m.created_at),
        "status": m.status.as_str(),
        "model": m.model.as_deref(),
        "charged": m.charged,
        "usage": m.usage.map(usage_to_doc),
    }
}

fn usage_to_doc(u: TokenUsage) -> Document {
    doc! { "input_tokens": u.input_tokens as i64, "output_tokens": u.output_tokens as i64, "estimated": u.estimated }
}

fn doc_to_message(d: &Document) -> StoreResult<ChatMessage> {
    Ok(ChatMessage {
        id: str_field(d, "_id")?,
        chat_id: str_field(d, "chat_id")?,
        user_id: str_field(d, "user_id")?,
        role: MessageRole::parse(&str_field(d, "role")?).ok_or_else(|| malformed("role"))?,
        content: str_field(d, "content")?,
        created_at: date_field(d, "created_at")?,
        status: match opt_str_field(d, "status")? {
            Some(status) => MessageStatus::parse(&status).ok_or_else(|| malformed("status"))?,
            // Stored before replies had a status.
            None => MessageStatus::Complete,
        },
        model: opt_str_field(d, "model")?,
        charged: opt_int_field(d, "charged")?,
        usage: match d.get_document("usage") {
            Ok(u) => Some(TokenUsage {
                input_tokens: int_field(u, "input_tokens")?.max(0) as u64,
                output_tokens: int_field(u, "output_tokens")?.max(0) as u64,
                estimated: u.get_bool("estimated").unwrap_or(false),
            }),
            Err(_) => None,
        },
    })
}
