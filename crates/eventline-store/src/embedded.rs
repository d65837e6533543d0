//! The engine serving as a `Store`: each call is the engine's own operation, its errors
//! the store's.

use async_trait::async_trait;
use eventline_core::cursor::StreamCursor;
use eventline_core::properties::{Properties, PropertyValues};
use eventline_core::query::{Filter, Page, PageQuery};
use eventline_core::stats::{StatsQuery, StatsRow};
use eventline_log::LogStore;

use crate::{Error, Outcome, Store, StreamChunk, Submission};

#[async_trait]
impl Store for LogStore {
    async fn append(&self, submissions: Vec<Submission>) -> Result<Vec<Outcome>, Error> {
        Ok(LogStore::append(self, submissions).await?)
    }

    async fn page(&self, query: PageQuery) -> Result<Page, Error> {
        Ok(LogStore::page(self, query).await?)
    }

    async fn stream(
        &self,
        filter: &Filter,
        after: StreamCursor,
        limit: u32,
    ) -> Result<StreamChunk, Error> {
        Ok(LogStore::stream(self, filter, after, limit).await?)
    }

    async fn stream_head(&self) -> Result<StreamCursor, Error> {
        Ok(LogStore::stream_head(self).await?)
    }

    async fn check(&self) -> Result<(), Error> {
        Ok(LogStore::check(self).await?)
    }

    async fn erase_contact(&self, contact_id: &str, suppress: bool) -> Result<u64, Error> {
        Ok(LogStore::erase_contact(self, contact_id, suppress).await?)
    }

    async fn unsuppress_contact(&self, contact_id: &str) -> Result<bool, Error> {
        Ok(LogStore::unsuppress_contact(self, contact_id).await?)
    }

    async fn delete_before(&self, cutoff_ms: i64, limit: u32) -> Result<u64, Error> {
        Ok(LogStore::delete_before(self, cutoff_ms, limit).await?)
    }

    async fn stats(&self, query: StatsQuery) -> Result<Vec<StatsRow>, Error> {
        Ok(LogStore::stats(self, query).await?)
    }

    async fn event_types(&self) -> Result<Vec<(String, u64)>, Error> {
        Ok(LogStore::event_types(self).await?)
    }

    async fn properties(&self, event_type: Option<&str>) -> Result<Properties, Error> {
        LogStore::properties(self, event_type)
            .await
            .map_err(Error::from)
    }

    async fn property_values(
        &self,
        keys: &[String],
        limit: usize,
    ) -> Result<PropertyValues, Error> {
        LogStore::property_values(self, keys, limit)
            .await
            .map_err(Error::from)
    }

    async fn maintain(&self) -> Result<(), Error> {
        Ok(LogStore::maintain(self).await?)
    }

    fn maintain_interval(&self) -> std::time::Duration {
        LogStore::maintain_interval(self)
    }
}
