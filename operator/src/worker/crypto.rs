//! The keyed primitives of de-identification and linkage: HMAC-SHA256 and HMAC-SM3 (GB/T 32905)
//! for cryptoHash, link and dateShift; AES-256-GCM and SM4-GCM (GB/T 32907) for encrypt.
//!
//! Keys come only from Secret files. A key file holds hex (preferred: 64 hex digits for 32
//! bytes) or raw bytes; the key schedule is computed once per run and cloned per value.

use aes_gcm::AesGcm;
use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{Aead, KeyInit};
use base64::Engine;
use hmac::{Hmac, Mac};
use ring::rand::SecureRandom;
use sm3::Sm3;
use sm4::Sm4;
use std::sync::atomic::{AtomicU64, Ordering};

use super::secrets::SecretValue;
use crate::api::deidentify::{CipherAlgorithm, HashAlgorithm};

/// What went wrong with a key or a cipher.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    /// The key has the wrong length for the algorithm.
    #[error("{what} must be {expected} bytes (or {} hex digits), got {got} bytes", expected * 2)]
    KeyLength {
        /// Which key (`key encryption-key of Secret lab-deid-keys`).
        what: String,
        /// The length the algorithm needs.
        expected: usize,
        /// The length found.
        got: usize,
    },
    /// The system random generator failed.
    #[error("the system random number generator failed")]
    Random,
    /// A ciphertext is not one this module wrote, or the key is wrong.
    #[error("ciphertext cannot be decrypted with this key")]
    Decrypt,
}

/// Turns a key file's content into key bytes: trimmed hex (even length, at least 32 digits)
/// is decoded; anything else is used as it is.
pub fn key_bytes(secret: &SecretValue) -> Vec<u8> {
    let raw = secret.expose();
    if let Ok(text) = std::str::from_utf8(raw) {
        let t = text.trim();
        if t.len() >= 32
            && t.len() % 2 == 0
            && t.bytes().all(|b| b.is_ascii_hexdigit())
            && let Some(bytes) = decode_hex(t)
        {
            return bytes;
        }
        return t.as_bytes().to_vec();
    }
    raw.to_vec()
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    push_hex(bytes, &mut s);
    s
}

/// Appends the lower-case hex of bytes to `out`.
pub fn push_hex(bytes: &[u8], out: &mut String) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    // Digits go out 32 at a time through one `push_str`: pushing them one `char` at a time
    // showed in profiles, since every tag of every hashed value passes here.
    for chunk in bytes.chunks(16) {
        let mut digits = [0u8; 32];
        for (pair, b) in digits.chunks_exact_mut(2).zip(chunk) {
            pair[0] = DIGITS[usize::from(b >> 4)];
            pair[1] = DIGITS[usize::from(b & 15)];
        }
        let used = &digits[..chunk.len() * 2];
        out.push_str(std::str::from_utf8(used).unwrap_or_default());
    }
}

