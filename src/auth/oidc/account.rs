//! Who an OpenID Connect identity is here: the account linked to its `(issuer, subject)`, or a
//! new one created under the registration mode and linked in the same transaction. Never by
//! e-mail: an address can change hands or be unverified, the pair cannot.

use super::client::Identity;
use crate::{
    db::{
        User,
        accounts::{self as acc, Registered, Status},
        now_ms,
        sso::SsoIdentity,
    },
    domain::Username,
    error::ApiError,
    state::AppState,
};

/// Why a verified identity may not sign in (the error page's reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    RegistrationClosed,
    InviteInvalid,
    Disabled,
}

/// A username from a provider's hints: the allowed characters of the first usable hint, cut to
/// 3-32 characters; `user` when none is usable.
pub fn username_base(hints: &[String]) -> String {
    for hint in hints {
        let cleaned: String = hint
            .chars()
            .map(|c| if c == ' ' { '.' } else { c })
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
            .take(24)
            .collect();
        let cleaned = cleaned.trim_matches(|c| matches!(c, '.' | '-' | '_'));
        if Username::parse(cleaned).is_ok() {
            return cleaned.to_string();
        }
    }
    "user".to_string()
}

/// The account for this identity, created when it has none.
pub async fn account_for(
    state: &AppState,
    provider: &str,
    identity: &Identity,
    invite_hash: Option<String>,
) -> Result<Result<User, Refusal>, ApiError> {
    let (iss, sub) = (identity.issuer.clone(), identity.subject.clone());
    let linked = state
        .db
        .run(|s| async move { s.sso_user(&iss, &sub).await })
        .await?;
    if let Some(user) = linked {
        return Ok(checked(user));
    }
    // No password signs in to this account (an admin's reset link can give it one).
    let unusable = state
        .auth
        .passwords
        .hash(acc::random_secret())
        .await
        .map_err(ApiError::Internal)?;
    let base = username_base(&identity.name_hints);
    let link = SsoIdentity {
        issuer: identity.issuer.clone(),
        subject: identity.subject.clone(),
        provider: provider.to_string(),
    };
    for attempt in 0..12u32 {
        let name = match attempt {
            0 => base.clone(),
            1..=5 => format!("{base}-{}", attempt + 1),
            _ => format!("{base}-{}", &acc::random_secret()[..6]),
        };
        let Ok(username) = Username::parse(&name) else {
            continue;
        };
        let account = acc::NewAccount {
            id: uuid::Uuid::now_v7().to_string(),
            username: username.as_str().to_string(),
            key: username.key(),
            password_hash: unusable.clone(),
            mode: state.auth.settings.registration,
            invite_hash: invite_hash.clone(),
            admin: false,
            now: now_ms(),
        };
        let link = link.clone();
        let outcome = state
            .db
            .run(|s| async move { s.register_sso_user(&account, &link).await })
            .await?;
        match outcome {
            Registered::Created(a) => {
                return Ok(Ok(User {
                    id: a.id,
                    username: a.username,
                    password_hash: unusable,
                    role: a.role,
                    status: a.status,
                }));
            }
            Registered::Closed => return Ok(Err(Refusal::RegistrationClosed)),
            Registered::InviteInvalid => return Ok(Err(Refusal::InviteInvalid)),
            Registered::Taken => {
                // The name is taken, or the identity was linked meanwhile.
                let (iss, sub) = (identity.issuer.clone(), identity.subject.clone());
                let linked = state
                    .db
                    .run(|s| async move { s.sso_user(&iss, &sub).await })
                    .await?;
                if let Some(user) = linked {
                    return Ok(checked(user));
                }
            }
        }
    }
    Err(ApiError::Conflict(
        "no free username for this account; try again".into(),
    ))
}

fn checked(user: User) -> Result<User, Refusal> {
    if user.status == Status::Disabled {
        Err(Refusal::Disabled)
    } else {
        Ok(user)
    }
}

#[cfg(test)]
mod tests {
    use super::username_base;

    #[test]
    fn usernames_come_from_the_first_usable_hint() {
        let h = |v: &[&str]| username_base(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(h(&["Ada Lovelace"]), "Ada.Lovelace");
        assert_eq!(h(&["é", "ada"]), "ada");
        assert_eq!(h(&["ada@example.com"]), "adaexample.com");
        assert_eq!(h(&["x", "--"]), "user");
        assert_eq!(h(&[]), "user");
        assert_eq!(h(&["a".repeat(40).as_str()]).len(), 24);
    }
}
