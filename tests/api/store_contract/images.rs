//! The contract for images: the record and its PNG bytes read back exactly, and a user's images
//! page newest first.

use switchboard::store::*;

use super::{ascending_ids, new_id, new_image};
use crate::support::store::open_test_store;

/// `len` pseudo-random bytes (xorshift64*), different for each `seed`, so a truncated, reordered or
/// re-encoded blob cannot compare equal by accident.
fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

#[actix_web::test]
async fn an_image_reads_back_without_its_bytes_and_its_png_byte_for_byte() {
    let (store, _dir) = open_test_store().await;
    let image = new_image(&new_id(), "a lighthouse at dusk, oil on canvas", 1024, 768);
    let png = pseudo_random_bytes(100 * 1024 + 7, 1);
    store.insert_image(&image, &png).await.expect("insert image");

    assert_eq!(store.image(&image.id).await.unwrap(), Some(image.clone()), "the record");
    let stored = store.image_png(&image.id).await.unwrap().expect("the bytes exist");
    assert_eq!(stored.len(), png.len(), "the byte count");
    assert!(stored == png, "the bytes are identical");

    let empty = new_image(&image.user_id, "", 1, 1);
    store.insert_image(&empty, &[]).await.expect("insert an image with no bytes");
    assert_eq!(store.image_png(&empty.id).await.unwrap(), Some(Vec::new()), "empty bytes stay empty");

    assert_eq!(store.image("no-such-image").await.unwrap(), None, "unknown id: no record");
    assert_eq!(store.image_png("no-such-image").await.unwrap(), None, "unknown id: no bytes");
}

#[actix_web::test]
async fn images_of_pages_a_users_own_images_newest_first() {
    let (store, _dir) = open_test_store().await;
    let (alice, bob) = (new_id(), new_id());
    let mut alices = Vec::new();
    for (i, id) in ascending_ids(5).into_iter().enumerate() {
        let image = Image { id, ..new_image(&alice, &format!("prompt {i}"), 256 << (i % 3), 512) };
        store.insert_image(&image, &pseudo_random_bytes(1000 + i, i as u64)).await.expect("insert image");
        alices.push(image);
        // Bob's images interleave with Alice's in id order, so a missing owner filter shows.
        store.insert_image(&new_image(&bob, "bob's", 64, 64), b"\x89PNG").await.expect("insert image");
    }
    let newest_first: Vec<Image> = alices.iter().rev().cloned().collect();

    let page1 = store.images_of(&alice, None, 2).await.unwrap();
    assert_eq!(page1, newest_first[0..2], "first page: the two newest, whole records");
    let page2 = store.images_of(&alice, Some(&page1[1].id), 2).await.unwrap();
    assert_eq!(page2, newest_first[2..4], "second page");
    let page3 = store.images_of(&alice, Some(&page2[1].id), 2).await.unwrap();
    assert_eq!(page3, newest_first[4..5], "last page: the oldest");
    let page4 = store.images_of(&alice, Some(&page3[0].id), 2).await.unwrap();
    assert_eq!(page4, Vec::<Image>::new(), "nothing older");

    assert_eq!(store.images_of(&alice, None, 100).await.unwrap(), newest_first, "all of alice's images");
    let bobs = store.images_of(&bob, None, 100).await.unwrap();
    assert_eq!(bobs.len(), 5, "bob's five images");
    assert!(bobs.iter().all(|i| i.user_id == bob), "only bob's");
    assert_eq!(
        store.images_of(&new_id(), None, 10).await.unwrap(),
        Vec::<Image>::new(),
        "a user without images"
    );
}

#[actix_web::test]
async fn a_deleted_image_loses_its_record_and_its_bytes_and_others_stay() {
    let (store, _dir) = open_test_store().await;
    let user = new_id();
    let gone = new_image(&user, "to delete", 256, 256);
    let kept = new_image(&user, "to keep", 256, 256);
    store.insert_image(&gone, &pseudo_random_bytes(1024, 2)).await.unwrap();
    store.insert_image(&kept, &pseudo_random_bytes(1024, 3)).await.unwrap();

    assert!(store.delete_image(&gone.id).await.unwrap(), "the image is deleted");
    assert_eq!(store.image(&gone.id).await.unwrap(), None, "no record");
    assert_eq!(store.image_png(&gone.id).await.unwrap(), None, "no bytes");
    assert_eq!(
        store.images_of(&user, None, 10).await.unwrap(),
        std::slice::from_ref(&kept),
        "the other image stays"
    );
    assert!(store.image_png(&kept.id).await.unwrap().is_some(), "with its bytes");
    assert!(!store.delete_image(&gone.id).await.unwrap(), "a second delete finds nothing");
}
