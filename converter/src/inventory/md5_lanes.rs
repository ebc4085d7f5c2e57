//! MD5 of many files at once, one file per SIMD lane.
//!
//! dpkg gives an MD5 for every package file, and layers by package check each one: that
//! check was a tenth of a conversion's CPU time. MD5 cannot be sped up within one file
//! (each step needs the one before), but files are independent: with AVX-512 sixteen of
//! them go through the same steps side by side, a 32-bit lane each, and a step's
//! boolean function is one instruction (`vpternlogd`) and its rotation another
//! (`vprold`). Without AVX-512 (checked at run time) each file is hashed alone by the
//! `md-5` crate; the results are the same either way.
//!
//! The lanes are kept busy by giving a lane the next file as soon as its file is done,
//! longest files first so that the last blocks, when fewer lanes have work, are short.

use md5::Digest as _;

/// The MD5 of each of `inputs`, in the same order.
pub fn md5_many(inputs: &[&[u8]]) -> Vec<[u8; 16]> {
    #[cfg(target_arch = "x86_64")]
    if inputs.len() > 1 && std::arch::is_x86_feature_detected!("avx512f") {
        return lanes16(inputs);
    }
    inputs.iter().map(|i| md5::Md5::digest(i).into()).collect()
}

const LANES: usize = 16;

const INIT: [u32; 4] = [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476];

/// One file in a lane: its whole blocks are read where they are, the last one or two
/// (the rest of the file, the 0x80 byte, zeros and the length in bits) from `tail`.
struct Lane<'a> {
    job: usize,
    data: &'a [u8],
    /// Blocks given so far, and in all.
    next: usize,
    blocks: usize,
    tail: [u8; 128],
}

