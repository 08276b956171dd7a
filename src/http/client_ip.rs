//! The client's IP address: the socket peer, or the right-most untrusted `X-Forwarded-For` hop
//! when the server is configured to sit behind N trusted proxies (Cloud Run: 1).

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;

/// Resolve the client IP from the peer address and headers.
pub fn client_ip(peer: SocketAddr, headers: &HeaderMap, trusted_proxies: usize) -> IpAddr {
    if trusted_proxies == 0 {
        return peer.ip();
    }
    // Hops appended by proxies, in order; the last `trusted_proxies - 1` were added by our own
    // proxies' upstreams... The peer itself is the nearest trusted proxy, so the right-most
    // `trusted_proxies - 1` entries are trusted too and the next one to the left is the client.
    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| parse_hop(s.trim()))
        .collect();
    let skip = trusted_proxies - 1;
    if hops.len() > skip {
        hops[hops.len() - 1 - skip]
    } else {
        hops.first().copied().unwrap_or(peer.ip())
    }
}

/// One `X-Forwarded-For` hop: an address, or an address with a port as some proxies write it
/// (`203.0.113.9:4711`, `[2001:db8::1]:443`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

/// Extractor for the client IP (socket peer, or per the trusted-proxy setting).
pub struct ClientIp(pub IpAddr);

impl axum::extract::FromRequestParts<crate::state::AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &crate::state::AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<SocketAddr>>()
            .map(|c| c.0)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        Ok(ClientIp(client_ip(
            peer,
            &parts.headers,
            state.settings.limits.trusted_proxies,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", xff.parse().unwrap());
        h
    }

    #[test]
    fn untrusted_headers_are_ignored() {
        let peer: SocketAddr = "10.0.0.1:1".parse().unwrap();
        assert_eq!(client_ip(peer, &headers("1.2.3.4"), 0), peer.ip());
    }

    #[test]
    fn hops_with_ports_are_read_as_their_address() {
        let peer: SocketAddr = "10.0.0.1:1".parse().unwrap();
        let ip = client_ip(peer, &headers("6.6.6.6, 203.0.113.9:4711"), 1);
        assert_eq!(ip, "203.0.113.9".parse::<IpAddr>().unwrap());
        let ip = client_ip(peer, &headers("[2001:db8::1]:443"), 1);
        assert_eq!(ip, "2001:db8::1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn one_trusted_proxy_uses_the_last_hop() {
        let peer: SocketAddr = "10.0.0.1:1".parse().unwrap();
        let ip = client_ip(peer, &headers("6.6.6.6, 1.2.3.4"), 1);
        assert_eq!(ip, "1.2.3.4".parse::<IpAddr>().unwrap());
    }
}
