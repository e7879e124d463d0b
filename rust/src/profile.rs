//! Request profiling: task type from a linear model over hashed word and
//! character n-grams, and a complexity estimate from explainable cues. Pure
//! Rust, no allocation per token; the weights are trained by
//! `scripts/train_profiler.py`.

/// Text task types the classifier tells apart, in weight-file order.
pub const TEXT_TASKS: [&str; 4] = ["code", "reasoning", "chat", "knowledge"];
/// Requests recognised by their shape (embeddings endpoint, `input` field).
pub const EMBEDDING: &str = "embedding";

/// The word buckets [`extract`] and [`feature_buckets`] give (lower-cased
/// words, word bigrams, symbols, symbol pairs, number shapes, length and
/// code-share buckets, in 2^13 buckets): the learned router's word block.
pub const FEATURE_BITS: u32 = 13;
const DIM: usize = 1 << FEATURE_BITS;
const MASK: u32 = (DIM as u32) - 1;

/// The task classifier's word space: lower-cased words of two bytes or
/// more (numbers by shape) and their bigrams, hashed into 2^18 buckets.
pub const WORD_GRAM_BITS: u32 = 18;
/// The task classifier's character space: 3- to 5-grams of characters
/// inside whitespace-delimited tokens padded with a space each side
/// (scikit-learn's `char_wb`), hashed into 2^18 buckets.
pub const CHAR_GRAM_BITS: u32 = 18;
const CHAR_GRAM_MIN: u32 = 3;
const CHAR_GRAM_MAX: u32 = 5;
/// How much of a text the character grams read (see [`char_wb_grams`]).
pub const CHAR_GRAM_TEXT: usize = 384;

/// The explainable measurements behind a profile (serialised, as the
/// outcome log keeps it, with the field names `RequestProfile.features` uses).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Features {
    pub chars: usize,
    /// ~4 characters per token, the usual estimate for English and code.
    pub token_estimate: usize,
    pub lines: usize,
    pub words: usize,
    /// Lines that look like code: braces, semicolons, `def`/`class`/`return`, indentation.
    pub code_lines: usize,
    /// Fenced code blocks (```).
    pub code_fences: usize,
    /// Digits, operators and math words.
    pub math_markers: usize,
    /// "step", "first", "then", "prove", "explain why", ...
    pub multi_step_cues: usize,
    /// "must", "at least", "without", "exactly", ...
    pub constraint_cues: usize,
    pub question_marks: usize,
    /// Messages in the conversation (1 for a plain prompt).
    pub turns: usize,
}

/// What a request is and how hard it looks.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// Index into [`TEXT_TASKS`], or `None` for an embedding request.
    pub task: Option<usize>,
    /// Class probabilities in [`TEXT_TASKS`] order (all 0 for embeddings).
    pub probabilities: [f32; 4],
    /// 0 (trivial) ..= 1 (hard).
    pub complexity: f64,
    pub features: Features,
}

/// A stable 32-bit FNV-1a hash: feature buckets must not change between
/// builds, platforms or Python's hash seed, or shipped weights would rot.
#[inline]
fn fnv1a(prefix: u8, parts: &[&[u8]]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    let mut mix = |byte: u8| {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    };
    mix(prefix);
    for (index, part) in parts.iter().enumerate() {
        if index > 0 {
            mix(b' ');
        }
        for &byte in *part {
            mix(byte.to_ascii_lowercase());
        }
    }
    hash
}

/// FNV-1a of `w` + the lower-cased word, usable in constants.
// A `while` loop bounded by the length, as const fns cannot iterate: the
// index is always in bounds.
#[allow(clippy::indexing_slicing)]
const fn word_hash(word: &[u8]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    hash ^= b'w' as u32;
    hash = hash.wrapping_mul(0x0100_0193);
    let mut index = 0;
    while index < word.len() {
        hash ^= word[index].to_ascii_lowercase() as u32;
        hash = hash.wrapping_mul(0x0100_0193);
        index += 1;
    }
    hash
}

/// A word pair's bucket from the two word hashes, so no byte is hashed twice.
#[inline]
fn pair_hash(first: u32, second: u32) -> u32 {
    // Multiply-xorshift (murmur3's finaliser) over an order-sensitive mix.
    let mut hash = first.rotate_left(13) ^ second ^ 0x6272_6967;
    hash ^= hash >> 16;
    hash = hash.wrapping_mul(0x85eb_ca6b);
    hash ^= hash >> 13;
    hash = hash.wrapping_mul(0xc2b2_ae35);
    hash ^ (hash >> 16)
}

#[allow(clippy::indexing_slicing)] // const fn: bounded `while`, as above
const fn hashes<const N: usize>(words: [&[u8]; N]) -> [u32; N] {
    let mut out = [0_u32; N];
    let mut index = 0;
    while index < N {
        out[index] = word_hash(words[index]);
        index += 1;
    }
    out
}

fn is_word_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte >= 0x80
}

const STEP_WORDS: [&[u8]; 14] = [
    b"step",
    b"steps",
    b"first",
    b"then",
    b"finally",
    b"prove",
    b"derive",
    b"calculate",
    b"compute",
    b"why",
    b"compare",
    b"analyze",
    b"analyse",
    b"explain",
];
const CONSTRAINT_WORDS: [&[u8]; 9] = [
    b"must", b"should", b"exactly", b"without", b"least", b"most", b"only", b"ensure", b"each",
];
const MATH_WORDS: [&[u8]; 10] = [
    b"sum",
    b"equation",
    b"integral",
    b"probability",
    b"solve",
    b"total",
    b"percent",
    b"ratio",
    b"average",
    b"remainder",
];
// The cue words as hashes: a word is checked with integer compares against
// its own unigram hash instead of 33 case-insensitive string compares.
const STEP_HASHES: [u32; 14] = hashes(STEP_WORDS);
const CONSTRAINT_HASHES: [u32; 9] = hashes(CONSTRAINT_WORDS);
const MATH_HASHES: [u32; 10] = hashes(MATH_WORDS);
/// One bit per value of a hash's top 10 bits, set for the cue words': most
/// words fail this one load and skip the 33 compares (a filter, so exact).
const CUE_FILTER: [u64; 16] = cue_filter();