impl<'a> Lane<'a> {
    fn new(job: usize, data: &'a [u8]) -> Lane<'a> {
        let whole = data.len() / 64;
        let rest = &data[whole * 64..];
        let mut tail = [0u8; 128];
        tail[..rest.len()].copy_from_slice(rest);
        tail[rest.len()] = 0x80;
        // The length goes in the last 8 bytes of a block; 55 bytes left leave room.
        let tail_len = if rest.len() < 56 { 64 } else { 128 };
        let bits = (data.len() as u64).wrapping_mul(8);
        tail[tail_len - 8..tail_len].copy_from_slice(&bits.to_le_bytes());
        Lane {
            job,
            data,
            next: 0,
            blocks: whole + tail_len / 64,
            tail,
        }
    }

    fn block(&self) -> &[u8] {
        let whole = self.data.len() / 64;
        if self.next < whole {
            &self.data[self.next * 64..self.next * 64 + 64]
        } else {
            let i = (self.next - whole) * 64;
            &self.tail[i..i + 64]
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn lanes16(inputs: &[&[u8]]) -> Vec<[u8; 16]> {
    let mut order: Vec<usize> = (0..inputs.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(inputs[i].len()));
    let mut order = order.into_iter();
    let mut out = vec![[0u8; 16]; inputs.len()];
    // The state word by word, lane by lane, as the kernel loads it.
    let mut state = [[0u32; LANES]; 4];
    let mut lanes: [Option<Lane>; LANES] = Default::default();
    // An idle lane hashes this; nothing reads its state.
    let idle = [0u8; 64];
    loop {
        let mut busy = false;
        let mut blocks = [idle.as_ptr(); LANES];
        for (l, slot) in lanes.iter_mut().enumerate() {
            if slot.as_ref().is_some_and(|lane| lane.next == lane.blocks) {
                let lane = slot.take().expect("checked just above");
                let mut digest = [0u8; 16];
                for (w, s) in state.iter().enumerate() {
                    digest[w * 4..w * 4 + 4].copy_from_slice(&s[l].to_le_bytes());
                }
                out[lane.job] = digest;
            }
            if slot.is_none() {
                if let Some(job) = order.next() {
                    *slot = Some(Lane::new(job, inputs[job]));
                    for (s, init) in state.iter_mut().zip(INIT) {
                        s[l] = init;
                    }
                }
            }
            if let Some(lane) = slot {
                busy = true;
                blocks[l] = lane.block().as_ptr();
                lane.next += 1;
            }
        }
        if !busy {
            return out;
        }
        // SAFETY: `md5_many` calls this only once AVX-512F is detected on this CPU; each
        // pointer is to 64 bytes (a lane's block, in its input or its tail, or `idle`)
        // that nothing moves or changes until the kernel returns.
        unsafe { kernel16(&mut state, &blocks) };
    }
}

/// The 64 additive constants of MD5 (RFC 1321), the integer part of 2^32·|sin(i + 1)|.
const K: [u32; 64] = [
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
    0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
    0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
    0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
    0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
    0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
    0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
    0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391,
];

/// One block of each lane, `blocks[lane]` pointing to its 64 bytes.
///
/// # Safety
/// The CPU has AVX-512F, and each pointer is valid for reading 64 bytes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn kernel16(state: &mut [[u32; LANES]; 4], blocks: &[*const u8; LANES]) {
    use std::arch::x86_64::*;
    // SAFETY (the loads and stores below): each row is 16 u32, 64 bytes, the size of a
    // zmm register; the unaligned forms need no alignment.
    let load = |row: &[u32; LANES]| unsafe { _mm512_loadu_si512(row.as_ptr().cast()) };
    // A lane's block is a row of 16 little-endian words; the steps want each word of
    // every lane in one register: the 16 × 16 matrix is transposed in registers, by
    // interleaving 32-bit then 64-bit elements within 128-bit lanes, then moving
    // 128-bit lanes in two rounds. (It was gathered word by word, as long as the steps.)
    // SAFETY: the caller gives 64 readable bytes behind each pointer.
    let r: [__m512i; 16] = std::array::from_fn(|l| unsafe { _mm512_loadu_si512(blocks[l].cast()) });
    let t: [__m512i; 16] = std::array::from_fn(|i| {
        let (x, y) = (r[i & !1], r[i | 1]);
        match i & 1 {
            0 => _mm512_unpacklo_epi32(x, y),
            _ => _mm512_unpackhi_epi32(x, y),
        }
    });
    // u[4g + j]: in each 128-bit lane k, word 4k + j of rows 4g..4g + 4.
    let u: [__m512i; 16] = std::array::from_fn(|i| {
        let g = i & !3;
        match i & 3 {
            0 => _mm512_unpacklo_epi64(t[g], t[g + 2]),
            1 => _mm512_unpackhi_epi64(t[g], t[g + 2]),
            2 => _mm512_unpacklo_epi64(t[g + 1], t[g + 3]),
            _ => _mm512_unpackhi_epi64(t[g + 1], t[g + 3]),
        }
    });
    let mut m = [_mm512_setzero_si512(); 16];
    for j in 0..4 {
        let v0 = _mm512_shuffle_i32x4::<0x88>(u[j], u[4 + j]);
        let v1 = _mm512_shuffle_i32x4::<0xdd>(u[j], u[4 + j]);
        let w0 = _mm512_shuffle_i32x4::<0x88>(u[8 + j], u[12 + j]);
        let w1 = _mm512_shuffle_i32x4::<0xdd>(u[8 + j], u[12 + j]);
        m[j] = _mm512_shuffle_i32x4::<0x88>(v0, w0);
        m[4 + j] = _mm512_shuffle_i32x4::<0x88>(v1, w1);
        m[8 + j] = _mm512_shuffle_i32x4::<0xdd>(v0, w0);
        m[12 + j] = _mm512_shuffle_i32x4::<0xdd>(v1, w1);
    }
    let (a0, b0, c0, d0) = (
        load(&state[0]),
        load(&state[1]),
        load(&state[2]),
        load(&state[3]),
    );
    let (mut a, mut b, mut c, mut d) = (a0, b0, c0, d0);

    // The boolean functions as vpternlogd truth tables over (b, c, d):
    // F = (b & c) | (!b & d), G = (b & d) | (c & !d), H = b ^ c ^ d, I = c ^ (b | !d).
    // The boolean functions as vpternlogd truth tables over (x, y, z) = (b, c, d), bit
    // 4x + 2y + z of the table being the result: F = (x & y) | (!x & z) is 0xca,
    // G = (x & z) | (y & !z) 0xe4, H = x ^ y ^ z 0x96, I = y ^ (x | !z) 0x39.
    macro_rules! step {
        ($f:literal, $a:ident, $b:ident, $c:ident, $d:ident, $i:literal, $g:literal, $s:literal) => {
            let f = _mm512_ternarylogic_epi32::<$f>($b, $c, $d);
            let t = _mm512_add_epi32(
                _mm512_add_epi32($a, f),
                _mm512_add_epi32(m[$g], _mm512_set1_epi32(K[$i] as i32)),
            );
            $a = _mm512_add_epi32($b, _mm512_rol_epi32::<$s>(t));
        };
    }
    // Round 1.
    step!(0xCA, a, b, c, d, 0, 0, 7);
    step!(0xCA, d, a, b, c, 1, 1, 12);
    step!(0xCA, c, d, a, b, 2, 2, 17);
    step!(0xCA, b, c, d, a, 3, 3, 22);
    step!(0xCA, a, b, c, d, 4, 4, 7);
    step!(0xCA, d, a, b, c, 5, 5, 12);
    step!(0xCA, c, d, a, b, 6, 6, 17);
    step!(0xCA, b, c, d, a, 7, 7, 22);
    step!(0xCA, a, b, c, d, 8, 8, 7);
    step!(0xCA, d, a, b, c, 9, 9, 12);
    step!(0xCA, c, d, a, b, 10, 10, 17);
    step!(0xCA, b, c, d, a, 11, 11, 22);
    step!(0xCA, a, b, c, d, 12, 12, 7);
    step!(0xCA, d, a, b, c, 13, 13, 12);
    step!(0xCA, c, d, a, b, 14, 14, 17);
    step!(0xCA, b, c, d, a, 15, 15, 22);
    // Round 2.
    step!(0xE4, a, b, c, d, 16, 1, 5);
    step!(0xE4, d, a, b, c, 17, 6, 9);
    step!(0xE4, c, d, a, b, 18, 11, 14);
    step!(0xE4, b, c, d, a, 19, 0, 20);
    step!(0xE4, a, b, c, d, 20, 5, 5);
    step!(0xE4, d, a, b, c, 21, 10, 9);
    step!(0xE4, c, d, a, b, 22, 15, 14);
    step!(0xE4, b, c, d, a, 23, 4, 20);
    step!(0xE4, a, b, c, d, 24, 9, 5);
    step!(0xE4, d, a, b, c, 25, 14, 9);
    step!(0xE4, c, d, a, b, 26, 3, 14);
    step!(0xE4, b, c, d, a, 27, 8, 20);
    step!(0xE4, a, b, c, d, 28, 13, 5);
    step!(0xE4, d, a, b, c, 29, 2, 9);
    step!(0xE4, c, d, a, b, 30, 7, 14);
    step!(0xE4, b, c, d, a, 31, 12, 20);
    // Round 3.
    step!(0x96, a, b, c, d, 32, 5, 4);
    step!(0x96, d, a, b, c, 33, 8, 11);
    step!(0x96, c, d, a, b, 34, 11, 16);
    step!(0x96, b, c, d, a, 35, 14, 23);
    step!(0x96, a, b, c, d, 36, 1, 4);
    step!(0x96, d, a, b, c, 37, 4, 11);
    step!(0x96, c, d, a, b, 38, 7, 16);
    step!(0x96, b, c, d, a, 39, 10, 23);
    step!(0x96, a, b, c, d, 40, 13, 4);
    step!(0x96, d, a, b, c, 41, 0, 11);
    step!(0x96, c, d, a, b, 42, 3, 16);
    step!(0x96, b, c, d, a, 43, 6, 23);
    step!(0x96, a, b, c, d, 44, 9, 4);
    step!(0x96, d, a, b, c, 45, 12, 11);
    step!(0x96, c, d, a, b, 46, 15, 16);
    step!(0x96, b, c, d, a, 47, 2, 23);
    // Round 4.
    step!(0x39, a, b, c, d, 48, 0, 6);
    step!(0x39, d, a, b, c, 49, 7, 10);
    step!(0x39, c, d, a, b, 50, 14, 15);
    step!(0x39, b, c, d, a, 51, 5, 21);
    step!(0x39, a, b, c, d, 52, 12, 6);
    step!(0x39, d, a, b, c, 53, 3, 10);
    step!(0x39, c, d, a, b, 54, 10, 15);
    step!(0x39, b, c, d, a, 55, 1, 21);
    step!(0x39, a, b, c, d, 56, 8, 6);
    step!(0x39, d, a, b, c, 57, 15, 10);
    step!(0x39, c, d, a, b, 58, 6, 15);
    step!(0x39, b, c, d, a, 59, 13, 21);
    step!(0x39, a, b, c, d, 60, 4, 6);
    step!(0x39, d, a, b, c, 61, 11, 10);
    step!(0x39, c, d, a, b, 62, 2, 15);
    step!(0x39, b, c, d, a, 63, 9, 21);

    let store = |row: &mut [u32; LANES], v: __m512i| unsafe {
        // SAFETY: as for `load`.
        _mm512_storeu_si512(row.as_mut_ptr().cast(), v)
    };
    store(&mut state[0], _mm512_add_epi32(a, a0));
    store(&mut state[1], _mm512_add_epi32(b, b0));
    store(&mut state[2], _mm512_add_epi32(c, c0));
    store(&mut state[3], _mm512_add_epi32(d, d0));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9e3779b97f4a7c15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn check(inputs: &[Vec<u8>]) {
        let refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
        let want: Vec<[u8; 16]> = refs.iter().map(|i| md5::Md5::digest(i).into()).collect();
        assert_eq!(md5_many(&refs), want);
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            assert_eq!(lanes16(&refs), want);
        }
    }

    #[test]
    fn the_lengths_at_block_edges() {
        let lens = [
            0, 1, 3, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 191, 192, 1000, 4096, 4097,
            65535,
        ];
        let inputs: Vec<Vec<u8>> = lens.iter().map(|&n| bytes(n, n as u64)).collect();
        check(&inputs);
        // Each length alone, and with one other (a lane busy, the rest idle).
        for input in &inputs {
            check(std::slice::from_ref(input));
            check(&[input.clone(), bytes(70, 7)]);
        }
    }

    #[test]
    fn random_lengths_more_files_than_lanes() {
        let mut seed = 1u64;
        for round in 0..20 {
            let count = 1 + round * 7 % 53;
            let inputs: Vec<Vec<u8>> = (0..count)
                .map(|i| {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let len = match (seed >> 33) % 4 {
                        0 => (seed >> 40) % 70,
                        1 => (seed >> 40) % 300,
                        2 => (seed >> 40) % 5000,
                        _ => (seed >> 40) % 100_000,
                    };
                    bytes(len as usize, seed ^ i as u64)
                })
                .collect();
            check(&inputs);
        }
    }

    #[test]
    fn the_same_input_twice() {
        let a = bytes(777, 3);
        check(&[a.clone(), a.clone(), Vec::new(), a]);
    }
}
