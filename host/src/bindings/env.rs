use super::verge::platform::env::Host;
use crate::runtime::HostState;

impl Host for HostState {
    fn var(&mut self, name: String) -> Option<String> {
        self.worker().config.vars.get(&name).cloned()
    }

    fn secret(&mut self, name: String) -> Option<String> {
        self.worker().secrets.get(&name).cloned()
    }
}
