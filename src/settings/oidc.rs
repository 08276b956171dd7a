//! Single sign-on settings: the OpenID Connect providers (`[[auth.oidc]]`) and the checks that
//! refuse a provider the server could not use safely.

use serde::Deserialize;

use super::{AuthSettings, Env, Secret};

/// One OpenID Connect provider (Google, Microsoft Entra ID, Keycloak, any conformant issuer).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OidcProvider {
    /// In URLs (`/auth/oidc/{name}/start`): lowercase letters, digits, `-` and `_`.
    pub name: String,
    /// What the sign-in button says (the name when unset).
    #[serde(default)]
    pub label: Option<String>,
    /// The issuer; discovery reads `{issuer}/.well-known/openid-configuration`, and every
    /// `id_token` must name exactly this issuer.
    pub issuer: String,
    pub client_id: String,
    /// The client secret, in the file...
    #[serde(default)]
    pub client_secret: Option<Secret>,
    /// ... or, better, the name of the environment variable that holds it.
    #[serde(default)]
    pub client_secret_env: Option<String>,
    /// Scopes asked for; `openid` is always asked for.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// Allow a plain `http://` issuer that is not on loopback (loopback is always allowed, for
    /// tests and local providers). Anything else must be `https://`.
    #[serde(default)]
    pub allow_http: bool,
}

fn default_scopes() -> Vec<String> {
    ["openid", "email", "profile"].map(String::from).to_vec()
}

impl OidcProvider {
    /// What the sign-in button says.
    pub fn label(&self) -> &str {
        self.label.as_deref().unwrap_or(&self.name)
    }

    /// Read `client_secret_env` into `client_secret`.
    fn apply_env(&mut self, env: &dyn Env) -> anyhow::Result<()> {
        if let Some(var) = &self.client_secret_env {
            let value = env.var(var).ok_or_else(|| {
                anyhow::anyhow!(
                    "auth.oidc provider {:?}: client_secret_env names {var}, which is not set",
                    self.name
                )
            })?;
            self.client_secret = Some(Secret::new(value));
        }
        Ok(())
    }

    fn validate(&self) -> anyhow::Result<()> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 32
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !name_ok {
            anyhow::bail!(
                "auth.oidc name {:?} must be 1-32 lowercase letters, digits, '-' or '_'",
                self.name
            );
        }
        if self.client_id.is_empty() {
            anyhow::bail!("auth.oidc provider {:?} has no client_id", self.name);
        }
        if !issuer_allowed(&self.issuer, self.allow_http) {
            anyhow::bail!(
                "auth.oidc provider {:?}: issuer {:?} must be an https:// URL (http:// only on \
                 loopback, or with allow_http = true)",
                self.name,
                self.issuer
            );
        }
        Ok(())
    }
}

/// Whether a provider URL may be used: `https://`, or `http://` on a loopback address (or
/// anywhere with `allow_http`).
pub fn issuer_allowed(url: &str, allow_http: bool) -> bool {
    let Ok(url) = reqwest::Url::parse(url) else {
        return false;
    };
    match url.scheme() {
        "https" => url.host().is_some(),
        "http" => {
            allow_http
                || url.host_str().is_some_and(|h| {
                    let h = h.trim_start_matches('[').trim_end_matches(']');
                    h.eq_ignore_ascii_case("localhost")
                        || h.parse::<std::net::IpAddr>()
                            .is_ok_and(|ip| ip.is_loopback())
                })
        }
        _ => false,
    }
}

/// Check the providers together: each valid, names unique, and some way to sign in left.
pub(super) fn validate(providers: &[OidcProvider], password_login: bool) -> anyhow::Result<()> {
    for (i, p) in providers.iter().enumerate() {
        p.validate()?;
        if providers[..i].iter().any(|q| q.name == p.name) {
            anyhow::bail!("auth.oidc: two providers are named {:?}", p.name);
        }
    }
    if !password_login && providers.is_empty() {
        anyhow::bail!(
            "password login is off (auth.password_login = false / EMERGENCE_PASSWORD_LOGIN=off) \
             but no auth.oidc provider is configured: nobody could sign in"
        );
    }
    Ok(())
}

