//! Secret newtypes: their `Debug` prints `[redacted]`, they have no `Display`, and equality is
//! constant-time. Read the value only where it goes on the wire, through [`expose`](AppSecret::expose).

use subtle::ConstantTimeEq;

macro_rules! secret_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name(String);

        impl $name {
            /// Wraps a secret value.
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            /// The secret itself.
            ///
            /// # Security warning
            /// Put it only on the wire to DingTalk or into the key-value store; never into a
            /// response, a log line, an error message or a URL that is logged.
            pub fn expose(&self) -> &str {
                &self.0
            }

            /// Constant-time comparison with an untrusted candidate.
            pub fn matches(&self, candidate: &str) -> bool {
                self.0.len() == candidate.len()
                    && bool::from(self.0.as_bytes().ct_eq(candidate.as_bytes()))
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($name), "([redacted])"))
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.matches(&other.0)
            }
        }

        impl Eq for $name {}
    };
}

secret_type!(
    /// The DingTalk app's AppSecret (Client Secret).
    AppSecret
);
secret_type!(
    /// The organisation's SSOsecret, for admin-backend free login.
    SsoSecret
);
secret_type!(
    /// A DingTalk access token (app token, SSO token or user token).
    AccessToken
);
secret_type!(
    /// The event subscription's signing token.
    EventToken
);
secret_type!(
    /// The event subscription's 43-character EncodingAESKey.
    EventAesKey
);
secret_type!(
    /// The bearer token the platform presents to the plugin's API (R7).
    PlatformToken
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        assert_eq!(
            format!("{:?}", AppSecret::new("s3cr3t")),
            "AppSecret([redacted])"
        );
        assert_eq!(
            format!("{:?}", SsoSecret::new("x")),
            "SsoSecret([redacted])"
        );
        assert_eq!(
            format!("{:?}", AccessToken::new("tok")),
            "AccessToken([redacted])"
        );
        assert_eq!(
            format!("{:?}", EventToken::new("t")),
            "EventToken([redacted])"
        );
        assert_eq!(
            format!("{:?}", EventAesKey::new("k")),
            "EventAesKey([redacted])"
        );
        assert_eq!(
            format!("{:?}", PlatformToken::new("p")),
            "PlatformToken([redacted])"
        );
        assert!(!format!("{:?}", Some(AppSecret::new("s3cr3t"))).contains("s3cr3t"));
    }

    #[test]
    fn matches_is_exact() {
        let t = PlatformToken::new("abcdef");
        assert!(t.matches("abcdef"));
        assert!(!t.matches("abcdeF"));
        assert!(!t.matches("abcde"));
        assert!(!t.matches(""));
        assert_eq!(t, PlatformToken::new("abcdef"));
        assert_ne!(t, PlatformToken::new("abcdeg"));
    }
}