#[allow(clippy::indexing_slicing)] // const fn: bounded `while`, as above
const fn cue_filter() -> [u64; 16] {
    let mut filter = [0_u64; 16];
    let lists: [&[u32]; 3] = [&STEP_HASHES, &CONSTRAINT_HASHES, &MATH_HASHES];
    let mut l = 0;
    while l < lists.len() {
        let mut i = 0;
        while i < lists[l].len() {
            let top = lists[l][i] >> 22;
            filter[(top / 64) as usize] |= 1 << (top % 64);
            i += 1;
        }
        l += 1;
    }
    filter
}

/// Whether a word's hash may be a cue word's (see [`CUE_FILTER`]).
#[inline]
fn may_be_cue(hash: u32) -> bool {
    let top = hash >> 22;
    CUE_FILTER
        .get((top / 64) as usize)
        .is_some_and(|bits| bits & (1 << (top % 64)) != 0)
}
const CODE_WORDS: [&[u8]; 12] = [
    b"def",
    b"return",
    b"class",
    b"import",
    b"function",
    b"const",
    b"let",
    b"var",
    b"fn",
    b"public",
    b"void",
    b"include",
];

/// Walks the text once, calling `feature` with every hashed feature bucket
/// and filling the explainable measurements.
pub fn extract(text: &str, turns: usize, feature: impl FnMut(u32)) -> Features {
    scan(text, turns, feature, |_| {})
}

/// The murmur3 32-bit finaliser.
#[inline]
fn fmix32(mut hash: u32) -> u32 {
    hash ^= hash >> 16;
    hash = hash.wrapping_mul(0x85eb_ca6b);
    hash ^= hash >> 13;
    hash = hash.wrapping_mul(0xc2b2_ae35);
    hash ^ (hash >> 16)
}

/// A word's (or number shape's) bucket in the classifier's word space.
#[inline]
fn word_gram(hash: u32) -> u32 {
    fmix32(hash ^ 0x5717_0001) >> (32 - WORD_GRAM_BITS)
}

/// A word bigram's bucket in the classifier's word space.
#[inline]
fn bigram_gram(pair: u32) -> u32 {
    fmix32(pair ^ 0x5717_0002) >> (32 - WORD_GRAM_BITS)
}

/// [`extract`], also calling `word_grams` with the classifier's word-space
/// bucket of every word and word bigram.
fn scan(
    text: &str,
    turns: usize,
    mut feature: impl FnMut(u32),
    mut word_grams: impl FnMut(u32),
) -> Features {
    let bytes = text.as_bytes();
    let mut f = Features {
        chars: text.chars().count(),
        token_estimate: text.len().div_ceil(4),
        turns: turns.max(1),
        ..Features::default()
    };
    let mut previous_word: Option<u32> = None;
    let mut previous_gram_word: Option<u32> = None;
    let mut previous_symbol: Option<u8> = None;
    let mut line = LineState::default();
    let mut fence_ticks = 0;
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes.get(index).copied().unwrap_or(b' ');
        if is_word_byte(byte) {
            let start = index;
            while index < bytes.len() && bytes.get(index).is_some_and(|&b| is_word_byte(b)) {
                index += 1;
            }
            let word = bytes.get(start..index).unwrap_or_default();
            f.words += 1;
            let hash = if word.iter().all(u8::is_ascii_digit) {
                f.math_markers += 1;
                word_hash(number_shape(word)) ^ 0x6e00_0000
            } else {
                let hash = word_hash(word);
                // Hash equality stands for word equality here: a collision
                // would only miscount a cue, never misroute on its own.
                if may_be_cue(hash) {
                    f.multi_step_cues += usize::from(STEP_HASHES.contains(&hash));
                    f.constraint_cues += usize::from(CONSTRAINT_HASHES.contains(&hash));
                    f.math_markers += usize::from(MATH_HASHES.contains(&hash));
                }
                hash
            };
            line.word(hash, word.last().copied().unwrap_or(b' '));
            feature(hash & MASK);
            if let Some(prev) = previous_word {
                feature(pair_hash(prev, hash) & MASK);
            }
            // The classifier skips 1-byte words ("a", "x", "1"), as
            // scikit-learn's tokeniser does: measured better held out.
            if word.len() >= 2 {
                word_grams(word_gram(hash));
                if let Some(prev) = previous_gram_word {
                    word_grams(bigram_gram(pair_hash(prev, hash)));
                }
                previous_gram_word = Some(hash);
            }
            previous_word = Some(hash);
            previous_symbol = None;
            continue;
        }
        if !byte.is_ascii_whitespace() {
            feature(fnv1a(b's', &[&[byte]]) & MASK);
            if let Some(prev) = previous_symbol {
                feature(fnv1a(b'p', &[&[prev, byte]]) & MASK);
            }
            if matches!(
                byte,
                b'+' | b'-' | b'*' | b'/' | b'=' | b'^' | b'%' | b'<' | b'>'
            ) {
                f.math_markers += 1;
            }
            if byte == b'?' {
                f.question_marks += 1;
            }
            // Runs of three backticks open or close a fenced block.
            fence_ticks = if byte == b'`' { fence_ticks + 1 } else { 0 };
            if fence_ticks == 3 {
                f.code_fences += 1;
                fence_ticks = 0;
            }
            line.symbol(byte);
            previous_symbol = Some(byte);
        } else {
            fence_ticks = 0;
            if byte == b'\n' {
                line.end(&mut f);
                previous_symbol = None;
            } else {
                line.space(byte);
            }
        }
        index += 1;
    }
    if !bytes.is_empty() && !text.ends_with('\n') {
        line.end(&mut f);
    }
    // Pairs of fences are blocks.
    f.code_fences /= 2;
    // Coarse shape features: how long, how code-like.
    feature(fnv1a(b'L', &[&[length_bucket(f.chars)]]) & MASK);
    feature(fnv1a(b'C', &[&[ratio_bucket(f.code_lines, f.lines)]]) & MASK);
    f
}

