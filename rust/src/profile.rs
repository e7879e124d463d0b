//! Request profiling: task type from a linear model over hashed n-grams, and
//! a complexity estimate from explainable cues. Pure Rust, no allocation per
//! token; the weights are trained by `scripts/train_profiler.py`.

/// Text task types the classifier tells apart, in weight-file order.
pub const TEXT_TASKS: [&str; 4] = ["code", "reasoning", "chat", "knowledge"];
/// Requests recognised by their shape (embeddings endpoint, `input` field).
pub const EMBEDDING: &str = "embedding";

/// Hashed feature space: 2^13 buckets x 4 classes of f32 = 128 KiB of weights.
pub const FEATURE_BITS: u32 = 13;
const DIM: usize = 1 << FEATURE_BITS;
const MASK: u32 = (DIM as u32) - 1;

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
pub fn extract(text: &str, turns: usize, mut feature: impl FnMut(u32)) -> Features {
    let bytes = text.as_bytes();
    let mut f = Features {
        chars: text.chars().count(),
        token_estimate: text.len().div_ceil(4),
        turns: turns.max(1),
        ..Features::default()
    };
    let mut previous_word: Option<u32> = None;
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
                f.multi_step_cues += usize::from(STEP_HASHES.contains(&hash));
                f.constraint_cues += usize::from(CONSTRAINT_HASHES.contains(&hash));
                f.math_markers += usize::from(MATH_HASHES.contains(&hash));
                hash
            };
            line.word(hash, word.last().copied().unwrap_or(b' '));
            feature(hash & MASK);
            if let Some(prev) = previous_word {
                feature(pair_hash(prev, hash) & MASK);
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

/// The weights shipped with this build (trained by `scripts/train_profiler.py`).
pub const SHIPPED_WEIGHTS: &[u8] = include_bytes!("profile_weights.bin");

/// The trained linear model: `DIM x 4` weights and 4 biases.
pub struct TaskModel {
    weights: Vec<[f32; 4]>,
    bias: [f32; 4],
}

const MAGIC: &[u8; 8] = b"ZFPROF01";

impl TaskModel {
    /// Parses the weight file written by `scripts/train_profiler.py`:
    /// magic, u32 feature bits, 4 f32 biases, then `2^bits x 4` f32 weights.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, crate::errors::ZetaError> {
        let invalid = |reason: &str| crate::errors::ZetaError::Snapshot {
            reason: format!("profiler weights: {reason}"),
        };
        let magic = bytes.get(..8).ok_or_else(|| invalid("truncated header"))?;
        if magic != MAGIC {
            return Err(invalid("bad magic bytes"));
        }
        let bits = bytes
            .get(8..12)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
            .ok_or_else(|| invalid("truncated header"))?;
        if bits != FEATURE_BITS {
            return Err(invalid(&format!(
                "{bits} feature bits, this build hashes into {FEATURE_BITS}"
            )));
        }
        let floats: Vec<f32> = bytes
            .get(12..)
            .unwrap_or_default()
            .chunks_exact(4)
            .filter_map(|c| c.try_into().ok().map(f32::from_le_bytes))
            .collect();
        if floats.len() != 4 + DIM * 4 {
            return Err(invalid(&format!(
                "{} floats, expected {}",
                floats.len(),
                4 + DIM * 4
            )));
        }
        let (bias, rest) = floats.split_at(4);
        let bias = [
            bias.first().copied().unwrap_or(0.0),
            bias.get(1).copied().unwrap_or(0.0),
            bias.get(2).copied().unwrap_or(0.0),
            bias.get(3).copied().unwrap_or(0.0),
        ];
        let weights = rest
            .chunks_exact(4)
            .filter_map(|c| <[f32; 4]>::try_from(c).ok())
            .collect();
        Ok(Self { weights, bias })
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
        let mut sums = [0.0_f32; 4];
        let mut count = 0_u32;
        let features = extract(text, turns, |bucket| {
            if let Some(kept) = buckets.as_deref_mut() {
                kept.push(bucket);
            }
            if let Some(row) = self.weights.get(bucket as usize) {
                for (sum, weight) in sums.iter_mut().zip(row) {
                    *sum += weight;
                }
            }
            count += 1;
        });
        let complexity = complexity(&features);
        if embedding {
            return Profile {
                task: None,
                probabilities: [0.0; 4],
                complexity,
                features,
            };
        }
        // Counts scaled by 1/sqrt(n): the training script applies the same.
        let scale = 1.0 / (count.max(1) as f32).sqrt();
        let mut logits = [0.0_f32; 4];
        for ((logit, sum), bias) in logits.iter_mut().zip(sums).zip(self.bias) {
            *logit = sum * scale + bias;
        }
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut probabilities = logits.map(|l| (l - max).exp());
        let total: f32 = probabilities.iter().sum();
        for p in &mut probabilities {
            *p /= total;
        }
        let mut task = probabilities
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
        // A text that is mostly code lines is a code request whatever its
        // words say: short snippets carry too few n-grams for the model
        // (a bare `def fib(n): ...` read as arithmetic).
        if features.code_lines >= 2 && features.code_lines * 2 >= features.lines {
            task = 0;
        }
        Profile {
            task: Some(task),
            probabilities,
            complexity,
            features,
        }
    }
}

/// The hashed feature buckets of a text, in order, with the scale the model
/// applies (for the training script).
pub fn feature_buckets(text: &str) -> (Vec<u32>, f32) {
    let mut buckets = Vec::new();
    extract(text, 1, |bucket| buckets.push(bucket));
    let scale = 1.0 / (buckets.len().max(1) as f32).sqrt();
    (buckets, scale)
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

    #[test]
    fn bad_weight_files_are_rejected() {
        assert!(TaskModel::from_bytes(b"nope").is_err());
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&12_u32.to_le_bytes());
        assert!(TaskModel::from_bytes(&bytes).is_err());
    }
}
