//! Installation access tokens, cached per installation and renewed before they expire.
//!
//! A token lasts an hour and a build can outlive one, so every call asks the cache, which
//! hands out the cached token only while a good part of its life is left.

use std::collections::HashMap;
use std::time::Duration;

use time::OffsetDateTime;

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

/// The cache: installation id → token.
#[derive(Debug, Default)]
pub struct TokenCache {
    tokens: HashMap<i64, InstallationToken>,
}

impl TokenCache {
    /// The cached token for `installation`, if it is still fresh at `now`.
    pub fn fresh(&self, installation: i64, now: OffsetDateTime) -> Option<Secret> {
        self.tokens
            .get(&installation)
            .filter(|token| token.is_fresh(now))
            .map(|token| token.token.clone())
    }

    pub fn store(&mut self, installation: i64, token: InstallationToken) {
        self.tokens.insert(installation, token);
    }

    /// Drops the token GitHub refused, so that the next call fetches a new one.
    pub fn forget(&mut self, installation: i64) {
        self.tokens.remove(&installation);
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
    fn the_cache_hands_out_only_fresh_tokens() {
        let issued = datetime!(2026-01-01 00:00 UTC);
        let mut cache = TokenCache::default();
        cache.store(1, token(issued, 3600));
        assert!(cache.fresh(1, issued).is_some());
        assert!(cache.fresh(2, issued).is_none());
        assert!(cache.fresh(1, issued + time::Duration::hours(1)).is_none());
        cache.forget(1);
        assert!(cache.fresh(1, issued).is_none());
    }
}