/// What the current line looks like, gathered in the same single pass:
/// a line is code when it ends in `;`, `{`, `}` or `:`, starts with a code
/// keyword, or is indented and holds a call or an assignment.
#[derive(Default)]
struct LineState {
    started: bool,
    indent: usize,
    first_word: Option<u32>,
    call_or_assignment: bool,
    last: u8,
}

const CODE_HASHES: [u32; 12] = hashes(CODE_WORDS);

impl LineState {
    fn word(&mut self, hash: u32, last_byte: u8) {
        if !self.started {
            self.first_word = Some(hash);
        }
        self.started = true;
        self.last = last_byte;
    }

    fn symbol(&mut self, byte: u8) {
        self.started = true;
        self.call_or_assignment |= byte == b'(' || byte == b'=';
        self.last = byte;
    }

    fn space(&mut self, byte: u8) {
        if !self.started {
            self.indent += if byte == b'\t' {
                4
            } else {
                usize::from(byte == b' ')
            };
        }
    }

    fn end(&mut self, f: &mut Features) {
        f.lines += 1;
        if self.started {
            let ends = matches!(self.last, b';' | b'{' | b'}' | b':');
            let keyword = self.first_word.is_some_and(|h| CODE_HASHES.contains(&h));
            let indented = self.indent >= 4 && self.call_or_assignment;
            f.code_lines += usize::from(ends || keyword || indented);
        }
        *self = LineState::default();
    }
}

/// "1" for 1-digit numbers, "11" for 2-digit, ... up to 6: the model learns
/// "there are numbers", not which ones.
fn number_shape(word: &[u8]) -> &'static [u8] {
    const SHAPES: [&[u8]; 6] = [b"1", b"11", b"111", b"1111", b"11111", b"111111"];
    SHAPES
        .get(word.len().clamp(1, 6) - 1)
        .copied()
        .unwrap_or(b"1")
}

fn length_bucket(chars: usize) -> u8 {
    (usize::BITS - chars.leading_zeros()) as u8
}

fn ratio_bucket(part: usize, whole: usize) -> u8 {
    if whole == 0 {
        0
    } else {
        ((part * 4).div_ceil(whole)).min(4) as u8
    }
}

/// 0 (trivial) ..= 1 (hard), from cues a person can check:
/// `0.35 length + 0.25 step/constraint cues + 0.15 math + 0.15 code + 0.10 turns`,
/// each part saturating (2,000 tokens, 6 cues, 20 math markers, 40 code lines, 10 turns).
pub fn complexity(f: &Features) -> f64 {
    let length = ((1.0 + f.token_estimate as f64).ln() / (2001.0_f64).ln()).min(1.0);
    let cues = ((f.multi_step_cues + f.constraint_cues) as f64 / 6.0).min(1.0);
    let math = (f.math_markers as f64 / 20.0).min(1.0);
    let code = ((f.code_lines + 4 * f.code_fences) as f64 / 40.0).min(1.0);
    let turns = ((f.turns.saturating_sub(1)) as f64 / 10.0).min(1.0);
    (0.35 * length + 0.25 * cues + 0.15 * math + 0.15 * code + 0.10 * turns).clamp(0.0, 1.0)
}

/// Tokens already seen by [`char_wb_grams`] in the current text: a bit per
/// 16-bit token fingerprint, and the set bits to clear afterwards.
struct SeenTokens {
    bits: Vec<u64>,
    set: Vec<u16>,
}

/// Calls `gram` with the character-space bucket of every character 3-, 4-
/// and 5-gram of the text's whitespace-delimited tokens, lower-cased and
/// padded with a space each side (`" def "` gives `" de"`, `"def"`, `"ef "`,
/// `" def"`, `"def "`, `" def "`). A token met before in the same text
/// is skipped (the classifier reads which grams occur, not how often): one
/// pass, no allocation.
pub fn char_wb_grams(text: &str, mut gram: impl FnMut(u32)) {
    thread_local! {
        static SEEN: std::cell::RefCell<SeenTokens> = std::cell::RefCell::new(SeenTokens {
            bits: vec![0; (1 << 16) / 64],
            set: Vec::with_capacity(1024),
        });
    }
    SEEN.with(|seen| {
        let mut seen = seen.borrow_mut();
        let SeenTokens { bits, set } = &mut *seen;
        // The grams of the first CHAR_GRAM_TEXT bytes (to the end of the
        // token there) tell the task as well as the whole text's, at a
        // bounded cost; the words are read to the end.
        let text = text.get(..prefix_end(text)).unwrap_or(text);
        // ASCII text (the common case) splits without decoding chars.
        let ascii = text.is_ascii();
        let tokens: &mut dyn Iterator<Item = &str> = if ascii {
            &mut text.split_ascii_whitespace()
        } else {
            &mut text.split_whitespace()
        };
        for token in tokens {
            // A 16-bit fingerprint of the raw bytes: a repeat (or, rarely,
            // a fingerprint twin) adds no new gram.
            let fingerprint = token_fingerprint(token.as_bytes());
            let Some(slot) = bits.get_mut(usize::from(fingerprint / 64)) else {
                continue;
            };
            let bit = 1_u64 << (fingerprint % 64);
            if *slot & bit != 0 {
                continue;
            }
            *slot |= bit;
            set.push(fingerprint);
            token_grams(token, &mut gram);
        }
        for &fingerprint in set.iter() {
            if let Some(slot) = bits.get_mut(usize::from(fingerprint / 64)) {
                *slot = 0;
            }
        }
        set.clear();
    });
}

