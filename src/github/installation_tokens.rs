//! Installation access tokens, cached per installation and scope (one repository, one
//! permission) and renewed before they expire.
//!
//! A token lasts an hour and a build can outlive one, so every call asks the cache, which
//! hands out the cached token only while a good part of its life is left.

use std::collections::HashMap;
use std::time::Duration;

use time::OffsetDateTime;

use super::token_scope::TokenScope;
use crate::secret::Secret;

/// The most of a token's life left unused: it is renewed this long before it expires.
const MAX_RENEWAL_MARGIN: Duration = Duration::from_secs(5 * 60);

/// A token and when it stops working.
#[derive(Debug, Clone)]
pub struct InstallationToken {
    pub token: Secret,
    pub issued_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

impl InstallationToken {
    /// When it should be replaced: five minutes before it expires, or after four fifths of
    /// its life for a token that lives less than 25 minutes.
    pub fn renew_at(&self) -> OffsetDateTime {
        let life: time::Duration = (self.expires_at - self.issued_at).max(time::Duration::ZERO);
        let max_margin = time::Duration::try_from(MAX_RENEWAL_MARGIN).unwrap_or(life);
        let margin: time::Duration = (life / 5_i32).min(max_margin);
        self.expires_at - margin
    }

    /// True while it may still be handed out at `now`.
    pub fn is_fresh(&self, now: OffsetDateTime) -> bool {
        now < self.renew_at()
    }
}

/// The cache: (installation id, scope) → token.
#[derive(Debug, Default)]
pub struct TokenCache {
    tokens: HashMap<(i64, TokenScope), InstallationToken>,
}

impl TokenCache {
    /// The cached token for `scope` in `installation`, if it is still fresh at `now`.
    pub fn fresh(
        &self,
        installation: i64,
        scope: &TokenScope,
        now: OffsetDateTime,
    ) -> Option<Secret> {
        self.tokens
            .get(&(installation, scope.clone()))
            .filter(|token| token.is_fresh(now))
            .map(|token| token.token.clone())
    }

    pub fn store(&mut self, installation: i64, scope: TokenScope, token: InstallationToken) {
        let now = OffsetDateTime::now_utc();
        // Expired tokens go, so the cache stays as small as the scopes in use.
        self.tokens.retain(|_, token| now < token.expires_at);
        self.tokens.insert((installation, scope), token);
    }

    /// Drops the installation's tokens after GitHub refused one (revoked, or the
    /// installation changed), so that the next calls fetch new ones.
    pub fn forget(&mut self, installation: i64) {
        self.tokens.retain(|(id, _), _| *id != installation);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn token(issued: OffsetDateTime, life: i64) -> InstallationToken {
        InstallationToken {
            token: Secret::new("ghs_x".into()),
            issued_at: issued,
            expires_at: issued + time::Duration::seconds(life),
        }
    }

    #[test]
    fn an_hour_token_is_renewed_five_minutes_before_it_expires() {
        let issued = datetime!(2026-01-01 00:00 UTC);
        let token = token(issued, 3600);
        assert_eq!(token.renew_at(), datetime!(2026-01-01 00:55 UTC));
        assert!(token.is_fresh(datetime!(2026-01-01 00:54:59 UTC)));
        assert!(!token.is_fresh(datetime!(2026-01-01 00:55 UTC)));
    }

    #[test]
    fn a_short_token_is_renewed_after_four_fifths_of_its_life() {
        let issued = datetime!(2026-01-01 00:00 UTC);
        let token = token(issued, 10);
        assert_eq!(token.renew_at(), datetime!(2026-01-01 00:00:08 UTC));
    }

    #[test]
    fn the_cache_hands_out_only_fresh_tokens_of_the_same_scope() {
        use crate::github::token_scope::{Access, Permission};
        let issued = OffsetDateTime::now_utc();
        let read = TokenScope::new("o/a", Permission::Contents, Access::Read);
        let write = TokenScope::new("o/a", Permission::Contents, Access::Write);
        let other = TokenScope::new("o/b", Permission::Contents, Access::Read);
        let mut cache = TokenCache::default();
        cache.store(1, read.clone(), token(issued, 3600));
        assert!(cache.fresh(1, &read, issued).is_some());
        assert!(cache.fresh(1, &write, issued).is_none());
        assert!(cache.fresh(1, &other, issued).is_none());
        assert!(cache.fresh(2, &read, issued).is_none());
        assert!(
            cache
                .fresh(1, &read, issued + time::Duration::hours(1))
                .is_none()
        );
        cache.forget(1);
        assert!(cache.fresh(1, &read, issued).is_none());
    }
}
