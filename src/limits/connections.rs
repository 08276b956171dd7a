//! Open WebSockets per user and per client address: a cap checked and taken in one step before
//! the upgrade, given back when the socket's task ends. Entries exist only while sockets are
//! open, so the table is bounded by the open sockets themselves.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
};

/// Which cap a new socket would exceed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapExceeded {
    User,
    Address,
}

#[derive(Default)]
struct Open {
    users: HashMap<String, usize>,
    addresses: HashMap<IpAddr, usize>,
}

/// The caps (0 = none) and the sockets open now.
pub struct ConnectionCaps {
    per_user: usize,
    per_address: usize,
    open: Mutex<Open>,
}

/// One admitted socket; dropping it gives its place back.
pub struct ConnectionSlot {
    caps: Arc<ConnectionCaps>,
    user: Option<String>,
    address: IpAddr,
}

impl ConnectionCaps {
    pub fn new(per_user: usize, per_address: usize) -> Self {
        Self {
            per_user,
            per_address,
            open: Mutex::default(),
        }
    }

    /// Take a place for a socket from `address` (the rate-limit key: IPv6 per /64), for `user`
    /// when it is authenticated.
    pub fn admit(
        self: &Arc<Self>,
        address: IpAddr,
        user: Option<&str>,
    ) -> Result<ConnectionSlot, CapExceeded> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let from_address = open.addresses.get(&address).copied().unwrap_or(0);
        if self.per_address > 0 && from_address >= self.per_address {
            return Err(CapExceeded::Address);
        }
        if let Some(user) = user {
            let of_user = open.users.get(user).copied().unwrap_or(0);
            if self.per_user > 0 && of_user >= self.per_user {
                return Err(CapExceeded::User);
            }
            *open.users.entry(user.to_string()).or_default() += 1;
        }
        *open.addresses.entry(address).or_default() += 1;
        Ok(ConnectionSlot {
            caps: self.clone(),
            user: user.map(str::to_string),
            address,
        })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self.caps.open.lock().unwrap_or_else(|e| e.into_inner());
        release(&mut open.addresses, &self.address);
        if let Some(user) = &self.user {
            release(&mut open.users, user);
        }
    }
}

fn release<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: &K) {
    if let Some(n) = map.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            map.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_hold_per_user_and_per_address_and_places_come_back() {
        let caps = Arc::new(ConnectionCaps::new(2, 3));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let a1 = caps.admit(ip, Some("a")).unwrap();
        let _a2 = caps.admit(ip, Some("a")).unwrap();
        assert_eq!(caps.admit(ip, Some("a")).err(), Some(CapExceeded::User));
        let _b1 = caps.admit(ip, Some("b")).unwrap();
        assert_eq!(caps.admit(ip, Some("b")).err(), Some(CapExceeded::Address));
        drop(a1);
        assert!(caps.admit(ip, Some("b")).is_ok());
        let open = caps.open.lock().unwrap();
        assert_eq!(open.users["b"], 1, "the dropped slots were given back");
        assert_eq!(open.users["a"], 1);
        assert_eq!(open.addresses[&ip], 2);
    }
}
