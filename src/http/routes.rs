//! Every route the router serves, with its methods, as `http_requests_total` labels them. The
//! metrics registry exports each (route, method) at 0 from the start for the statuses alerts
//! select; tests check this table against the router (a route missing here would still be
//! counted, only from its first answer on).

/// `(route template, methods)`, as `MatchedPath` and `record_metrics` label them.
pub const ROUTES: &[(&str, &[&str])] = &[
    ("/", &["GET"]),
    ("/favicon.svg", &["GET"]),
    ("/favicon.ico", &["GET"]),
    ("/assets/{*path}", &["GET"]),
    ("/healthz", &["GET"]),
    ("/readyz", &["GET"]),
    ("/metrics", &["GET"]),
    ("/ws", &["GET"]),
    ("/api/openapi.json", &["GET"]),
    ("/api/auth/register", &["POST"]),
    ("/api/auth/login", &["POST"]),
    ("/api/auth/logout", &["POST"]),
    ("/api/me", &["GET"]),
    ("/api/auth/reset", &["POST"]),
    ("/api/me/sessions", &["GET"]),
    ("/api/me/sessions/{id}", &["DELETE"]),
    ("/api/me/password", &["POST"]),
    ("/api/me/tokens", &["GET", "POST"]),
    ("/api/me/tokens/{id}", &["DELETE"]),
    ("/api/admin/users", &["GET"]),
    ("/api/admin/users/{id}", &["PATCH"]),
    ("/api/admin/users/{id}/approve", &["POST"]),
    ("/api/admin/users/{id}/reset", &["POST"]),
    ("/api/admin/users/{id}/sessions", &["GET", "DELETE"]),
    ("/api/admin/invites", &["GET", "POST"]),
    ("/api/admin/invites/{id}", &["DELETE"]),
    ("/api/auth/options", &["GET"]),
    ("/api/auth/oidc/exchange", &["POST"]),
    ("/auth/oidc/{provider}/start", &["GET"]),
    ("/auth/oidc/{provider}/callback", &["GET"]),
    ("/api/agents", &["GET"]),
    ("/api/threads", &["GET", "POST"]),
    ("/api/threads/{id}", &["GET", "PATCH", "DELETE"]),
    ("/api/threads/{id}/members", &["GET", "POST"]),
    ("/api/threads/{id}/members/{user_id}", &["DELETE"]),
    ("/api/search", &["GET"]),
    ("/api/threads/{id}/export", &["GET"]),
    ("/api/me/export", &["GET"]),
    ("/api/import", &["POST"]),
    ("/api/threads/{id}/messages", &["GET", "POST"]),
    ("/api/threads/{id}/debate", &["POST"]),
    ("/api/threads/{id}/documents", &["GET", "POST"]),
    ("/api/threads/{id}/documents/search", &["GET"]),
    ("/api/threads/{id}/documents/{doc}", &["GET", "DELETE"]),
    ("/api/threads/{id}/documents/{doc}/file", &["GET"]),
    ("/api/threads/{id}/documents/{doc}/chunks", &["GET"]),
    ("/api/usage", &["GET"]),
    ("/api/admin/usage", &["GET"]),
    ("/api/me/budget", &["GET"]),
    ("/api/admin/budgets", &["GET", "PUT"]),
    ("/api/admin/budgets/{id}", &["PUT", "DELETE"]),
    ("/api/admin/connections", &["GET", "POST"]),
    ("/api/admin/connections/{id}", &["PATCH", "DELETE"]),
    ("/api/admin/connections/{id}/models", &["GET"]),
    ("/api/admin/agents", &["GET", "POST"]),
    ("/api/admin/agents/{id}", &["PATCH", "DELETE"]),
    ("/api/memories", &["GET", "POST", "DELETE"]),
    ("/api/memories/settings", &["GET", "PUT"]),
    ("/api/memories/{id}", &["PATCH", "DELETE"]),
];

#[cfg(test)]
mod tests {
    use super::ROUTES;

    /// Every `.route("PATH", ...)` in the sources is in the table (the integration tests check
    /// the methods against the running router).
    #[test]
    fn every_route_in_the_sources_is_in_the_table() {
        let mut found = Vec::new();
        let mut dirs = vec![std::path::PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src"
        ))];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs")
                    && !path.ends_with("http/routes.rs")
                {
                    let text = std::fs::read_to_string(&path).unwrap();
                    for (i, m) in text.match_indices(".route(") {
                        let rest = text[i + m.len()..].trim_start();
                        if let Some(rest) = rest.strip_prefix('"') {
                            let route = &rest[..rest.find('"').unwrap()];
                            found.push((route.to_string(), path.display().to_string()));
                        }
                    }
                }
            }
        }
        assert!(
            found.len() >= ROUTES.len(),
            "the scan finds the routes: {found:?}"
        );
        for (route, file) in found {
            assert!(
                ROUTES.iter().any(|(r, _)| *r == route),
                "{route} ({file}) is not in src/http/routes.rs: add it with its methods"
            );
        }
    }
}