/// Where [`char_wb_grams`] stops reading: the first whitespace at or past
/// [`CHAR_GRAM_TEXT`] bytes, or the end.
fn prefix_end(text: &str) -> usize {
    let bytes = text.as_bytes();
    bytes
        .get(CHAR_GRAM_TEXT..)
        .and_then(|rest| rest.iter().position(u8::is_ascii_whitespace))
        .map_or(bytes.len(), |offset| CHAR_GRAM_TEXT + offset)
}

/// A token's 16-bit fingerprint, 8 bytes a multiply (a byte-at-a-time hash
/// is one long chain of multiplies).
#[inline]
fn token_fingerprint(bytes: &[u8]) -> u16 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut hash = bytes.len() as u64;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let word = chunk.try_into().map(u64::from_le_bytes).unwrap_or(0);
        hash = (hash ^ word).wrapping_mul(K).rotate_left(31);
    }
    let mut tail = [0_u8; 8];
    for (slot, &byte) in tail.iter_mut().zip(chunks.remainder()) {
        *slot = byte;
    }
    hash = (hash ^ u64::from_le_bytes(tail)).wrapping_mul(K);
    (hash >> 48) as u16
}

/// The grams of one token (see [`char_wb_grams`]), hashed by multiply-shift
/// (Fibonacci hashing: the top bits of the product mix every char). An
/// ASCII token keeps its last eight bytes in one 64-bit register; any other
/// keeps its last five chars, 16 bits each (exact for the Basic
/// Multilingual Plane, others folded), in a 128-bit one.
#[inline]
fn token_grams(token: &str, gram: &mut impl FnMut(u32)) {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let shift = 64 - CHAR_GRAM_BITS;
    if token.is_ascii() {
        let mut key = u64::from(b' ');
        let mut filled = 1_u32;
        for &byte in token.as_bytes().iter().chain(std::iter::once(&b' ')) {
            key = (key << 8) | u64::from(byte.to_ascii_lowercase());
            filled += 1;
            // CHAR_GRAM_MIN..=CHAR_GRAM_MAX, unrolled.
            let hash = |window: u64, n: u64| ((window | n << 56).wrapping_mul(K) >> shift) as u32;
            if filled >= 3 {
                gram(hash(key & 0xff_ffff, 3));
            }
            if filled >= 4 {
                gram(hash(key & 0xffff_ffff, 4));
            }
            if filled >= 5 {
                gram(hash(key & 0xff_ffff_ffff, 5));
            }
        }
        return;
    }
    let mut key: u128 = u128::from(b' ');
    let mut filled = 1_u32;
    let chars = token
        .chars()
        .flat_map(char::to_lowercase)
        .chain(std::iter::once(' '));
    for c in chars {
        let c = u32::from(c);
        let folded = (c ^ (c >> 16).wrapping_mul(0x9e37)) & 0xffff;
        key = ((key << 16) | u128::from(folded)) & ((1 << 80) - 1);
        filled += 1;
        for n in CHAR_GRAM_MIN..=CHAR_GRAM_MAX.min(filled) {
            let window = key & ((1_u128 << (16 * n)) - 1);
            let low = window as u64;
            let high = ((window >> 64) as u64) | u64::from(n) << 32;
            gram(
                ((low ^ high.wrapping_mul(0xc2b2_ae3d_27d4_eb4f)).wrapping_mul(K) >> shift) as u32,
            );
        }
    }
}

/// The weights shipped with this build (trained by `scripts/train_profiler.py`).
pub const SHIPPED_WEIGHTS: &[u8] = include_bytes!("profile_weights.bin");

/// One hashed feature space of the task model: which buckets the training
/// kept (per 64 buckets a bit each beside the rows before them, so one
/// load finds a row), and for each kept bucket its row (see
/// [`BlockSums`]); a last all-zero row stands for every bucket not kept.
struct Block {
    groups: Vec<(u64, u32)>,
    rows: Vec<[f32; 4]>,
}

impl Block {
    /// The row of a bucket's values (the zero row's if not kept).
    #[inline]
    fn row_values(&self, bucket: u32) -> Option<&[f32; 4]> {
        self.rows.get(self.row(bucket))
    }

    /// The row of a bucket: its own if kept, else the zero row. No branch
    /// on the data, which would mispredict about half the time.
    #[inline]
    fn row(&self, bucket: u32) -> usize {
        let zero = self.rows.len() - 1;
        let (bits, before) = self
            .groups
            .get((bucket / 64) as usize)
            .copied()
            .unwrap_or((0, 0));
        let bit = 1_u64 << (bucket % 64);
        let own = before as usize + (bits & (bit - 1)).count_ones() as usize;
        if bits & bit != 0 {
            own
        } else {
            zero
        }
    }
}

/// Sums of one block's rows over a text's distinct kept buckets: the first
/// three classes' weights less the last's, and the squared IDFs.
#[derive(Default)]
struct BlockSums([f32; 4]);

impl BlockSums {
    /// The block's share of the logits: a binary TF-IDF vector,
    /// L2-normalised. The last class gets none: softmax is blind to a
    /// shift of all four logits, so its weights were taken from the others.
    fn add_to(&self, logits: &mut [f32; 4]) {
        let [first, second, third, idf_squared] = self.0;
        if idf_squared > 0.0 {
            let scale = 1.0 / idf_squared.sqrt();
            for (logit, weight) in logits.iter_mut().zip([first, second, third]) {
                *logit += weight * scale;
            }
        }
    }
}

/// Adds a row to `sums`, times `factor` (1 for a new row, 0 for one counted).
#[inline]
fn add_row(sums: &mut [f32; 4], values: Option<&[f32; 4]>, factor: f32) {
    if let Some(values) = values {
        for (sum, value) in sums.iter_mut().zip(values) {
            *sum += value * factor;
        }
    }
}

