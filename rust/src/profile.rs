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

/// The explainable measurements behind a profile.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
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
        lines: if text.is_empty() {
            0
        } else {
            text.lines().count()
        },
        turns: turns.max(1),
        ..Features::default()
    };
    let mut previous_word: Option<&[u8]> = None;
    let mut previous_symbol: Option<u8> = None;
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
            if word.iter().all(u8::is_ascii_digit) {
                f.math_markers += 1;
                feature(fnv1a(b'n', &[number_shape(word)]) & MASK);
            } else {
                feature(fnv1a(b'w', &[word]) & MASK);
                let is = |list: &[&[u8]]| list.iter().any(|cue| cue.eq_ignore_ascii_case(word));
                if is(&STEP_WORDS) {
                    f.multi_step_cues += 1;
                }
                if is(&CONSTRAINT_WORDS) {
                    f.constraint_cues += 1;
                }
                if is(&MATH_WORDS) {
                    f.math_markers += 1;
                }
            }
            if let Some(prev) = previous_word {
                feature(fnv1a(b'b', &[prev, word]) & MASK);
            }
            previous_word = Some(word);
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
            previous_symbol = Some(byte);
        } else if byte == b'\n' {
            previous_symbol = None;
        }
        index += 1;
    }
    f.code_fences = text.matches("```").count() / 2;
    f.code_lines = text.lines().filter(|line| looks_like_code(line)).count();
    // Coarse shape features: how long, how code-like.
    feature(fnv1a(b'L', &[&[length_bucket(f.chars)]]) & MASK);
    feature(fnv1a(b'C', &[&[ratio_bucket(f.code_lines, f.lines)]]) & MASK);
    f
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

fn looks_like_code(line: &str) -> bool {
    let trimmed = line.trim_end();
    if trimmed.is_empty() {
        return false;
    }
    let ends = trimmed.ends_with(';')
        || trimmed.ends_with('{')
        || trimmed.ends_with('}')
        || trimmed.ends_with(':');
    let starts = trimmed.trim_start();
    let keyword = CODE_WORDS.iter().any(|word| {
        starts.as_bytes().starts_with(word)
            && starts
                .as_bytes()
                .get(word.len())
                .is_some_and(|b| !is_word_byte(*b))
    });
    let indented = line.starts_with("    ") || line.starts_with('\t');
    ends || keyword || (indented && (starts.contains('(') || starts.contains('=')))
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
        let mut sums = [0.0_f32; 4];
        let mut count = 0_u32;
        let features = extract(text, turns, |bucket| {
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
