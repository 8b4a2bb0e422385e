//! Secure randomness (the OS generator through `ring`) for tokens, ids and salts.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::{SecureRandom, SystemRandom};

/// `N` random bytes.
pub fn bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    // The OS generator only fails when the OS cannot provide randomness at all, and then no
    // token may be issued: stopping is the only safe answer.
    SystemRandom::new()
        .fill(&mut buf)
        .expect("the OS random generator failed");
    buf
}

/// A secret token: `prefix` followed by 256 random bits, base64url-encoded.
pub fn token(prefix: &str) -> String {
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes::<32>()))
}

/// A password for someone to type once and change: 20 characters, none that look alike.
pub fn password() -> String {
    string(
        b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789",
        20,
    )
}

/// A random string of `len` characters from `alphabet` (unbiased).
pub fn string(alphabet: &[u8], len: usize) -> String {
    assert!(!alphabet.is_empty() && alphabet.len() <= 256);
    // Reject bytes past the largest multiple of the alphabet size so every symbol is equally likely.
    let limit = 256 - 256 % alphabet.len();
    let mut out = String::with_capacity(len);
    while out.len() < len {
        for b in bytes::<32>() {
            if (b as usize) < limit && out.len() < len {
                out.push(alphabet[b as usize % alphabet.len()] as char);
            }
        }
    }
    out
}

/// A device id like Synapse's: ten upper-case letters.
pub fn device_id() -> String {
    string(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_and_distinct() {
        let a = token("sori_");
        let b = token("sori_");
        assert_ne!(a, b);
        assert!(a.starts_with("sori_"));
        assert_eq!(a.len(), 5 + 43);
    }

    #[test]
    fn strings_use_only_the_alphabet() {
        let s = string(b"ab", 100);
        assert_eq!(s.len(), 100);
        assert!(s.bytes().all(|c| c == b'a' || c == b'b'));
        assert!(device_id().bytes().all(|c| c.is_ascii_uppercase()));
    }
}
