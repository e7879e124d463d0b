//! The outcome log's JSON columns, written straight into a row's buffer.
//!
//! Their shapes are fixed (a profile's keys, pairs of a model id and a
//! score, penalty names), so the keys go in as byte literals and only the
//! values are formatted per row: numbers by the libraries serde_json uses
//! (zmij, itoa) and strings escaped by serde_json itself unless they need
//! no escaping. The bytes are serde_json's own, to the byte (tested below):
//! a reader cannot tell which wrote a row.

use crate::profile::{Features, Profile, EMBEDDING, TEXT_TASKS};

/// Appends `value` as serde_json writes an f64: shortest round-trip digits,
/// `null` when it is not finite.
pub fn number(out: &mut Vec<u8>, value: f64) {
    if value.is_finite() {
        out.extend_from_slice(zmij::Buffer::new().format_finite(value).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

fn integer(out: &mut Vec<u8>, value: usize) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// Appends `text` as a JSON string.
pub fn string(out: &mut Vec<u8>, text: &str) {
    // Ids and names almost never hold a quote, a backslash or a control
    // character: those are copied between quotes, the rest escaped by serde_json.
    if text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else {
        // Writing into a Vec cannot fail, and a &str always serialises.
        let _ = serde_json::to_writer(&mut *out, text);
    }
}

/// `["low_success_rate", ...]`: names that need no escaping.
pub fn names(out: &mut Vec<u8>, names: &[&str]) {
    out.push(b'[');
    for (index, name) in names.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        string(out, name);
    }
    out.push(b']');
}

/// `[["model-a",81.0],...]`: the runners-up and their scores.
pub fn scored(out: &mut Vec<u8>, pairs: impl Iterator<Item = (impl AsRef<str>, f64)>) {
    out.push(b'[');
    for (index, (name, score)) in pairs.enumerate() {
        if index > 0 {
            out.push(b',');
        }
        out.push(b'[');
        string(out, name.as_ref());
        out.push(b',');
        number(out, score);
        out.push(b']');
    }
    out.push(b']');
}

/// A profile as the object `RequestProfile.to_dict()` gives.
pub fn profile(out: &mut Vec<u8>, profile: &Profile) {
    let task = profile
        .task
        .and_then(|t| TEXT_TASKS.get(t).copied())
        .unwrap_or(EMBEDDING);
    let [code, reasoning, chat, knowledge] = profile.probabilities.map(f64::from);
    out.extend_from_slice(b"{\"task_type\":");
    string(out, task);
    out.extend_from_slice(b",\"complexity\":");
    number(out, profile.complexity);
    out.extend_from_slice(b",\"task_probabilities\":{\"code\":");
    number(out, code);
    out.extend_from_slice(b",\"reasoning\":");
    number(out, reasoning);
    out.extend_from_slice(b",\"chat\":");
    number(out, chat);
    out.extend_from_slice(b",\"knowledge\":");
    number(out, knowledge);
    out.extend_from_slice(b"},\"features\":");
    features(out, &profile.features);
    out.push(b'}');
}

fn features(out: &mut Vec<u8>, f: &Features) {
    // Destructured so that a field added to Features fails to compile here.
    let Features {
        chars,
        token_estimate,
        lines,
        words,
        code_lines,
        code_fences,
        math_markers,
        multi_step_cues,
        constraint_cues,
        question_marks,
        turns,
    } = *f;
    let fields: [(&[u8], usize); 11] = [
        (b"{\"chars\":", chars),
        (b",\"token_estimate\":", token_estimate),
        (b",\"lines\":", lines),
        (b",\"words\":", words),
        (b",\"code_lines\":", code_lines),
        (b",\"code_fences\":", code_fences),
        (b",\"math_markers\":", math_markers),
        (b",\"multi_step_cues\":", multi_step_cues),
        (b",\"constraint_cues\":", constraint_cues),
        (b",\"question_marks\":", question_marks),
        (b",\"turns\":", turns),
    ];
    for (key, value) in fields {
        out.extend_from_slice(key);
        integer(out, value);
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The profile as serde writes it: the reference these writers match.
    #[derive(serde::Serialize)]
    struct Reference<'a> {
        task_type: &'a str,
        complexity: f64,
        task_probabilities: Probabilities,
        features: &'a Features,
    }

    #[derive(serde::Serialize)]
    struct Probabilities {
        code: f64,
        reasoning: f64,
        chat: f64,
        knowledge: f64,
    }

    fn reference(profile: &Profile) -> Vec<u8> {
        let [code, reasoning, chat, knowledge] = profile.probabilities.map(f64::from);
        serde_json::to_vec(&Reference {
            task_type: profile
                .task
                .and_then(|t| TEXT_TASKS.get(t).copied())
                .unwrap_or(EMBEDDING),
            complexity: profile.complexity,
            task_probabilities: Probabilities {
                code,
                reasoning,
                chat,
                knowledge,
            },
            features: &profile.features,
        })
        .unwrap()
    }

    fn any_f64() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>(),
            0.0..=1.0f64,
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(-0.0),
            Just(5e-324),
        ]
    }

    fn any_f32() -> impl Strategy<Value = f32> {
        prop_oneof![any::<f32>(), 0.0..=1.0f32, Just(f32::NAN), Just(1e-45)]
    }

    fn any_profile() -> impl Strategy<Value = Profile> {
        (
            proptest::option::of(0usize..6),
            proptest::array::uniform4(any_f32()),
            any_f64(),
            proptest::array::uniform11(any::<usize>()),
        )
            .prop_map(|(task, probabilities, complexity, f)| Profile {
                task,
                probabilities,
                complexity,
                features: Features {
                    chars: f[0],
                    token_estimate: f[1],
                    lines: f[2],
                    words: f[3],
                    code_lines: f[4],
                    code_fences: f[5],
                    math_markers: f[6],
                    multi_step_cues: f[7],
                    constraint_cues: f[8],
                    question_marks: f[9],
                    turns: f[10],
                },
            })
    }

    proptest! {
        #[test]
        fn a_profile_is_written_as_serde_json_writes_it(p in any_profile()) {
            let mut out = Vec::new();
            profile(&mut out, &p);
            prop_assert_eq!(String::from_utf8(out).unwrap(), String::from_utf8(reference(&p)).unwrap());
        }

        #[test]
        fn scored_pairs_are_written_as_serde_json_writes_them(
            pairs in proptest::collection::vec((any::<String>(), any_f64()), 0..8)
        ) {
            let mut out = Vec::new();
            scored(&mut out, pairs.iter().map(|(n, s)| (n.as_str(), *s)));
            let expected: Vec<(&str, Option<f64>)> = pairs
                .iter()
                .map(|(n, s)| (n.as_str(), s.is_finite().then_some(*s)))
                .collect();
            prop_assert_eq!(out, serde_json::to_vec(&expected).unwrap());
        }

        #[test]
        fn strings_with_quotes_and_control_characters_are_escaped(text in ".*") {
            let mut out = Vec::new();
            string(&mut out, &text);
            prop_assert_eq!(out, serde_json::to_vec(&text).unwrap());
        }
    }

    #[test]
    fn names_are_a_json_array() {
        let mut out = Vec::new();
        names(&mut out, &["low_success_rate", "high_latency"]);
        assert_eq!(out, br#"["low_success_rate","high_latency"]"#);
        out.clear();
        names(&mut out, &[]);
        assert_eq!(out, b"[]");
    }
}
