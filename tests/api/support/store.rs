//! The store under test, as `SWITCHBOARD_TEST_STORE` selects it: opened in this process for the
//! store contract, or named in the environment of a server process.

use std::sync::Arc;

use switchboard::store::DynStore;
use switchboard::store::mongo::MongoStore;
use switchboard::store::sqlite::SqliteStore;
use tempfile::TempDir;

/// Which store the suite runs against.
pub enum TestStore {
    /// The embedded SQLite store.
    Sqlite,
    /// MongoDB (FerretDB in CI) at this URI.
    Mongo(String),
}

/// The store chosen by the environment; a missing MongoDB URI is an error, never a silent skip.
pub fn test_store() -> TestStore {
    match std::env::var("SWITCHBOARD_TEST_STORE").as_deref() {
        Ok("mongo") => TestStore::Mongo(
            std::env::var("SWITCHBOARD_TEST_MONGODB_URI")
                .expect("SWITCHBOARD_TEST_STORE=mongo needs SWITCHBOARD_TEST_MONGODB_URI"),
        ),
        Ok("sqlite") | Err(_) => TestStore::Sqlite,
        Ok(other) => panic!("unknown SWITCHBOARD_TEST_STORE {other:?}"),
    }
}

/// A database name no other test uses.
pub fn fresh_database_name() -> String {
    format!("sb_test_{}", uuid::Uuid::new_v4().simple())
}

/// Opens an empty store of the selected kind; the temp dir (SQLite only) must outlive the store.
pub async fn open_test_store() -> (DynStore, Option<TempDir>) {
    match test_store() {
        TestStore::Sqlite => {
            let dir = TempDir::new().expect("temp dir");
            let store = SqliteStore::open(dir.path()).expect("the SQLite store opens");
            (Arc::new(store), Some(dir))
        }
        TestStore::Mongo(uri) => {
            let store =
                MongoStore::connect(&uri, &fresh_database_name()).await.expect("the MongoDB store connects");
            (Arc::new(store), None)
        }
    }
}

/// Environment that selects the store under test for a server process; MongoDB gets a fresh
/// database, SQLite needs nothing.
pub fn store_env() -> Vec<(String, String)> {
    match test_store() {
        TestStore::Sqlite => Vec::new(),
        TestStore::Mongo(uri) => mongo_env(&uri),
    }
}

/// Environment that points a server process at the MongoDB at `uri`, in a fresh database.
pub fn mongo_env(uri: &str) -> Vec<(String, String)> {
    vec![("MONGODB_URI".into(), uri.into()), ("MONGODB_DB".into(), fresh_database_name())]
}
