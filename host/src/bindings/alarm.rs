//! `verge:platform/alarm`: an object's alarms, in its own database (see
//! `objects/alarms/table.rs`); `objects/alarms/` fires them.

use super::verge::platform::alarm::Host;
use super::verge::platform::sql::Error;
use crate::runtime::HostState;

impl Host for HostState {
    fn set(&mut self, name: String, at: i64) -> Result<(), Error> {
        Ok(self.object_db()?.alarm_set(&name, at)?)
    }

    fn get(&mut self, name: String) -> Result<Option<i64>, Error> {
        Ok(self.object_db()?.alarm_get(&name)?)
    }

    fn delete(&mut self, name: String) -> Result<bool, Error> {
        Ok(self.object_db()?.alarm_delete(&name)?)
    }

    fn list(&mut self) -> Result<Vec<(String, i64)>, Error> {
        Ok(self.object_db()?.alarm_list()?)
    }
}
