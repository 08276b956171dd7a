//! The relying party's side of OpenID Connect, on the `openidconnect` crate: discovery (cached
//! per provider), the authorization request (code flow with PKCE S256, `state` and `nonce`), and
//! the code exchange with the `id_token` checks (signature against the provider's keys, issuer,
//! audience, expiry, nonce, and the access-token hash when present).
//!
//! Every request to a provider goes through one HTTP client that never follows redirects (so a
//! provider's answer cannot send the server elsewhere), and every endpoint the discovery
//! document names must pass the same URL rule as the issuer (`https://`, or `http://` on loopback
//! or with `allow_http`).

use std::time::{Duration, Instant};

use openidconnect::{
    AccessTokenHash, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
    core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata},
};
use tokio::sync::Mutex;

use crate::settings::{OidcProvider, oidc::issuer_allowed};

/// How long a discovery document (and the provider's keys) is trusted before it is read again.
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);

/// Why a sign-in at a provider failed, as the error page names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The provider cannot be reached or its discovery document is unusable.
    Unavailable,
    /// The provider refused the code (unknown, used, expired, PKCE mismatch, wrong client).
    Exchange,
    /// The `id_token` is missing or fails a check (signature, issuer, audience, expiry, nonce).
    Token,
}

/// What a verified `id_token` says about who signed in.
#[derive(Debug, Clone)]
pub struct Identity {
    pub issuer: String,
    pub subject: String,
    /// Hints for a new account's username, best first.
    pub name_hints: Vec<String>,
}

/// A started sign-in: where to send the browser and what to keep server-side.
pub struct Started {
    pub url: String,
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
}

/// One configured provider, with its cached discovery document.
pub struct Provider {
    pub settings: OidcProvider,
    metadata: Mutex<Option<(Instant, CoreProviderMetadata)>>,
}

impl Provider {
    pub fn new(settings: OidcProvider) -> Self {
        Provider {
            settings,
            metadata: Mutex::new(None),
        }
    }

    fn url_ok(&self, url: &str) -> bool {
        issuer_allowed(url, self.settings.allow_http)
    }

    /// The discovery document, read at most once per [`DISCOVERY_TTL`].
    async fn metadata(&self, http: &reqwest::Client) -> Result<CoreProviderMetadata, Failure> {
        let mut cached = self.metadata.lock().await;
        if let Some((at, meta)) = cached.as_ref()
            && at.elapsed() < DISCOVERY_TTL
        {
            return Ok(meta.clone());
        }
        let issuer = IssuerUrl::new(self.settings.issuer.clone()).map_err(|e| {
            tracing::warn!(provider = %self.settings.name, error = %e, "invalid OIDC issuer URL");
            Failure::Unavailable
        })?;
        // The crate checks that the document names exactly this issuer.
        let meta = CoreProviderMetadata::discover_async(issuer, http)
            .await
            .map_err(|e| {
                tracing::warn!(provider = %self.settings.name, error = %e, "OIDC discovery failed");
                Failure::Unavailable
            })?;
        let endpoints = [
            Some(meta.authorization_endpoint().as_str()),
            meta.token_endpoint().map(|u| u.as_str()),
            Some(meta.jwks_uri().as_str()),
        ];
        if meta.token_endpoint().is_none()
            || !endpoints.into_iter().flatten().all(|u| self.url_ok(u))
        {
            tracing::warn!(provider = %self.settings.name,
                "OIDC discovery names no token endpoint, or an endpoint that is not https");
            return Err(Failure::Unavailable);
        }
        *cached = Some((Instant::now(), meta.clone()));
        Ok(meta)
    }

    fn client(
        &self,
        meta: CoreProviderMetadata,
        redirect_uri: &str,
    ) -> Result<
        openidconnect::core::CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
        Failure,
    > {
        let redirect =
            RedirectUrl::new(redirect_uri.to_string()).map_err(|_| Failure::Unavailable)?;
        Ok(CoreClient::from_provider_metadata(
            meta,
            ClientId::new(self.settings.client_id.clone()),
            self.settings
                .client_secret
                .as_ref()
                .map(|s| ClientSecret::new(s.expose().to_string())),
        )
        .set_redirect_uri(redirect))
    }

    /// Build the authorization request.
    pub async fn start(
        &self,
        http: &reqwest::Client,
        redirect_uri: &str,
    ) -> Result<Started, Failure> {
        let meta = self.metadata(http).await?;
        let client = self.client(meta, redirect_uri)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for scope in &self.settings.scopes {
            if scope != "openid" {
                request = request.add_scope(Scope::new(scope.clone()));
            }
        }
        let (url, state, nonce) = request.url();
        Ok(Started {
            url: url.to_string(),
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
        })
    }

    /// The issuer the discovery document names (for the `iss` of the authorization response).
    pub async fn issuer(&self, http: &reqwest::Client) -> Result<String, Failure> {
        Ok(self.metadata(http).await?.issuer().to_string())
    }

    /// Exchange the code (with the PKCE verifier) and verify the `id_token` against the nonce.
    pub async fn finish(
        &self,
        http: &reqwest::Client,
        redirect_uri: &str,
        code: &str,
        pkce_verifier: &str,
        nonce: &str,
    ) -> Result<Identity, Failure> {
        let meta = self.metadata(http).await?;
        let client = self.client(meta, redirect_uri)?;
        let name = &self.settings.name;
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|_| Failure::Unavailable)?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_string()))
            .request_async(http)
            .await
            .map_err(|e| {
                tracing::warn!(provider = %name, error = %chain(&e), "OIDC code exchange refused");
                Failure::Exchange
            })?;
        let Some(id_token) = response.id_token() else {
            tracing::warn!(provider = %name, "OIDC token response without an id_token");
            return Err(Failure::Token);
        };
        let verifier = client.id_token_verifier();
        let claims = id_token
            .claims(&verifier, &Nonce::new(nonce.to_string()))
            .map_err(|e| {
                tracing::warn!(provider = %name, error = %e, "OIDC id_token refused");
                Failure::Token
            })?;
        if let Some(expected) = claims.access_token_hash() {
            let alg = id_token.signing_alg().map_err(|_| Failure::Token)?;
            let key = id_token
                .signing_key(&verifier)
                .map_err(|_| Failure::Token)?;
            let actual = AccessTokenHash::from_token(response.access_token(), alg, key)
                .map_err(|_| Failure::Token)?;
            if actual != *expected {
                tracing::warn!(provider = %name, "OIDC access token hash mismatch");
                return Err(Failure::Token);
            }
        }
        let mut name_hints = Vec::new();
        if let Some(u) = claims.preferred_username() {
            name_hints.push(u.as_str().to_string());
        }
        if let Some(e) = claims.email() {
            name_hints.push(e.as_str().split('@').next().unwrap_or("").to_string());
        }
        if let Some(n) = claims.name().and_then(|n| n.get(None)) {
            name_hints.push(n.as_str().to_string());
        }
        Ok(Identity {
            issuer: claims.issuer().as_str().to_string(),
            subject: claims.subject().as_str().to_string(),
            name_hints,
        })
    }
}

/// An error with its causes, for the log (the provider's error answer, a connection failure).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The HTTP client for providers: no redirects, bounded time.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(5))
        .build()
        .expect("the TLS backend initialises")
}