fn decode_hex(t: &str) -> Option<Vec<u8>> {
    (0..t.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(t.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A keyed hash with its key schedule precomputed.
#[derive(Clone)]
pub struct KeyedHash {
    /// Numbers this key for the thread's tag memo ([`super::tag_memo`]); clones share it, since
    /// they hash alike.
    id: u64,
    mac: Mac256,
}

#[derive(Clone)]
enum Mac256 {
    /// HMAC-SHA256 (ring).
    Sha256(ring::hmac::Key),
    /// HMAC-SM3.
    Sm3(Box<Hmac<Sm3>>),
}

impl std::fmt::Debug for KeyedHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.mac {
            Mac256::Sha256(_) => f.write_str("KeyedHash(HMAC-SHA256, <key redacted>)"),
            Mac256::Sm3(_) => f.write_str("KeyedHash(HMAC-SM3, <key redacted>)"),
        }
    }
}

impl KeyedHash {
    /// Prepares a keyed hash; `what` names the key in errors. HMAC takes keys of any length,
    /// but an empty key is refused.
    pub fn new(algorithm: HashAlgorithm, key: &[u8], what: &str) -> Result<Self, CryptoError> {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let too_short = || CryptoError::KeyLength {
            what: what.to_string(),
            expected: 16,
            got: key.len(),
        };
        if key.is_empty() {
            return Err(too_short());
        }
        let mac = match algorithm {
            HashAlgorithm::HmacSha256 => {
                Mac256::Sha256(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key))
            }
            HashAlgorithm::HmacSm3 => {
                let mac = <Hmac<Sm3> as KeyInit>::new_from_slice(key).map_err(|_| too_short())?;
                Mac256::Sm3(Box::new(mac))
            }
        };
        Ok(KeyedHash {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            mac,
        })
    }

    /// The 32-byte tag of `data`, from this thread's memo when `data` was hashed lately.
    pub fn tag(&self, data: &[u8]) -> [u8; 32] {
        super::tag_memo::tag_with(self.id, data, || self.compute_tag(data))
    }

    fn compute_tag(&self, data: &[u8]) -> [u8; 32] {
        let mut out = [0u8; 32];
        match &self.mac {
            Mac256::Sha256(k) => out.copy_from_slice(ring::hmac::sign(k, data).as_ref()),
            Mac256::Sm3(mac) => {
                let mut m = (**mac).clone();
                m.update(data);
                out.copy_from_slice(&m.finalize().into_bytes());
            }
        }
        out
    }

    /// Appends the tag of `data` as 64 lower-case hex digits to `out`.
    pub fn push_hex_tag(&self, data: &[u8], out: &mut String) {
        push_hex(&self.tag(data), out);
    }

    /// A number in `-max..=max` derived from `data`: the same data always gives the same one.
    pub fn offset(&self, data: &[u8], max: u32) -> i64 {
        let t = self.tag(data);
        let mut first = [0u8; 8];
        first.copy_from_slice(&t[..8]);
        let n = u64::from_be_bytes(first);
        let span = 2 * u64::from(max) + 1;
        (n % span) as i64 - i64::from(max)
    }

    /// A fraction in `[-1, 1]` derived from `data`.
    pub fn unit(&self, data: &[u8]) -> f64 {
        let t = self.tag(data);
        let mut first = [0u8; 8];
        first.copy_from_slice(&t[..8]);
        let n = u64::from_be_bytes(first) >> 11; // 53 bits
        (n as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }
}

/// A cipher for the `encrypt` method.
#[derive(Clone)]
pub enum Cipher {
    /// AES-256-GCM (ring).
    Aes256(std::sync::Arc<ring::aead::LessSafeKey>),
    /// SM4-GCM.
    Sm4(Box<AesGcm<Sm4, U12>>),
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cipher(<key redacted>)")
    }
}

/// Nonce length of both GCM ciphers.
const NONCE: usize = 12;

