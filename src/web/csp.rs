//! Inline scripts and styles with their Content-Security-Policy `'sha256-…'` sources, hashed at
//! compile time: a page costs no hashing per request (the in-app page hashed about 3 KB of
//! script and style on every view, with the component's compact SHA-256).

/// Length of `'sha256-` + 44 base64 characters + `'`.
const SOURCE_LEN: usize = 53;

/// Inline code (a `<script>` or `<style>` body) and the CSP source that pins it.
pub struct Inline {
    /// The code, placed verbatim in the page.
    pub code: &'static str,
    source: [u8; SOURCE_LEN],
}

impl Inline {
    /// Pins `code`; meant for constants, so the hash is computed by the compiler.
    pub const fn new(code: &'static str) -> Inline {
        Inline {
            code,
            source: csp_source(&sha256(code.as_bytes())),
        }
    }

    /// The CSP source, e.g. `'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='`.
    pub const fn csp_source(&self) -> &str {
        match core::str::from_utf8(&self.source) {
            Ok(s) => s,
            Err(_) => "'none'",
        }
    }
}

const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

/// Byte `i` of `data` padded as SHA-256 pads it to `padded` bytes (FIPS 180-4 §5.1.1).
const fn padded_byte(data: &[u8], i: usize, padded: usize) -> u8 {
    if i < data.len() {
        data[i]
    } else if i == data.len() {
        0x80
    } else if i >= padded - 8 {
        let bits = (data.len() as u64).wrapping_mul(8);
        (bits >> (8 * (padded - 1 - i))) as u8
    } else {
        0
    }
}

/// SHA-256 (FIPS 180-4), evaluable at compile time.
const fn sha256(data: &[u8]) -> [u8; 32] {
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let padded = (data.len() + 9).div_ceil(64) * 64;
    let mut block = 0;
    while block < padded / 64 {
        let mut w = [0u32; 64];
        let mut t = 0;
        while t < 16 {
            let at = block * 64 + t * 4;
            w[t] = u32::from_be_bytes([
                padded_byte(data, at, padded),
                padded_byte(data, at + 1, padded),
                padded_byte(data, at + 2, padded),
                padded_byte(data, at + 3, padded),
            ]);
            t += 1;
        }
        while t < 64 {
            let s0 = w[t - 15].rotate_right(7) ^ w[t - 15].rotate_right(18) ^ (w[t - 15] >> 3);
            let s1 = w[t - 2].rotate_right(17) ^ w[t - 2].rotate_right(19) ^ (w[t - 2] >> 10);
            w[t] = w[t - 16]
                .wrapping_add(s0)
                .wrapping_add(w[t - 7])
                .wrapping_add(s1);
            t += 1;
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
        let mut t = 0;
        while t < 64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[t])
                .wrapping_add(w[t]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            hh = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
            t += 1;
        }
        let add = [a, b, c, d, e, f, g, hh];
        let mut i = 0;
        while i < 8 {
            h[i] = h[i].wrapping_add(add[i]);
            i += 1;
        }
        block += 1;
    }
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 8 {
        let bytes = h[i].to_be_bytes();
        out[i * 4] = bytes[0];
        out[i * 4 + 1] = bytes[1];
        out[i * 4 + 2] = bytes[2];
        out[i * 4 + 3] = bytes[3];
        i += 1;
    }
    out
}

/// `'sha256-{base64(digest)}'` (standard alphabet, padded: RFC 4648 §4).
const fn csp_source(digest: &[u8; 32]) -> [u8; SOURCE_LEN] {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const PREFIX: &[u8; 8] = b"'sha256-";
    let mut out = [0u8; SOURCE_LEN];
    let mut i = 0;
    while i < PREFIX.len() {
        out[i] = PREFIX[i];
        i += 1;
    }
    // 32 bytes: ten full groups of three, then two bytes (three characters and one `=`).
    let mut group = 0;
    while group < 11 {
        let at = group * 3;
        let b0 = digest[at] as u32;
        let b1 = digest[at + 1] as u32;
        let b2 = if at + 2 < 32 {
            digest[at + 2] as u32
        } else {
            0
        };
        let n = (b0 << 16) | (b1 << 8) | b2;
        let o = PREFIX.len() + group * 4;
        out[o] = ALPHABET[(n >> 18) as usize & 63];
        out[o + 1] = ALPHABET[(n >> 12) as usize & 63];
        out[o + 2] = ALPHABET[(n >> 6) as usize & 63];
        out[o + 3] = if at + 2 < 32 {
            ALPHABET[n as usize & 63]
        } else {
            b'='
        };
        group += 1;
    }
    out[SOURCE_LEN - 1] = b'\'';
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use sha2::{Digest, Sha256};

    fn at_run_time(code: &str) -> String {
        format!(
            "'sha256-{}'",
            base64::engine::general_purpose::STANDARD.encode(Sha256::digest(code.as_bytes()))
        )
    }

    #[test]
    fn the_compile_time_hash_is_sha256_in_base64() {
        // FIPS 180-4 examples, and every padding boundary around one and two blocks.
        const EMPTY: Inline = Inline::new("");
        assert_eq!(
            EMPTY.csp_source(),
            "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='"
        );
        const ABC: Inline = Inline::new("abc");
        assert_eq!(ABC.csp_source(), at_run_time("abc"));
        let long: String = "abcdefghijklmnopqrstuvwxyz0123456789中文".repeat(10);
        for len in (0..long.len()).filter(|l| long.is_char_boundary(*l)) {
            let code: &'static str = Box::leak(long[..len].to_string().into_boxed_str());
            assert_eq!(
                Inline::new(code).csp_source(),
                at_run_time(code),
                "{len} bytes"
            );
        }
    }
}