/// What the current text has counted already: the character block's rows
/// (a token's grams are read once per token, so a gram can come again), and
/// the word-space buckets (each kept bucket has its own row).
#[derive(Default)]
struct SeenRows {
    /// Character-block rows already counted.
    bits: Vec<u64>,
    /// Word-space buckets already met (a repeated word skips its lookups).
    words: Vec<u64>,
    word_set: Vec<u32>,
    /// The current text's buckets of one space, in order (kept between
    /// texts for its allocation).
    grams: Vec<u32>,
}

impl SeenRows {
    /// 1.0 if `row` is new in this text (and now marked), else 0.0: a
    /// factor, not a branch.
    #[inline]
    fn first(&mut self, row: usize) -> f32 {
        let Some(slot) = self.bits.get_mut(row / 64) else {
            return 0.0;
        };
        let bit = 1_u64 << (row % 64);
        let fresh = *slot & bit == 0;
        *slot |= bit;
        f32::from(u8::from(fresh))
    }

    /// Whether a word-space bucket is new in this text (and now marked).
    #[inline]
    fn first_word(&mut self, bucket: u32) -> bool {
        let Some(slot) = self.words.get_mut(bucket as usize / 64) else {
            return false;
        };
        let bit = 1_u64 << (bucket % 64);
        if *slot & bit != 0 {
            return false;
        }
        *slot |= bit;
        self.word_set.push(bucket);
        true
    }

    fn clear(&mut self) {
        // ~4 KiB: cheaper to zero whole than to list what was set.
        self.bits.fill(0);
        for &bucket in &self.word_set {
            if let Some(slot) = self.words.get_mut(bucket as usize / 64) {
                *slot = 0;
            }
        }
        self.word_set.clear();
    }
}

/// Which space a text's buckets are in, for [`TaskModel::sum_rows`].
#[derive(Clone, Copy)]
enum RowsOf {
    Words,
    Chars,
}

/// The trained linear model: class weights over the classifier's word and
/// character spaces, and 4 biases.
pub struct TaskModel {
    words: Block,
    chars: Block,
    bias: [f32; 4],
}

const MAGIC: &[u8; 8] = b"ZFPROF02";

/// An IEEE 754 half-precision float, widened.
fn f16_to_f32(half: u16) -> f32 {
    let sign = u32::from(half >> 15) << 31;
    let exponent = u32::from((half >> 10) & 0x1f);
    let mantissa = u32::from(half & 0x3ff);
    match exponent {
        0 => {
            let magnitude = mantissa as f32 * (1.0 / 16_777_216.0);
            if sign == 0 {
                magnitude
            } else {
                -magnitude
            }
        }
        31 => f32::from_bits(sign | 0x7f80_0000 | (mantissa << 13)),
        _ => f32::from_bits(sign | ((exponent + 112) << 23) | (mantissa << 13)),
    }
}

/// Reads the weight file in order.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.bytes.get(..n)?, self.bytes.get(n..)?);
        self.bytes = rest;
        Some(head)
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4)?.try_into().ok().map(u32::from_le_bytes)
    }

    fn halves(&mut self, n: usize) -> Option<Vec<f32>> {
        let bytes = self.take(n.checked_mul(2)?)?;
        Some(
            bytes
                .chunks_exact(2)
                .filter_map(|c| c.try_into().ok().map(u16::from_le_bytes))
                .map(f16_to_f32)
                .collect(),
        )
    }

    fn block(&mut self, bits: u32) -> Result<Block, String> {
        let truncated = || format!("truncated {bits}-bit block");
        let count = self.u32().ok_or_else(truncated)? as usize;
        let words = (1_usize << bits) / 64;
        let kept: Vec<u64> = self
            .take(words * 8)
            .ok_or_else(truncated)?
            .chunks_exact(8)
            .filter_map(|c| c.try_into().ok().map(u64::from_le_bytes))
            .collect();
        let mut groups = Vec::with_capacity(words);
        let mut total = 0_u32;
        for &word in &kept {
            groups.push((word, total));
            total += word.count_ones();
        }
        if total as usize != count {
            return Err(format!(
                "{bits}-bit block: {count} rows for {total} kept buckets"
            ));
        }
        let weights = self.halves(count * 4).ok_or_else(truncated)?;
        let idf = self.halves(count).ok_or_else(truncated)?;
        if !weights.iter().chain(&idf).all(|w| w.is_finite()) {
            return Err(format!("{bits}-bit block: a weight is not finite"));
        }
        // One 16-byte row a bucket: three weight differences and the
        // squared IDF, so a lookup touches one cache line.
        let mut rows: Vec<[f32; 4]> = weights
            .chunks_exact(4)
            .zip(&idf)
            .map(|(w, idf)| match *w {
                [a, b, c, d] => [a - d, b - d, c - d, idf * idf],
                _ => [0.0; 4],
            })
            .collect();
        rows.push([0.0; 4]);
        Ok(Block { groups, rows })
    }
}

