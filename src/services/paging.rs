//! Page sizes: every list (REST or WebSocket) takes a `limit` of 1 to 100, 50 when left out.

/// Entries of a page when the client does not say.
pub const DEFAULT_LIMIT: i64 = 50;
/// The largest page.
pub const MAX_LIMIT: i64 = 100;

/// A checked page size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLimit(i64);

/// What is wrong with a page size, said to the client.
pub const LIMIT_PROBLEM: &str = "must be 1 to 100";

impl PageLimit {
    /// `limit`, or the default; `Err` outside 1 to 100.
    pub fn new(limit: Option<i64>) -> Result<PageLimit, &'static str> {
        match limit.unwrap_or(DEFAULT_LIMIT) {
            limit @ 1..=MAX_LIMIT => Ok(PageLimit(limit)),
            _ => Err(LIMIT_PROBLEM),
        }
    }

    /// The number of entries.
    pub fn get(self) -> i64 {
        self.0
    }
}

impl Default for PageLimit {
    fn default() -> PageLimit {
        PageLimit(DEFAULT_LIMIT)
    }
}

/// A page of results and the cursor of the next one (`None` on the last page).
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The entries.
    pub items: Vec<T>,
    /// Pass as `before` for the next page.
    pub next_before: Option<String>,
}

impl<T> Page<T> {
    /// The page of `items` read with `limit`: a full page may have a successor, which starts
    /// after the last item (`cursor` names where, or `None` when nothing can follow it).
    pub fn of(items: Vec<T>, limit: PageLimit, cursor: impl Fn(&T) -> Option<String>) -> Page<T> {
        let next_before = match items.last() {
            Some(last) if items.len() as i64 == limit.get() => cursor(last),
            _ => None,
        };
        Page { items, next_before }
    }
}

/// Why a page could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    /// `before` is not a cursor this server handed out.
    #[error("is not a valid cursor")]
    BadCursor,
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_1_to_100_with_50_by_default() {
        let cases = [
            (None, Ok(50)),
            (Some(1), Ok(1)),
            (Some(100), Ok(100)),
            (Some(0), Err(())),
            (Some(101), Err(())),
        ];
        for (limit, expected) in cases {
            assert_eq!(PageLimit::new(limit).map(PageLimit::get).map_err(drop), expected, "{limit:?}");
        }
    }
}
