//! A request's prompt as the engine will see it, in order, for prefix
//! matching: every message (system and assistant turns too, unlike the
//! profiler's text, which reads the user turns) as its role and content,
//! or the `prompt` / `input` string. Only equality of prefixes matters, so
//! the rendering need not be the engine's chat template: it must only grow
//! by appending when a conversation grows, which a message-by-message
//! rendering does.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyMapping, PySequence, PyString};

use super::request_text::MAX_NESTING;
use crate::errors::ZetaError;

/// Bytes between a message's role and content, and after its content:
/// ASCII unit and record separators, which real text rarely holds.
const FIELD: u8 = 0x1F;
const RECORD: u8 = 0x1E;

/// The rendered prompt of `request` and, for a conversation, where its
/// opening ends (the end of its first user message), which names it
/// (see [`crate::prefix::Affinity::new`]). The prompt of `request` (a str, a messages list, or a body
/// with `messages`, `prompt` or `input`); empty for other shapes (the
/// profiler names what is wrong with those). Text that is not valid UTF-8
/// (lone surrogates) is rendered lossily: a prefix is only compared.
pub fn prompt_prefix(request: &Bound<'_, PyAny>) -> PyResult<(Vec<u8>, Option<usize>)> {
    let mut out = Vec::new();
    let mut opening = None;
    let mut level = request.clone();
    for _ in 0..=MAX_NESTING {
        if let Ok(text) = level.cast::<PyString>() {
            out.extend_from_slice(text.to_string_lossy().as_bytes());
            return Ok((out, None));
        }
        if let Ok(body) = level.cast::<PyMapping>() {
            // Anthropic's Messages API keeps the system prompt beside the
            // messages: it comes first in the engine's prompt.
            if let Ok(system) = body.get_item("system") {
                out.extend_from_slice(b"system");
                out.push(FIELD);
                render_content(&system, &mut out)?;
                out.push(RECORD);
            }
            let next = ["messages", "prompt", "input"]
                .into_iter()
                .find_map(|key| body.get_item(key).ok());
            match next {
                Some(inner) => {
                    level = inner;
                    continue;
                }
                None => return Ok((out, None)),
            }
        }
        if let Ok(items) = level.cast::<PySequence>() {
            for item in items.try_iter()? {
                let user = render_item(&item?, &mut out)?;
                if user && opening.is_none() {
                    opening = Some(out.len());
                }
            }
        }
        return Ok((out, opening));
    }
    Err(ZetaError::TooDeep {
        field: "request",
        limit: MAX_NESTING,
    }
    .into())
}

/// One message (role and content) or one string of an `input` list;
/// true for a user message.
fn render_item(item: &Bound<'_, PyAny>, out: &mut Vec<u8>) -> PyResult<bool> {
    if let Ok(text) = item.cast::<PyString>() {
        out.extend_from_slice(text.to_string_lossy().as_bytes());
        out.push(RECORD);
        return Ok(false);
    }
    // A dict (what JSON bodies are) is read without the mapping protocol,
    // whose misses raise and catch a KeyError each.
    // Interned keys: no string made and hashed per message.
    let py = item.py();
    let (role_key, content_key) = (intern!(py, "role"), intern!(py, "content"));
    let (role, content) = if let Ok(message) = item.cast::<PyDict>() {
        (message.get_item(role_key)?, message.get_item(content_key)?)
    } else if let Ok(message) = item.cast::<PyMapping>() {
        (
            message.get_item(role_key).ok(),
            message.get_item(content_key).ok(),
        )
    } else {
        return Ok(false);
    };
    let mut user = false;
    if let Some(role) = role {
        if let Ok(role) = role.cast::<PyString>() {
            let role = role.to_string_lossy();
            user = role == "user";
            out.extend_from_slice(role.as_bytes());
        }
    }
    out.push(FIELD);
    if let Some(content) = content {
        render_content(&content, out)?;
    }
    out.push(RECORD);
    Ok(user)
}

/// A content string, or the `text` of its parts (`input_text` parts too).
fn render_content(content: &Bound<'_, PyAny>, out: &mut Vec<u8>) -> PyResult<()> {
    if let Ok(text) = content.cast::<PyString>() {
        out.extend_from_slice(text.to_string_lossy().as_bytes());
        return Ok(());
    }
    let Ok(parts) = content.cast::<PySequence>() else {
        return Ok(());
    };
    for part in parts.try_iter()? {
        let part = part?;
        let Ok(part) = part.cast::<PyMapping>() else {
            continue;
        };
        if let Ok(text) = part.get_item("text") {
            if let Ok(text) = text.cast::<PyString>() {
                out.extend_from_slice(text.to_string_lossy().as_bytes());
                out.push(FIELD);
            }
        }
    }
    Ok(())
}
