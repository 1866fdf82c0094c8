//! Generated images in MongoDB: records in `images`, PNG bytes apart in `image_png`.

use async_trait::async_trait;
use mongodb::bson::{Bson, Document, doc};

use super::*;

/// PNG bytes of images, `{_id: <image id>, png: <binary>}`, apart from the records: FerretDB
/// 1.x decodes every document of a collection to filter or count it, so megabytes of PNG in
/// `images` would make every listing and `user_stats` read all images of all users.
const IMAGE_BYTES: &str = "image_png";

/// The field of an `image_png` document holding the bytes.
const PNG: &str = "png";

#[async_trait]
impl ImageStore for MongoStore {
    async fn insert_image(&self, image: &Image, png: &[u8]) -> StoreResult<()> {
        // Bytes first: a record is never visible without its bytes. Without transactions a failed
        // record insert can leave bytes behind; they are unreachable, so they are only removed
        // best-effort here.
        let bytes = Binary { subtype: BinarySubtype::Generic, bytes: png.to_vec() };
        let bytes = doc! { "_id": &image.id, PNG: bytes };
        self.insert(IMAGE_BYTES, bytes).await?;
        let result = self.insert(IMAGES, image_to_doc(image)).await;
        if result.is_err() {
            let _ = self.coll(IMAGE_BYTES).delete_one(doc! { "_id": &image.id }).await;
        }
        result
    }

    async fn image(&self, id: &str) -> StoreResult<Option<Image>> {
        let found = self.coll(IMAGES).find_one(doc! { "_id": id }).await.map_err(map_err)?;
        found.as_ref().map(doc_to_image).transpose()
    }

    async fn image_png(&self, id: &str) -> StoreResult<Option<Vec<u8>>> {
        let found = self.coll(IMAGE_BYTES).find_one(doc! { "_id": id }).await.map_err(map_err)?;
        let Some(mut found) = found else {
            return Ok(None);
        };
        match found.remove(PNG) {
            Some(Bson::Binary(b)) => Ok(Some(b.bytes)),
            _ => Err(malformed(PNG)),
        }
    }

    async fn images_of(&self, user_id: &str, before: Option<&str>, limit: i64) -> StoreResult<Vec<Image>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let cursor = self
            .coll(IMAGES)
            .find(before_filter("user_id", user_id, before))
            .sort(doc! { "_id": -1 })
            .limit(mongo_limit(limit))
            .await
            .map_err(map_err)?;
        collect(cursor).await?.iter().map(doc_to_image).collect()
    }

    async fn delete_image(&self, id: &str) -> StoreResult<bool> {
        // The record first, so the image vanishes from lists at once; then its bytes.
        let deleted = self.coll(IMAGES).delete_one(doc! { "_id": id }).await.map_err(map_err)?;
        self.coll(IMAGE_BYTES).delete_one(doc! { "_id": id }).await.map_err(map_err)?;
        Ok(deleted.deleted_count == 1)
    }
}

fn image_to_doc(i: &Image) -> Document {
    doc! {
        "_id": &i.id,
        "user_id": &i.user_id,
        "prompt": &i.prompt,
        "width": i64::from(i.width),
        "height": i64::from(i.height),
        "created_at": bson_date(i.created_at),
        "model": i.model.as_deref(),
        "charged": i.charged,
    }
}

fn doc_to_image(d: &Document) -> StoreResult<Image> {
    let pixels = |key: &str| u32::try_from(int_field(d, key)?).map_err(|_| malformed(key));
    Ok(Image {
        id: str_field(d, "_id")?,
        user_id: str_field(d, "user_id")?,
        prompt: str_field(d, "prompt")?,
        width: pixels("width")?,
        height: pixels("height")?,
        created_at: date_field(d, "created_at")?,
        model: opt_str_field(d, "model")?,
        charged: opt_int_field(d, "charged")?,
    })
}
