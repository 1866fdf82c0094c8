//! Generated images in the embedded store: records apart from their PNG bytes.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, Row, params};

use super::*;

/// Every column but `png`, which only `image_png` reads.
const IMAGE_COLUMNS: &str = "id, user_id, prompt, width, height, created_at, model, charged";
#[async_trait]
impl ImageStore for SqliteStore {
    async fn insert_image(&self, image: &Image, png: &[u8]) -> StoreResult<()> {
        let (i, png) = (image.clone(), png.to_vec());
        self.write(move |c| {
            c.prepare_cached(&format!(
                "INSERT INTO images ({IMAGE_COLUMNS}, png) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
            ))?
            .execute(params![
                i.id,
                i.user_id,
                i.prompt,
                i.width,
                i.height,
                millis(i.created_at),
                i.model,
                i.charged,
                png
            ])
            .map(drop)
        })
        .await
    }

    async fn image(&self, id: &str) -> StoreResult<Option<Image>> {
        let id = id.to_owned();
        self.read(move |c| {
            c.prepare_cached(&format!("SELECT {IMAGE_COLUMNS} FROM images WHERE id = ?1"))?
                .query_row([id], image_from_row)
                .optional()
        })
        .await
    }

    async fn image_png(&self, id: &str) -> StoreResult<Option<Vec<u8>>> {
        let id = id.to_owned();
        self.read(move |c| {
            c.prepare_cached("SELECT png FROM images WHERE id = ?1")?.query_row([id], |r| r.get(0)).optional()
        })
        .await
    }

    async fn images_of(&self, user_id: &str, before: Option<&str>, limit: i64) -> StoreResult<Vec<Image>> {
        let (user_id, before) = (user_id.to_owned(), before.map(str::to_owned));
        self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT {IMAGE_COLUMNS} FROM images WHERE user_id = ?1 AND (?2 IS NULL OR id < ?2)
                 ORDER BY id DESC LIMIT ?3"
            ))?
            .query_map(params![user_id, before, limit], image_from_row)?
            .collect()
        })
        .await
    }

    async fn delete_image(&self, id: &str) -> StoreResult<bool> {
        let id = id.to_owned();
        // The bytes live in the same row, so they go with it.
        self.write(move |c| {
            c.prepare_cached("DELETE FROM images WHERE id = ?1")?.execute([id]).map(|n| n == 1)
        })
        .await
    }
}

fn image_from_row(r: &Row<'_>) -> rusqlite::Result<Image> {
    Ok(Image {
        id: r.get(0)?,
        user_id: r.get(1)?,
        prompt: r.get(2)?,
        width: r.get(3)?,
        height: r.get(4)?,
        created_at: from_millis(r.get(5)?),
        model: r.get(6)?,
        charged: r.get(7)?,
    })
}
