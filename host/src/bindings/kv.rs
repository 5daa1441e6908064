//! `verge:platform/kv`: key-value storage in the object's database.

use super::verge::platform::kv::{Host, ListOptions};
use super::verge::platform::sql::Error;
use crate::objects::KvRange;
use crate::runtime::HostState;

impl Host for HostState {
    fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.object_db()?.kv_get(&key)?)
    }

    fn put(&mut self, key: String, value: Vec<u8>) -> Result<(), Error> {
        Ok(self.object_db()?.kv_put(&key, &value)?)
    }

    fn delete(&mut self, key: String) -> Result<bool, Error> {
        Ok(self.object_db()?.kv_delete(&key)?)
    }

    fn list(&mut self, options: ListOptions) -> Result<Vec<(String, Vec<u8>)>, Error> {
        let range = KvRange {
            start: options.start,
            end: options.end,
            prefix: options.prefix,
            reverse: options.reverse,
            limit: options.limit,
        };
        Ok(self.object_db()?.kv_list(&range)?)
    }

    fn delete_all(&mut self) -> Result<(), Error> {
        Ok(self.object_db()?.kv_delete_all()?)
    }
}