/// `EMERGENCE_PASSWORD_LOGIN`, `EMERGENCE_PUBLIC_URL`, and each provider's `client_secret_env`.
pub(super) fn apply_env(auth: &mut AuthSettings, env: &dyn Env) -> anyhow::Result<()> {
    if let Some(v) = env.var("EMERGENCE_PASSWORD_LOGIN") {
        auth.password_login = parse_switch("EMERGENCE_PASSWORD_LOGIN", &v)?;
    }
    if let Some(v) = env.var("EMERGENCE_PUBLIC_URL") {
        auth.public_url = Some(v.trim().trim_end_matches('/').to_string());
    }
    for provider in &mut auth.oidc {
        provider.apply_env(env)?;
    }
    Ok(())
}

/// `EMERGENCE_PASSWORD_LOGIN`: `on`/`off` (or `true`/`false`, `1`/`0`).
fn parse_switch(key: &str, v: &str) -> anyhow::Result<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "1" | "yes" => Ok(true),
        "off" | "false" | "0" | "no" => Ok(false),
        _ => anyhow::bail!("{key} must be on or off (got {v:?})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct OneVar;
    impl Env for OneVar {
        fn var(&self, key: &str) -> Option<String> {
            (key == "KC_SECRET").then(|| "s3cret".to_string())
        }
    }

    fn provider(name: &str, issuer: &str) -> OidcProvider {
        OidcProvider {
            name: name.into(),
            label: None,
            issuer: issuer.into(),
            client_id: "emergence".into(),
            client_secret: None,
            client_secret_env: None,
            scopes: default_scopes(),
            allow_http: false,
        }
    }

    #[test]
    fn issuers_must_be_https_except_on_loopback() {
        assert!(issuer_allowed("https://accounts.google.com", false));
        assert!(issuer_allowed("http://127.0.0.1:8080", false));
        assert!(issuer_allowed("http://[::1]:8080/realms/x", false));
        assert!(issuer_allowed("http://localhost:8080", false));
        assert!(!issuer_allowed("http://sso.example.com", false));
        assert!(issuer_allowed("http://sso.internal", true));
        assert!(!issuer_allowed("ftp://sso.example.com", true));
        assert!(!issuer_allowed("not a url", true));
        assert!(!issuer_allowed("http://127.0.0.1.evil.example", false));
    }

    #[test]
    fn providers_are_checked_together() {
        let ok = provider("keycloak", "https://sso.example.com/realms/a");
        assert!(validate(std::slice::from_ref(&ok), true).is_ok());
        assert!(
            validate(&[ok.clone(), ok.clone()], true).is_err(),
            "same name twice"
        );
        assert!(validate(&[provider("Key Cloak", "https://x.example")], true).is_err());
        assert!(validate(&[provider("plain", "http://sso.example.com")], true).is_err());
        assert!(
            validate(&[], false).is_err(),
            "password login off and no provider"
        );
        assert!(validate(&[ok], false).is_ok());
    }

    #[test]
    fn switches_and_secrets_come_from_the_environment() {
        let mut auth = AuthSettings::default();
        let mut p = provider("kc", "https://sso.example.com");
        p.client_secret_env = Some("KC_SECRET".into());
        auth.oidc.push(p);
        apply_env(&mut auth, &OneVar).unwrap();
        assert_eq!(
            auth.oidc[0].client_secret.as_ref().unwrap().expose(),
            "s3cret"
        );
        auth.oidc[0].client_secret_env = Some("MISSING".into());
        assert!(
            apply_env(&mut auth, &OneVar).is_err(),
            "a named variable must be set"
        );
        for (v, want) in [("off", false), ("ON", true), ("false", false), ("1", true)] {
            assert_eq!(parse_switch("X", v).unwrap(), want);
        }
        assert!(parse_switch("X", "maybe").is_err());
    }
}