impl TaskModel {
    /// Parses the weight file written by `scripts/train_profiler.py`: magic,
    /// u32 word and character bits, 4 f32 biases, then per space (words,
    /// then characters) a u32 row count, the kept-bucket bitmap (u64s) and,
    /// for each kept bucket in order, 4 f16 class weights (times the
    /// bucket's IDF) followed by all the rows' f16 IDFs; little-endian.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, crate::errors::ZetaError> {
        let invalid = |reason: &str| crate::errors::ZetaError::Snapshot {
            reason: format!("profiler weights: {reason}"),
        };
        let mut reader = Reader { bytes };
        let magic = reader.take(8).ok_or_else(|| invalid("truncated header"))?;
        if magic != MAGIC {
            return Err(invalid("bad magic bytes"));
        }
        let word_bits = reader.u32().ok_or_else(|| invalid("truncated header"))?;
        let char_bits = reader.u32().ok_or_else(|| invalid("truncated header"))?;
        if (word_bits, char_bits) != (WORD_GRAM_BITS, CHAR_GRAM_BITS) {
            return Err(invalid(&format!(
                "{word_bits}/{char_bits} feature bits, this build hashes into \
                 {WORD_GRAM_BITS}/{CHAR_GRAM_BITS}"
            )));
        }
        let mut bias = [0.0_f32; 4];
        for b in &mut bias {
            *b = reader
                .take(4)
                .and_then(|c| c.try_into().ok())
                .map(f32::from_le_bytes)
                .ok_or_else(|| invalid("truncated header"))?;
        }
        let words = reader.block(word_bits).map_err(|e| invalid(&e))?;
        let chars = reader.block(char_bits).map_err(|e| invalid(&e))?;
        if !reader.bytes.is_empty() {
            return Err(invalid(&format!(
                "{} bytes past the end",
                reader.bytes.len()
            )));
        }
        Ok(Self { words, chars, bias })
    }

    /// Profiles a text (`turns` messages deep), or an embedding request.
    pub fn profile(&self, text: &str, turns: usize, embedding: bool) -> Profile {
        self.profile_keeping_buckets(text, turns, embedding, None)
    }

    /// [`Self::profile`], also pushing the text's feature buckets (as
    /// [`feature_buckets`] gives them) to `buckets`: the learned router's
    /// word features come from the same single pass.
    pub fn profile_keeping_buckets(
        &self,
        text: &str,
        turns: usize,
        embedding: bool,
        mut buckets: Option<&mut Vec<u32>>,
    ) -> Profile {
        let buckets_wanted = buckets.is_some();
        let keep = |bucket: u32| {
            if let Some(kept) = buckets.as_deref_mut() {
                kept.push(bucket);
            }
        };
        if embedding {
            let features = extract(text, turns, keep);
            return Profile {
                task: None,
                probabilities: [0.0; 4],
                complexity: complexity(&features),
                features,
            };
        }
        thread_local! {
            static SEEN: std::cell::RefCell<SeenRows> = std::cell::RefCell::new(SeenRows::default());
        }
        let (features, word_sums, char_sums) = SEEN.with(|seen| {
            let mut seen = seen.borrow_mut();
            let rows = self.chars.rows.len();
            if seen.bits.len() * 64 < rows {
                seen.bits.resize(rows.div_ceil(64), 0);
            }
            if seen.words.is_empty() {
                seen.words.resize((1 << WORD_GRAM_BITS) / 64, 0);
            }
            // The buckets are gathered first and summed after, in loops of
            // their own: a sum carried through the scan's callbacks lives on
            // the stack, and each gram's add then waits on the last one's
            // store (measured: most of the classifier's time).
            let mut grams = std::mem::take(&mut seen.grams);
            grams.clear();
            // Without a caller for the learned router's buckets, a scan that
            // takes none: the compiler drops their hashing altogether.
            let features = if buckets_wanted {
                scan(text, turns, keep, |bucket| grams.push(bucket))
            } else {
                scan(text, turns, |_| {}, |bucket| grams.push(bucket))
            };
            let word_sums = self.sum_rows(&grams, &mut seen, RowsOf::Words);
            grams.clear();
            char_wb_grams(text, |bucket| grams.push(bucket));
            let char_sums = self.sum_rows(&grams, &mut seen, RowsOf::Chars);
            seen.grams = grams;
            let (word_sums, char_sums) = (BlockSums(word_sums), BlockSums(char_sums));
            seen.clear();
            (features, word_sums, char_sums)
        });
        let mut logits = self.bias;
        word_sums.add_to(&mut logits);
        char_sums.add_to(&mut logits);
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut probabilities = logits.map(|l| (l - max).exp());
        let total: f32 = probabilities.iter().sum();
        for p in &mut probabilities {
            *p /= total;
        }
        let task = probabilities
            .iter()
            .enumerate()
            .fold((0, f32::NEG_INFINITY), |best, (i, &p)| {
                if p > best.1 {
                    (i, p)
                } else {
                    best
                }
            })
            .0;
        Profile {
            task: Some(task),
            probabilities,
            complexity: complexity(&features),
            features,
        }
    }

    /// The sums of the rows of a text's distinct buckets in one space. A
    /// bucket's rank in its 64 is a popcount, one instruction where the CPU
    /// has it (nearly every x86-64 since 2008, but not the baseline the
    /// wheel is built for: without it, a dozen).
    fn sum_rows(&self, grams: &[u32], seen: &mut SeenRows, space: RowsOf) -> [f32; 4] {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("popcnt") {
            // SAFETY: the CPU supports POPCNT, checked just above.
            return unsafe { self.sum_rows_popcnt(grams, seen, space) };
        }
        self.sum_rows_portable(grams, seen, space)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "popcnt")]
    unsafe fn sum_rows_popcnt(
        &self,
        grams: &[u32],
        seen: &mut SeenRows,
        space: RowsOf,
    ) -> [f32; 4] {
        self.sum_rows_portable(grams, seen, space)
    }

    #[inline(always)]
    fn sum_rows_portable(&self, grams: &[u32], seen: &mut SeenRows, space: RowsOf) -> [f32; 4] {
        let mut sums = [0.0_f32; 4];
        match space {
            // A word-space bucket met once is a row met once (only the
            // buckets not kept share a row, the zero one): the bucket's own
            // mark is the only one it needs.
            RowsOf::Words => {
                for &bucket in grams {
                    if seen.first_word(bucket) {
                        add_row(&mut sums, self.words.row_values(bucket), 1.0);
                    }
                }
            }
            // Character grams are deduplicated by token, not by gram: the
            // row's mark counts each once.
            RowsOf::Chars => {
                for &bucket in grams {
                    let row = self.chars.row(bucket);
                    let fresh = seen.first(row);
                    add_row(&mut sums, self.chars.rows.get(row), fresh);
                }
            }
        }
        sums
    }
}

