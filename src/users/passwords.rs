//! Password hashing: argon2id (OWASP's baseline: 19 MiB, 2 passes, 1 lane) as PHC strings.
//!
//! Each hash needs 19 MiB of working memory. Allocated per hash, that memory stays in the
//! allocator's arenas afterwards (tens of megabytes after a few logins on different threads),
//! so the working memory is kept in a pool of [`CONCURRENT_HASHES`] buffers instead, and at
//! most that many hashes run at once, on the blocking pool.

use std::sync::{Arc, Mutex};

use argon2::password_hash::{Output, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::Semaphore;

use crate::error::{Error, Result};

/// Hashes computed at the same time (and working buffers kept).
pub const CONCURRENT_HASHES: usize = 2;

const MEMORY_KIB: u32 = 19 * 1024;
const PASSES: u32 = 2;
const LANES: u32 = 1;
const OUTPUT_BYTES: usize = 32;

pub struct Passwords {
    buffers: Arc<Mutex<Vec<Vec<Block>>>>,
    permits: Semaphore,
}

impl Default for Passwords {
    fn default() -> Self {
        Self {
            buffers: Arc::new(Mutex::new(Vec::new())),
            permits: Semaphore::new(CONCURRENT_HASHES),
        }
    }
}

fn params(memory_kib: u32, passes: u32, lanes: u32) -> Result<Params> {
    Params::new(memory_kib, passes, lanes, Some(OUTPUT_BYTES))
        .map_err(|e| Error::internal(format!("argon2 parameters: {e}")))
}

/// Computes a raw argon2id hash into `out` with `memory` (grown if the parameters need more).
fn compute(
    params: &Params,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
    memory: &mut Vec<Block>,
) -> Result<()> {
    let blocks = params.block_count();
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_into_with_memory(password, salt, out, &mut memory[..blocks])
        .map_err(|e| Error::internal(format!("argon2: {e}")))
}

impl Passwords {
    /// Runs `work` on the blocking pool with a pooled working buffer.
    async fn with_memory<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Vec<Block>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| Error::internal("password hasher closed"))?;
        let buffers = self.buffers.clone();
        tokio::task::spawn_blocking(move || {
            let mut memory = buffers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop()
                .unwrap_or_default();
            let result = work(&mut memory);
            buffers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(memory);
            result
        })
        .await
        .map_err(|e| Error::internal(format!("hashing task: {e}")))?
    }

    /// Hashes a password with a fresh random salt; returns the PHC string.
    pub async fn hash(&self, password: String) -> Result<String> {
        let salt = SaltString::encode_b64(&crate::random::bytes::<16>())
            .map_err(|e| Error::internal(format!("salt: {e}")))?;
        self.with_memory(move |memory| {
            let params = params(MEMORY_KIB, PASSES, LANES)?;
            let mut salt_bytes = [0u8; 64];
            let salt_raw = salt
                .decode_b64(&mut salt_bytes)
                .map_err(|e| Error::internal(format!("salt: {e}")))?;
            let mut out = [0u8; OUTPUT_BYTES];
            compute(&params, password.as_bytes(), salt_raw, &mut out, memory)?;
            let output =
                Output::new(&out).map_err(|e| Error::internal(format!("argon2 output: {e}")))?;
            Ok(format!(
                "$argon2id$v=19$m={MEMORY_KIB},t={PASSES},p={LANES}${}${output}",
                salt.as_str()
            ))
        })
        .await
    }

    /// Whether `password` matches the PHC string `hash` (compared in constant time).
    pub async fn verify(&self, password: String, hash: String) -> Result<bool> {
        self.with_memory(move |memory| {
            let Ok(parsed) = PasswordHash::new(&hash) else {
                return Ok(false);
            };
            let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
                return Ok(false);
            };
            let Ok(stored) = Params::try_from(&parsed) else {
                return Ok(false);
            };
            let params = params(stored.m_cost(), stored.t_cost(), stored.p_cost())?;
            let mut salt_bytes = [0u8; 64];
            let Ok(salt_raw) = salt.decode_b64(&mut salt_bytes) else {
                return Ok(false);
            };
            let mut out = vec![0u8; expected.len()];
            let params = Params::new(
                params.m_cost(),
                params.t_cost(),
                params.p_cost(),
                Some(expected.len()),
            )
            .map_err(|e| Error::internal(format!("argon2 parameters: {e}")))?;
            compute(&params, password.as_bytes(), salt_raw, &mut out, memory)?;
            let computed =
                Output::new(&out).map_err(|e| Error::internal(format!("argon2 output: {e}")))?;
            // Output's equality is constant-time.
            Ok(computed == expected)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::PasswordVerifier;

    #[tokio::test]
    async fn hashes_are_standard_argon2id_and_verify() {
        let passwords = Passwords::default();
        let hash = passwords.hash("correct horse".into()).await.unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(
            passwords
                .verify("correct horse".into(), hash.clone())
                .await
                .unwrap()
        );
        assert!(
            !passwords
                .verify("wrong".into(), hash.clone())
                .await
                .unwrap()
        );
        assert!(
            !passwords
                .verify("x".into(), "not a phc string".into())
                .await
                .unwrap()
        );
        // Interoperable: the argon2 crate's own verifier accepts it.
        let parsed = PasswordHash::new(&hash).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"correct horse", &parsed)
                .is_ok()
        );
        // And we verify hashes made elsewhere (other parameters too).
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let other = argon2::password_hash::PasswordHasher::hash_password(
            &Argon2::new(
                Algorithm::Argon2id,
                Version::V0x13,
                Params::new(8192, 1, 1, None).unwrap(),
            ),
            b"pw",
            &salt,
        )
        .unwrap()
        .to_string();
        assert!(passwords.verify("pw".into(), other).await.unwrap());
        // Buffers are reused, never more than the pool size.
        assert!(passwords.buffers.lock().unwrap().len() <= CONCURRENT_HASHES);
    }
}