impl Cipher {
    /// Prepares a cipher; `what` names the key in errors.
    pub fn new(algorithm: CipherAlgorithm, key: &[u8], what: &str) -> Result<Self, CryptoError> {
        let expected = match algorithm {
            CipherAlgorithm::Aes256Gcm => 32,
            CipherAlgorithm::Sm4Gcm => 16,
        };
        if key.len() != expected {
            return Err(CryptoError::KeyLength {
                what: what.to_string(),
                expected,
                got: key.len(),
            });
        }
        Ok(match algorithm {
            CipherAlgorithm::Aes256Gcm => {
                let unbound =
                    ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, key).map_err(|_| {
                        CryptoError::KeyLength {
                            what: what.to_string(),
                            expected,
                            got: key.len(),
                        }
                    })?;
                Cipher::Aes256(std::sync::Arc::new(ring::aead::LessSafeKey::new(unbound)))
            }
            CipherAlgorithm::Sm4Gcm => {
                let c = <AesGcm<Sm4, U12> as KeyInit>::new_from_slice(key).map_err(|_| {
                    CryptoError::KeyLength {
                        what: what.to_string(),
                        expected,
                        got: key.len(),
                    }
                })?;
                Cipher::Sm4(Box::new(c))
            }
        })
    }

    /// Encrypts with a fresh random nonce; returns base64 of `nonce ‖ ciphertext ‖ tag`.
    pub fn encrypt(&self, plaintext: &[u8]) -> Result<String, CryptoError> {
        let mut nonce = [0u8; NONCE];
        ring::rand::SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| CryptoError::Random)?;
        let mut out = nonce.to_vec();
        match self {
            Cipher::Aes256(k) => {
                let mut buf = plaintext.to_vec();
                k.seal_in_place_append_tag(
                    ring::aead::Nonce::assume_unique_for_key(nonce),
                    ring::aead::Aad::empty(),
                    &mut buf,
                )
                .map_err(|_| CryptoError::Random)?;
                out.extend_from_slice(&buf);
            }
            Cipher::Sm4(c) => {
                let ct = c
                    .encrypt(&aes_gcm::Nonce::<U12>::from(nonce), plaintext)
                    .map_err(|_| CryptoError::Random)?;
                out.extend_from_slice(&ct);
            }
        }
        Ok(base64::engine::general_purpose::STANDARD.encode(out))
    }

    /// Reverses [`Cipher::encrypt`].
    pub fn decrypt(&self, encoded: &str) -> Result<Vec<u8>, CryptoError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| CryptoError::Decrypt)?;
        if bytes.len() < NONCE + 16 {
            return Err(CryptoError::Decrypt);
        }
        let mut nonce = [0u8; NONCE];
        nonce.copy_from_slice(&bytes[..NONCE]);
        match self {
            Cipher::Aes256(k) => {
                let mut buf = bytes[NONCE..].to_vec();
                let plain = k
                    .open_in_place(
                        ring::aead::Nonce::assume_unique_for_key(nonce),
                        ring::aead::Aad::empty(),
                        &mut buf,
                    )
                    .map_err(|_| CryptoError::Decrypt)?;
                Ok(plain.to_vec())
            }
            Cipher::Sm4(c) => c
                .decrypt(&aes_gcm::Nonce::<U12>::from(nonce), &bytes[NONCE..])
                .map_err(|_| CryptoError::Decrypt),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_sha256_matches_rfc_4231_case_2() {
        let h = KeyedHash::new(HashAlgorithm::HmacSha256, b"Jefe", "k").unwrap();
        assert_eq!(
            hex(&h.tag(b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn hmac_sm3_is_keyed_and_deterministic() {
        // SM3("abc") from GB/T 32905 checks the hash itself.
        use sm3::Digest;
        assert_eq!(
            hex(&Sm3::digest(b"abc")),
            "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
        );
        let a = KeyedHash::new(HashAlgorithm::HmacSm3, b"key-one", "k").unwrap();
        let b = KeyedHash::new(HashAlgorithm::HmacSm3, b"key-two", "k").unwrap();
        assert_eq!(a.tag(b"110105194912310020"), a.tag(b"110105194912310020"));
        assert_ne!(a.tag(b"110105194912310020"), b.tag(b"110105194912310020"));
        assert!(KeyedHash::new(HashAlgorithm::HmacSm3, b"", "k").is_err());
        assert_ne!(
            a.tag(b"x"),
            KeyedHash::new(HashAlgorithm::HmacSha256, b"key-one", "k")
                .unwrap()
                .tag(b"x")
        );
    }

    #[test]
    fn offsets_stay_in_range() {
        let h = KeyedHash::new(HashAlgorithm::HmacSha256, b"k", "k").unwrap();
        for i in 0..1000 {
            let o = h.offset(format!("p{i}").as_bytes(), 30);
            assert!((-30..=30).contains(&o));
            let u = h.unit(format!("p{i}").as_bytes());
            assert!((-1.0..=1.0).contains(&u));
        }
    }

    #[test]
    fn both_ciphers_round_trip_with_random_nonces() {
        for (alg, len) in [
            (CipherAlgorithm::Aes256Gcm, 32),
            (CipherAlgorithm::Sm4Gcm, 16),
        ] {
            let c = Cipher::new(alg, &vec![7u8; len], "k").unwrap();
            let a = c.encrypt("王小明".as_bytes()).unwrap();
            let b = c.encrypt("王小明".as_bytes()).unwrap();
            assert_ne!(a, b, "random nonce");
            assert_eq!(c.decrypt(&a).unwrap(), "王小明".as_bytes());
            let other = Cipher::new(alg, &vec![8u8; len], "k").unwrap();
            assert_eq!(other.decrypt(&a), Err(CryptoError::Decrypt));
            let err = Cipher::new(alg, &[1, 2, 3], "key e of Secret s").unwrap_err();
            assert!(
                err.to_string().contains("key e of Secret s must be"),
                "{err}"
            );
        }
    }

    #[test]
    fn key_files_may_hold_hex_or_raw_bytes() {
        let hexkey = SecretValue::new(format!("{}\n", "ab".repeat(32)).into_bytes());
        assert_eq!(key_bytes(&hexkey), vec![0xab; 32]);
        let raw = SecretValue::new(b"short passphrase\n".to_vec());
        assert_eq!(key_bytes(&raw), b"short passphrase".to_vec());
        let bin = SecretValue::new(vec![0xff, 0x00, 0x10]);
        assert_eq!(key_bytes(&bin), vec![0xff, 0x00, 0x10]);
    }
}