/// The hashed feature buckets of a text, in order, with the scale the
/// learned router applies to them.
pub fn feature_buckets(text: &str) -> (Vec<u32>, f32) {
    let mut buckets = Vec::new();
    extract(text, 1, |bucket| buckets.push(bucket));
    let scale = 1.0 / (buckets.len().max(1) as f32).sqrt();
    (buckets, scale)
}

/// The task classifier's features of a text, for training: its distinct
/// word-space and character-space buckets, sorted.
pub fn task_features(text: &str) -> (Vec<u32>, Vec<u32>) {
    let mut words = Vec::new();
    scan(text, 1, |_| {}, |bucket| words.push(bucket));
    let mut chars = Vec::new();
    char_wb_grams(text, |bucket| chars.push(bucket));
    for list in [&mut words, &mut chars] {
        list.sort_unstable();
        list.dedup();
    }
    (words, chars)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashing_is_stable() {
        // Pinned: changing the hash silently invalidates shipped weights.
        assert_eq!(fnv1a(b'w', &[b"def"]), fnv1a(b'w', &[b"DEF"]));
        assert_eq!(fnv1a(b'w', &[b"def"]) & MASK, 7101);
        assert_eq!(word_hash(b"Def"), fnv1a(b'w', &[b"def"]));
        assert_eq!(pair_hash(1, 2) & MASK, pair_hash(1, 2) & MASK);
        assert_ne!(pair_hash(1, 2), pair_hash(2, 1));
    }

    #[test]
    fn features_count_code_math_and_cues() {
        let f = extract("def add(a, b):\n    return a + b\n", 1, |_| {});
        assert_eq!(f.code_lines, 2);
        assert!(f.math_markers >= 1);
        let f = extract(
            "First, compute the sum. Then explain why it must be even?",
            3,
            |_| {},
        );
        assert!(f.multi_step_cues >= 4, "{f:?}");
        assert_eq!(f.constraint_cues, 1);
        assert_eq!(f.question_marks, 1);
        assert_eq!(f.turns, 3);
    }

    #[test]
    fn complexity_is_bounded_and_grows_with_cues() {
        let empty = complexity(&extract("", 1, |_| {}));
        let hello = complexity(&extract("hi there", 1, |_| {}));
        let hard = complexity(&extract(
            &"First prove the bound, then derive the integral step by step; explain why it must hold. 12 + 7 = 19. "
                .repeat(30),
            4,
            |_| {},
        ));
        assert_eq!(empty, 0.0);
        assert!(hello < 0.2, "{hello}");
        assert!(hard > 0.6 && hard <= 1.0, "{hard}");
    }

    const PINNED_BUCKETS: &[u32] = &[7101, 1637, 2057, 2718, 5621, 4061];

    #[test]
    fn learned_router_buckets_are_unchanged() {
        // Pinned: the learned router's word block (and its saved weights)
        // must not move when the task classifier's features do.
        let (buckets, scale) = feature_buckets("def add(a, b): return a+b");
        assert_eq!(buckets.len(), 21);
        assert_eq!(&buckets[..6], PINNED_BUCKETS);
        assert!((scale - 1.0 / 21_f32.sqrt()).abs() < 1e-7);
    }

    fn grams(text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        char_wb_grams(text, |g| out.push(g));
        out
    }

    #[test]
    fn char_grams_are_padded_lowercased_and_once_per_token() {
        // " de", "def", "ef ", " def", "def ", " def ".
        let def = grams("def");
        assert_eq!(def.len(), 6);
        assert!(def.iter().all(|&g| g < 1 << CHAR_GRAM_BITS));
        assert_eq!(grams("DEF"), def);
        assert_eq!(grams("def def\tdef\n"), def);
        assert_eq!(grams("  def  "), def);
        // A 1-char token gives its one padded 3-gram.
        assert_eq!(grams("x").len(), 1);
        assert_eq!(grams("ДОМ"), grams("дом"));
        assert_eq!(grams("数学题").len(), 6);
        assert_ne!(grams("abc"), grams("abd"));
        assert!(grams("").is_empty());
        // Only the first CHAR_GRAM_TEXT bytes, to the end of the token there.
        let filler = "a ".repeat(CHAR_GRAM_TEXT / 2 + 10);
        assert_eq!(grams(&format!("{filler}qqq")), grams("a"));
        let straddling = format!("{}qqqqqqqq zzz", "a ".repeat(CHAR_GRAM_TEXT / 2 - 2));
        assert_eq!(grams(&straddling), [grams("a"), grams("qqqqqqqq")].concat());
    }

    #[test]
    fn task_features_are_distinct_and_in_range() {
        let (words, chars) = task_features("the cat the cat sat a b");
        // the, cat, sat; the-cat, cat-the, cat-sat ("a" and "b" skipped).
        assert_eq!(words.len(), 6);
        assert!(words.windows(2).all(|w| w[0] < w[1]));
        assert!(words.iter().all(|&w| w < 1 << WORD_GRAM_BITS));
        assert!(chars.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn halves_widen_exactly() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 2.0_f32.powi(-24));
        assert_eq!(f16_to_f32(0x8000), 0.0);
        assert!(f16_to_f32(0x7c00).is_infinite());
    }

    /// A weight file with `words` kept word buckets and `chars` kept
    /// character buckets, each row voting for `class`.
    fn weight_file(words: &[(u32, usize)], chars: &[(u32, usize)], bias: [f32; 4]) -> Vec<u8> {
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&WORD_GRAM_BITS.to_le_bytes());
        bytes.extend_from_slice(&CHAR_GRAM_BITS.to_le_bytes());
        for b in bias {
            bytes.extend_from_slice(&b.to_le_bytes());
        }
        for (bits, kept) in [(WORD_GRAM_BITS, words), (CHAR_GRAM_BITS, chars)] {
            let mut sorted = kept.to_vec();
            sorted.sort_unstable();
            sorted.dedup_by_key(|k| k.0);
            bytes.extend_from_slice(&(sorted.len() as u32).to_le_bytes());
            let mut bitmap = vec![0_u64; (1 << bits) / 64];
            for &(bucket, _) in &sorted {
                bitmap[bucket as usize / 64] |= 1 << (bucket % 64);
            }
            for word in bitmap {
                bytes.extend_from_slice(&word.to_le_bytes());
            }
            for &(_, class) in &sorted {
                for k in 0..4 {
                    // 4.0 (0x4400) for the class, 0 for the others.
                    let half: u16 = if k == class { 0x4400 } else { 0 };
                    bytes.extend_from_slice(&half.to_le_bytes());
                }
            }
            for _ in &sorted {
                bytes.extend_from_slice(&0x3c00_u16.to_le_bytes()); // IDF 1
            }
        }
        bytes
    }

    #[test]
    fn a_hand_made_model_scores_kept_buckets_once() {
        let (words, _) = task_features("poem");
        let (_, chars) = task_features("integral");
        let kept_words: Vec<(u32, usize)> = words.iter().map(|&w| (w, 2)).collect();
        let kept_chars: Vec<(u32, usize)> = chars.iter().map(|&c| (c, 1)).collect();
        let model =
            TaskModel::from_bytes(&weight_file(&kept_words, &kept_chars, [0.5, 0.0, 0.0, 0.0]))
                .unwrap_or_else(|e| unreachable!("{e}"));
        // Nothing kept: the biases alone.
        assert_eq!(model.profile("zzz qqq", 1, false).task, Some(0));
        assert_eq!(model.profile("poem", 1, false).task, Some(2));
        assert_eq!(model.profile("integral", 1, false).task, Some(1));
        // Binary and normalised: repeats change nothing.
        let once = model.profile("poem", 1, false).probabilities;
        assert_eq!(
            model.profile("poem poem poem", 1, false).probabilities[2],
            once[2]
        );
        let embedding = model.profile("poem", 1, true);
        assert_eq!((embedding.task, embedding.probabilities), (None, [0.0; 4]));
        let mut buckets = Vec::new();
        model.profile_keeping_buckets("def add(a, b): return a+b", 1, false, Some(&mut buckets));
        assert_eq!(buckets, feature_buckets("def add(a, b): return a+b").0);
    }

    #[test]
    fn bad_weight_files_are_rejected() {
        assert!(TaskModel::from_bytes(b"nope").is_err());
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&12_u32.to_le_bytes());
        assert!(TaskModel::from_bytes(&bytes).is_err());
        let good = weight_file(&[(7, 0)], &[(9, 1)], [0.0; 4]);
        assert!(TaskModel::from_bytes(&good).is_ok());
        let mut long = good.clone();
        long.push(0);
        assert!(TaskModel::from_bytes(&long).is_err());
        assert!(TaskModel::from_bytes(&good[..good.len() - 1]).is_err());
        let mut wrong_bits = good.clone();
        wrong_bits[8] = 13;
        assert!(TaskModel::from_bytes(&wrong_bits).is_err());
        // A row count that disagrees with the bitmap.
        let mut miscounted = good.clone();
        miscounted[32] = 2;
        assert!(TaskModel::from_bytes(&miscounted).is_err());
        // A weight of infinity (0x7c00).
        let mut infinite = good;
        let at = 32 + 4 + (1 << WORD_GRAM_BITS) / 8;
        infinite[at..at + 2].copy_from_slice(&0x7c00_u16.to_le_bytes());
        assert!(TaskModel::from_bytes(&infinite).is_err());
    }

    #[test]
    fn the_popcount_and_portable_sums_agree() {
        let model = TaskModel::from_bytes(SHIPPED_WEIGHTS).unwrap_or_else(|e| unreachable!("{e}"));
        let texts = [
            "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)",
            "Write a haiku about autumn, then explain each line step by step.",
            "Ünïcödé tëxt wïth äccents, 数字 and emoji 🎉 repeated: 数字 数字",
            "",
        ];
        let mut seen = SeenRows::default();
        seen.bits.resize(model.chars.rows.len().div_ceil(64), 0);
        seen.words.resize((1 << WORD_GRAM_BITS) / 64, 0);
        for text in texts {
            let mut words = Vec::new();
            scan(text, 1, |_| {}, |bucket| words.push(bucket));
            let mut chars = Vec::new();
            char_wb_grams(text, |bucket| chars.push(bucket));
            for (grams, space) in [(&words, RowsOf::Words), (&chars, RowsOf::Chars)] {
                let dispatched = model.sum_rows(grams, &mut seen, space);
                seen.clear();
                let portable = model.sum_rows_portable(grams, &mut seen, space);
                seen.clear();
                assert_eq!(dispatched, portable, "{text:?}");
                if !text.is_empty() {
                    assert!(portable.iter().any(|&v| v != 0.0), "{text:?}");
                }
            }
        }
    }

    #[test]
    fn shipped_weights_load_and_stay_small() {
        assert!(
            SHIPPED_WEIGHTS.len() <= 1 << 20,
            "{}",
            SHIPPED_WEIGHTS.len()
        );
        let model = TaskModel::from_bytes(SHIPPED_WEIGHTS).unwrap_or_else(|e| unreachable!("{e}"));
        let code = model.profile(
            "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)",
            1,
            false,
        );
        assert_eq!(code.task, Some(0));
        assert_eq!(
            model.profile("Write a haiku about autumn", 1, false).task,
            Some(2)
        );
    }
}
